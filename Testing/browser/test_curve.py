"""The page's live training curve: what it keeps of the child's progress updates, and the SVG it
draws (points computed here by hand from the plot's size: 300 x 120, margin 8, so the x axis runs
from 8 to 292 and the y axis from 8 (top) to 104 (bottom))."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from LungLiverSegLib.browser.curve import DICE_COLOUR, LOSS_COLOUR, TrainingCurve
from LungLiverSegLib.slicer_module.process import ProgressUpdate

SVG = "{http://www.w3.org/2000/svg}"


def step(epoch: int | None, loss: float | None, dice: float | None = None) -> ProgressUpdate:
    """A training step's update as the training job passes it on (its status text does not matter)."""
    return ProgressUpdate(0.5, "epoch", 10.0, epoch=epoch, loss=loss, epochs=2, validation_dice=dice)


def polylines(svg: str) -> dict[str, list[tuple[float, float]]]:
    """The points of each polyline, by colour, read back with an XML parser."""
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    lines: dict[str, list[tuple[float, float]]] = {}
    for line in root.iter(f"{SVG}polyline"):
        assert line.get("stroke") not in lines, "one polyline per series"
        points = [tuple(map(float, pair.split(","))) for pair in line.get("points", "").split()]
        lines[line.get("stroke", "")] = points  # type: ignore[assignment]
    return lines


def test_an_empty_curve_draws_nothing():
    curve = TrainingCurve()
    assert curve.svg() == ""
    curve.add(ProgressUpdate(0.1, "inference", None))  # a segmentation's update: no epoch
    curve.add(step(None, 0.5))
    assert curve.svg() == "" and curve.loss == {} and curve.dice == {}


def test_the_last_loss_of_an_epoch_and_its_validation_dice_are_kept():
    """As the training job reports them: steps without a Dice, then the epoch's last step again
    with its validation's mean Dice (an epoch without validation has no Dice point)."""
    curve = TrainingCurve()
    updates = (
        step(1, 0.9), step(1, 0.8), step(1, 0.8, 0.5),
        step(2, 0.6), step(2, 0.4),
        step(3, 0.3), step(3, 0.2), step(3, 0.2, 0.9),
    )  # fmt: skip
    for update in updates:
        curve.add(update)
    assert curve.loss == {1: 0.8, 2: 0.4, 3: 0.2}
    assert curve.dice == {1: 0.5, 3: 0.9}


def test_two_epochs_draw_two_polylines_at_hand_computed_points():
    curve = TrainingCurve()
    curve.add(step(1, 0.8, 0.5))
    curve.add(step(2, 0.4, 0.75))
    svg = curve.svg()
    # x: epoch 1 at the left margin (8), epoch 2 at the right one (300 - 8 = 292).
    # loss scaled to its maximum 0.8: 0.8 -> top (8), 0.4 -> half way, 8 + 0.5 * 96 = 56.
    # Dice on 0..1: 0.5 -> 8 + 0.5 * 96 = 56, 0.75 -> 8 + 0.25 * 96 = 32.
    assert polylines(svg) == {
        LOSS_COLOUR: [(8.0, 8.0), (292.0, 56.0)],
        DICE_COLOUR: [(8.0, 56.0), (292.0, 32.0)],
    }
    assert 'points="8.0,8.0 292.0,56.0"' in svg
    root = ET.fromstring(svg)
    assert (root.get("width"), root.get("height")) == ("300", "120")
    texts = [text.text for text in root.iter(f"{SVG}text")]
    assert texts == ["loss 0.4", "validation Dice 0.75", "epoch 2"]  # the last values


def test_epochs_spread_over_the_width_and_dice_is_clipped_to_the_plot():
    curve = TrainingCurve()
    for epoch, loss in ((3, 1.0), (4, 0.5), (5, 0.25), (7, 0.0)):
        curve.add(step(epoch, loss))
    curve.add(step(7, 0.0, 1.2))  # a Dice over 1 (never in practice) stays on the plot
    lines = polylines(curve.svg())
    # epochs 3..7 over 284 px: 71 px an epoch; loss / 1.0 -> y = 8 + (1 - loss) * 96
    assert lines[LOSS_COLOUR] == [(8.0, 8.0), (79.0, 56.0), (150.0, 80.0), (292.0, 104.0)]
    assert lines[DICE_COLOUR] == [(292.0, 8.0)]


def test_a_single_epoch_is_drawn_at_the_left_without_dividing_by_zero():
    curve = TrainingCurve()
    curve.add(step(1, 0.3))
    assert polylines(curve.svg()) == {LOSS_COLOUR: [(8.0, 8.0)]}
    assert "epoch 1" in curve.svg()


def test_a_loss_of_zero_throughout_is_drawn_at_the_bottom():
    curve = TrainingCurve()
    curve.add(step(1, 0.0))
    curve.add(step(2, 0.0))
    assert polylines(curve.svg())[LOSS_COLOUR] == [(8.0, 104.0), (292.0, 104.0)]


@pytest.mark.parametrize("dice", [0.0, 1.0])
def test_dice_alone_is_drawn_on_its_fixed_scale(dice: float):
    curve = TrainingCurve()
    curve.add(step(1, None, dice))
    curve.add(step(2, None, dice))
    y = 8.0 + (1 - dice) * 96
    assert polylines(curve.svg()) == {DICE_COLOUR: [(8.0, y), (292.0, y)]}
