"""Model cards' data section: written from ``--data-card`` at training, kept by revalidate.py."""

from __future__ import annotations

import importlib.util
from dataclasses import replace

from factories import REPO_ROOT
from LungLiverSegTraining.bundle_export import data_section_of, training_card, with_data_section
from LungLiverSegTraining.config import phantom_ct_3d

SCRIPT = REPO_ROOT / "Training" / "scripts" / "revalidate.py"
DATA = "## Data, licence and how it was made\n\n- CC BY 3.0, cite X"


def load_script():
    spec = importlib.util.spec_from_file_location("revalidate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_data_section_goes_before_the_intended_use_and_is_found_again():
    card = with_data_section("# M\n\nintro\n\n## Intended use\n\nuse\n", DATA)
    assert card == f"# M\n\nintro\n\n{DATA}\n\n## Intended use\n\nuse\n"
    assert data_section_of(card) == DATA
    assert data_section_of("# M\n\n## Intended use\n") is None


def test_a_data_card_in_the_config_becomes_the_cards_section():
    config = replace(phantom_ct_3d(), data_card="- Synthetic phantoms, made by the tests.")
    card = training_card(config.bundle_template(), config)
    assert "## Data, licence and how it was made\n\n- Synthetic phantoms, made by the tests." in card
    assert card.index("## Data, licence") < card.index("## Intended use")
    assert card.count("Synthetic phantoms, made by the tests") == 1  # not repeated in the JSON


def test_revalidate_keeps_an_old_data_section_unless_the_run_has_its_own():
    revalidate = load_script()
    plain = phantom_ct_3d()
    bundle = plain.bundle_template()
    old_card = with_data_section(training_card(bundle, plain), DATA)
    assert data_section_of(revalidate.regenerated_card(bundle, plain, old_card)) == DATA
    own = replace(plain, data_card="- new text")
    new_card = revalidate.regenerated_card(bundle, own, old_card)
    assert "CC BY 3.0" not in new_card and "- new text" in new_card
