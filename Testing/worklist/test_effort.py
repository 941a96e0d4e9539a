"""The correction effort, its running mean, the mean per model, the advice and the SVG curve, on
corrections whose every number is worked out by hand below (not by the code under test)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from LungLiverSegLib.worklist.effort import (
    CHANGED_COLOUR,
    DICE_COLOUR,
    Effort,
    GenerationEffort,
    advice,
    by_generation,
    effort_svg,
    efforts,
    running_mean,
)
from LungLiverSegLib.worklist.store import APPROVED, PROPOSED, SKIPPED, Case

SVG = "{http://www.w3.org/2000/svg}"
MODELS = [(0, "m@1"), (1, "m@2"), (2, "m@3")]


def case(  # noqa: PLR0913  (a case row: the fields these tests vary)
    case_id: str,
    lungs: tuple[float, float] | None,
    liver: tuple[float, float] | None = None,
    *,
    generation: int | None = 0,
    approved_at: str | None = None,
    state: str = APPROVED,
) -> Case:
    """A case whose correction has two segments, each ``(changed_ml, dice)``."""
    effort = None
    if lungs is not None and liver is not None:
        effort = {
            "lungs": {"changed_ml": lungs[0], "dice": lungs[1], "changed_voxels": 1, "hd95": 1.0},
            "liver": {"changed_ml": liver[0], "dice": liver[1], "changed_voxels": 1, "hd95": 1.0},
        }
    return Case(
        case_id,
        f"{case_id}.nii.gz",
        None,
        0,
        state,
        "m",
        0.1,
        0.0,
        None,
        None,
        effort,
        generation,
        approved_at,
    )


def at(second: int) -> str:
    return f"2025-01-01T10:00:{second:02d}+00:00"


# c1: 2+1 = 3.0 mL, (0.9+0.7)/2 = 0.8    c2: 4+2 = 6.0, (0.6+0.8)/2 = 0.7     (generation 0)
# c3: 1+0.5 = 1.5, (1.0+0.9)/2 = 0.95    c4: 0.5+0.5 = 1.0, (0.95+0.85)/2 = 0.9 (generation 1)
# c5: 3+1 = 4.0, (0.8+0.6)/2 = 0.7                                              (generation 2)
C1 = case("c1", (2.0, 0.9), (1.0, 0.7), generation=0, approved_at=at(1))
C2 = case("c2", (4.0, 0.6), (2.0, 0.8), generation=0, approved_at=at(2))
C3 = case("c3", (1.0, 1.0), (0.5, 0.9), generation=1, approved_at=at(3))
C4 = case("c4", (0.5, 0.95), (0.5, 0.85), generation=1, approved_at=at(4))
C5 = case("c5", (3.0, 0.8), (1.0, 0.6), generation=2, approved_at=at(5))
POINTS = [
    Effort("c1", 0, 3.0, 0.8),
    Effort("c2", 0, 6.0, 0.7),
    Effort("c3", 1, 1.5, 0.95),
    Effort("c4", 1, 1.0, 0.9),
    Effort("c5", 2, 4.0, 0.7),
]


def assert_points(actual: list[Effort], expected: list[Effort]) -> None:
    assert [(p.case_id, p.generation) for p in actual] == [(p.case_id, p.generation) for p in expected]
    assert [p.changed_ml for p in actual] == pytest.approx([p.changed_ml for p in expected])
    assert [p.dice for p in actual] == pytest.approx([p.dice for p in expected])


def test_efforts_sum_changed_ml_and_average_dice_in_approval_order():
    from_scratch = case("scratch", None, generation=None, approved_at=at(0))  # approved, no proposal
    waiting = case("waiting", (9.0, 0.1), (9.0, 0.1), state=PROPOSED)
    skipped = case("skipped", (9.0, 0.1), (9.0, 0.1), state=SKIPPED)
    shuffled = [C3, waiting, C1, C5, from_scratch, C2, skipped, C4]
    assert_points(efforts(shuffled), POINTS)
    assert efforts([]) == [] and efforts([from_scratch, waiting]) == []


def test_running_mean_over_windows_of_two_and_four():
    window_2 = [(1, 3.0, 0.8), (2, 4.5, 0.75), (3, 3.75, 0.825), (4, 1.25, 0.925), (5, 2.5, 0.8)]
    window_4 = [
        (1, 3.0, 0.8),
        (2, 4.5, 0.75),
        (3, 10.5 / 3, 2.45 / 3),
        (4, 11.5 / 4, 3.35 / 4),  # 2.875, 0.8375
        (5, 12.5 / 4, 3.25 / 4),  # c2..c5: 3.125, 0.8125
    ]
    for window, expected in ((2, window_2), (4, window_4)):
        means = running_mean(POINTS, window)
        assert [n for n, _, _ in means] == [n for n, _, _ in expected]
        assert [ml for _, ml, _ in means] == pytest.approx([ml for _, ml, _ in expected])
        assert [dice for *_, dice in means] == pytest.approx([dice for *_, dice in expected])
    assert running_mean(POINTS) == running_mean(POINTS, 4), "the default window is 4"
    assert running_mean([], 2) == []


def test_by_generation_means_each_models_cases():
    means = by_generation(POINTS, MODELS)
    assert [(m.generation, m.model, m.cases) for m in means] == [(0, "m@1", 2), (1, "m@2", 2), (2, "m@3", 1)]
    assert [m.changed_ml for m in means] == pytest.approx([4.5, 1.25, 4.0])
    assert [m.dice for m in means] == pytest.approx([0.75, 0.925, 0.7])
    # a generation the model list does not know, and a case approved without a generation
    unknown = by_generation([Effort("x", 7, 2.0, 0.5), Effort("y", None, 1.0, 1.0)], MODELS)
    assert unknown == [GenerationEffort(7, "?", 1, 2.0, 0.5)]


def points_with_means(*changed_ml: float) -> list[Effort]:
    """One approved case per generation 0, 1, ... with that changed mL."""
    return [Effort(f"g{g}", g, ml, 0.9) for g, ml in enumerate(changed_ml)]


def models(count: int) -> list[tuple[int, str]]:
    return [(g, f"m@{g}") for g in range(count)]


def test_advice_counts_approvals_with_the_current_model():
    current = [Effort(f"n{i}", 1, 1.0, 0.9) for i in range(4)]
    older = [Effort("o1", 0, 5.0, 0.5)]
    assert advice([], [(0, "m@1")], 4) == (
        "0 of 4 cases approved with the current model before a retrain is suggested."
    )
    assert advice(older + current[:3], models(2), 4) == (
        "3 of 4 cases approved with the current model before a retrain is suggested."
    )
    assert advice(older + current, models(2), 4) == (
        "4 cases approved with the current model: retrain now to use them."
    )
    assert advice(older + current, models(2), 3) == (
        "4 cases approved with the current model: retrain now to use them."
    )
    # right after a retrain nothing is approved with the new model yet
    assert advice(older + current, models(3), 4).startswith("0 of 4 cases")


STALL = (
    "The last 2 retrains did not reduce the correction effort ({} mL changed per case): more "
    "corrections of this kind may no longer improve the model."
)


def test_advice_says_when_the_last_two_retrains_stopped_reducing_the_effort():
    # 4.0 -> 3.8 (-5 %) -> 3.7 (-2.6 %): neither retrain cut more than 10 %
    stalled = advice(points_with_means(4.0, 3.8, 3.7), models(3), 4)
    assert stalled == (
        "1 of 4 cases approved with the current model before a retrain is suggested. "
        + STALL.format("4.0 -> 3.8 -> 3.7")
    )
    # exactly 10 % is not "more than 10 %"
    assert STALL.format("10.0 -> 9.0 -> 8.1") in advice(points_with_means(10.0, 9.0, 8.1), models(3), 4)
    # only the last two retrains count: an early big cut does not hide a later stall
    late = advice(points_with_means(20.0, 4.0, 3.8, 3.7), models(4), 4)
    assert late.endswith(STALL.format("4.0 -> 3.8 -> 3.7"))


@pytest.mark.parametrize(
    "changed_ml",
    [
        (4.0, 3.0, 2.9),  # the first of the two cut 25 %
        (4.0, 3.9, 3.0),  # the second cut 23 %
        (4.0, 3.0, 2.0),  # both did
        (10.0, 9.0, 8.09),  # the second cut just over 10 %
        (4.0, 3.8),  # one retrain only: too early to tell
    ],
)
def test_no_stall_message_when_a_retrain_reduced_the_effort(changed_ml):
    said = advice(points_with_means(*changed_ml), models(len(changed_ml)), 4)
    assert "did not reduce" not in said
    assert said.endswith("before a retrain is suggested.")


def polylines(svg: str) -> dict[str, str]:
    """``stroke colour -> points`` of the chart's lines (parsed as XML: the SVG must be well formed)."""
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg" and (root.get("width"), root.get("height")) == ("300", "120")
    return {line.get("stroke"): line.get("points") for line in root.iter(f"{SVG}polyline")}


def test_effort_svg_draws_the_running_means_at_hand_computed_points():
    # x: 8 + (n - 1) / (5 - 1) * (300 - 2 * 8) -> 8, 79, 150, 221, 292
    # changed mL (window 2: 3, 4.5, 3.75, 1.25, 2.5; top 4.5): y = 8 + (1 - ml / 4.5) * (120 - 3 * 8)
    # Dice (0.8, 0.75, 0.825, 0.925, 0.8; top 1): y = 8 + (1 - dice) * 96
    svg = effort_svg(POINTS, window=2)
    lines = polylines(svg)
    assert lines == {
        CHANGED_COLOUR: "8.0,40.0 79.0,8.0 150.0,24.0 221.0,77.3 292.0,50.7",
        DICE_COLOUR: "8.0,27.2 79.0,32.0 150.0,24.8 221.0,15.2 292.0,27.2",
    }
    texts = [text.text for text in ET.fromstring(svg).iter(f"{SVG}text")]
    assert texts == ["changed mL 2.5", "Dice 0.8", "mean of last 2, case 5"]  # the last means
    # a dashed line where a new model's cases begin (generations 0, 0, 1, 1, 2): between cases 2 and
    # 3 and between 4 and 5, x = 8 + (2.5 - 1) / 4 * 284 = 114.5 and 8 + 3.5 / 4 * 284 = 256.5
    marks = [line.get("x1") for line in ET.fromstring(svg).iter(f"{SVG}line")]
    assert marks == ["114.5", "256.5"]


def test_effort_svg_of_one_approval_and_of_none():
    # one point: the x axis is one unit wide (1..2), so the point sits at the left margin;
    # its changed mL is the top of its own scale (y = 8), its Dice 0.8 of 1 (y = 8 + 0.2 * 96)
    lines = polylines(effort_svg(POINTS[:1]))
    assert lines == {CHANGED_COLOUR: "8.0,8.0", DICE_COLOUR: "8.0,27.2"}
    assert "mean of last 4, case 1" in effort_svg(POINTS[:1])
    assert effort_svg([]) == ""
