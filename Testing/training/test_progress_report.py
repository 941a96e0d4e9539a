"""What a training run shows: the text bar on stderr, and the same events for a Python callback.

What its ``json`` lines become in a front end is tested with the consumer, in
``Testing/slicer_module/test_process.py``.
"""

from __future__ import annotations

import pytest
from LungLiverSegTraining.progress_report import Reporter

SCORES = {"dice": {"lungs": 0.95, "liver": 0.91}, "nsd@2mm": {"lungs": 0.9, "liver": 0.8}, "mean_dice": 0.93}
SUMMARY = {"bundle": "run/bundle/x-v1.0.0", "best_epoch": 1, "best_mean_dice": 0.93, "training_time_s": 9.0}


def report_one_epoch(reporter: Reporter) -> None:
    """Epoch 1 of 2, five steps each; the reporter started after step 5 (so no ETA yet)."""
    reporter.step(epoch=1, step=5, steps=5, loss=0.5, done_steps=5)
    reporter.epoch_end({"epoch": 1, "loss": 0.5, "lr": 0.01, "val": SCORES})
    reporter.done(SUMMARY)


def test_bar_mode_redraws_one_line_per_step_and_prints_validation_and_the_end(
    capsys: pytest.CaptureFixture[str],
):
    report_one_epoch(Reporter("bar", total_steps=10, done_steps=5))
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "\repoch    1 step    5/5    [############............]  50% loss 0.5000 ETA     --"
        "\nvalidation after epoch 1: Dice lungs 0.950, liver 0.910 (mean 0.930)\n"
        "\nbest mean Dice 0.930 at epoch 1; bundle: run/bundle/x-v1.0.0\n"
    )


def test_the_callback_gets_each_event_as_its_json_object(capsys: pytest.CaptureFixture[str]):
    events: list[dict] = []
    report_one_epoch(Reporter("none", total_steps=10, done_steps=5, callback=events.append))
    assert events == [
        {
            "event": "step",
            "epoch": 1,
            "epochs": 2,
            "step": 5,
            "steps": 5,
            "loss": 0.5,
            "fraction": 0.5,
            "eta_s": None,
        },
        {"event": "validation", "epoch": 1, **SCORES},
        {"event": "epoch", "epoch": 1, "loss": 0.5, "lr": 0.01},
        {"event": "done", **SUMMARY},
    ]
    assert capsys.readouterr() == ("", "")
