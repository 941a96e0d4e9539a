"""Model cards' data section: written from ``--data-card`` at training, kept by revalidation."""

from __future__ import annotations

from dataclasses import replace

from LungLiverSegTraining.bundle_export import data_section_of, training_card, with_data_section
from LungLiverSegTraining.config import load_config
from LungLiverSegTraining.revalidate import regenerated_card

DATA = "## Data, licence and how it was made\n\n- CC BY 3.0, cite X"


def test_the_data_section_goes_before_the_intended_use_and_is_found_again():
    card = with_data_section("# M\n\nintro\n\n## Intended use\n\nuse\n", DATA)
    assert card == f"# M\n\nintro\n\n{DATA}\n\n## Intended use\n\nuse\n"
    assert data_section_of(card) == DATA
    assert data_section_of("# M\n\n## Intended use\n") is None


def test_a_data_card_in_the_config_becomes_the_cards_section():
    config = replace(load_config("phantom-ct-3d"), data_card="- Synthetic phantoms, made by the tests.")
    card = training_card(config.bundle_template(), config)
    assert "## Data, licence and how it was made\n\n- Synthetic phantoms, made by the tests." in card
    assert card.index("## Data, licence") < card.index("## Intended use")
    assert card.count("Synthetic phantoms, made by the tests") == 1  # not repeated in the JSON


def test_revalidate_keeps_an_old_data_section_unless_the_run_has_its_own():
    plain = load_config("phantom-ct-3d")
    bundle = plain.bundle_template()
    old_card = with_data_section(training_card(bundle, plain), DATA)
    assert data_section_of(regenerated_card(bundle, plain, old_card)) == DATA
    own = replace(plain, data_card="- new text")
    new_card = regenerated_card(bundle, own, old_card)
    assert "CC BY 3.0" not in new_card and "- new text" in new_card
