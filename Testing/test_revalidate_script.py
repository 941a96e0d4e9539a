"""Training/scripts/revalidate.py keeps a card's hand-written data section when it rewrites the card."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "Training" / "scripts" / "revalidate.py"
DATA = "## Data, licence and how it was made\n\n- CC BY 3.0, cite X\n\n"


def load_script():
    spec = importlib.util.spec_from_file_location("revalidate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_hand_written_section_survives_a_regenerated_card():
    revalidate = load_script()
    old = f"# M\n\nintro\n\n{DATA}## Intended use\n\nold\n"
    new = "# M\n\nintro 2\n\n## Intended use\n\nnew\n"
    assert (
        revalidate.with_hand_written_section(new, old) == f"# M\n\nintro 2\n\n{DATA}## Intended use\n\nnew\n"
    )
    assert revalidate.with_hand_written_section(new, "# M\n\n## Intended use\n") == new
