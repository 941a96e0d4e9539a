"""The one text table, Markdown table and progress bar, against hand-written expected text."""

from __future__ import annotations

import pytest
from LungLiverSegLib.tables import markdown_table, progress_bar, text_table

ROWS = [["case", "label", "dice"], ["case_a", "lungs", "0.981"], ["b", "liver_tumour", "1.000"]]


def test_text_table_left_aligns_the_first_column_and_right_aligns_the_others():
    assert text_table(ROWS).splitlines() == [
        "case           label   dice",
        "case_a         lungs  0.981",
        "b       liver_tumour  1.000",
    ]


def test_a_left_aligned_last_column_is_not_padded():
    rows = [("name", "title"), ("lungs-ct-3d", "Lungs in CT"), ("x", "A long title here")]
    assert (
        text_table(rows, align="ll")
        == "name         title\nlungs-ct-3d  Lungs in CT\nx            A long title here"
    )


def test_text_table_refuses_an_alignment_that_does_not_fit():
    with pytest.raises(ValueError, match="one of"):
        text_table(ROWS, align="lr")
    with pytest.raises(ValueError, match="one of"):
        text_table(ROWS, align="lcr")


def test_markdown_table():
    assert markdown_table([("metric", "value"), ("dice", "0.9")]) == (
        "| metric | value |\n|---|---|\n| dice | 0.9 |"
    )


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [
        (0.0, "[..........]   0%"),
        (0.42, "[####......]  42%"),
        (0.449, "[####......]  45%"),
        (1.0, "[##########] 100%"),
        (1.5, "[##########] 100%"),
    ],
)
def test_progress_bar(fraction: float, expected: str):
    assert progress_bar(fraction, 10) == expected
