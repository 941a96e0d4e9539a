"""The JSON-lines protocol: the lines on the wire, reading them back, and what is not an event.

What the real producers print, read by the real consumer, is tested in
``Testing/slicer_module/test_process.py``.
"""

from __future__ import annotations

import json

import pytest
from LungLiverSegLib.cli.events import (
    SegmentationDone,
    SegmentationProgress,
    TrainingDone,
    TrainingEpoch,
    TrainingStep,
    TrainingValidation,
    from_json,
)
from LungLiverSegLib.progress import ProgressEvent

EVENTS = [
    SegmentationProgress(case="ct.nrrd", fraction=0.5, stage="inference", elapsed_s=1.5, eta_s=None),
    SegmentationDone(input="in/ct.nrrd", output="out/ct.seg.nrrd"),
    TrainingStep(epoch=3, epochs=40, step=2, steps=5, loss=0.41, fraction=0.07, eta_s=160.2),
    TrainingValidation(epoch=3, dice={"lungs": 0.95}, mean_dice=0.95, extra={"nsd@2mm": {"lungs": 0.9}}),
    TrainingEpoch(epoch=3, loss=0.4, lr=0.003, extra={"weights": "mean of the weights of epochs 2-3"}),
    TrainingDone(bundle="runs/x/bundle/x-v0.1.0", best_epoch=3, best_mean_dice=0.95, training_time_s=12.0),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda event: type(event).__name__)
def test_every_event_reads_back_as_itself(event):
    assert from_json(event.to_json()) == event


def test_segmentation_progress_on_the_wire():
    """The keys and rounding other programs read (a progress display needs no more digits)."""
    event = SegmentationProgress.of(ProgressEvent(0.123456, "inference", 12.3456, 87.654), "2/3 ct.nrrd")
    assert json.loads(event.to_json()) == {
        "event": "progress",
        "case": "2/3 ct.nrrd",
        "fraction": 0.1235,
        "stage": "inference",
        "elapsed_s": 12.35,
        "eta_s": 87.7,
    }


def test_extra_keys_are_written_flat_and_kept_on_reading():
    line = (
        '{"event": "validation", "epoch": 10, "dice": {"lungs": 0.95}, "nsd@2mm": {"lungs": 0.9}, '
        '"mean_dice": 0.95, "cases": 2, "cpu_time_s": 1.1}'
    )
    event = from_json(line)
    assert event == TrainingValidation(
        epoch=10,
        dice={"lungs": 0.95},
        mean_dice=0.95,
        extra={"nsd@2mm": {"lungs": 0.9}, "cases": 2, "cpu_time_s": 1.1},
    )
    assert json.loads(event.to_json()) == json.loads(line)


def test_done_names_a_bundle_for_training_and_an_output_for_segmentation():
    assert from_json('{"event": "done", "bundle": "b"}') == TrainingDone(bundle="b")
    assert from_json('{"event": "done", "input": "a", "output": "b"}') == SegmentationDone(
        input="a", output="b"
    )


@pytest.mark.parametrize(
    "line",
    [
        "Traceback (most recent call last):",
        "[1, 2]",
        '"progress"',
        '{"event": "other", "fraction": 0.5}',
        '{"fraction": 0.5, "stage": "load"}',
        '{"event": "progress", "stage": "load"}',  # no fraction: nothing to show
        '{"event": "progress", "fraction": "half", "stage": "load"}',
        '{"event": "step", "epoch": 3, "fraction": 0.1}',  # no loss
        '{"event": "validation", "epoch": 3, "dice": [0.9], "mean_dice": 0.9}',
        '{"event": "done", "input": "a"}',
    ],
)
def test_lines_that_are_not_usable_events_read_as_none(line: str):
    assert from_json(line) is None


def test_optional_fields_may_be_missing():
    assert from_json('{"event": "step", "epoch": 3, "loss": 0.4, "fraction": 0.1}') == TrainingStep(
        epoch=3, loss=0.4, fraction=0.1
    )
