"""Checkpoints: RNG states that make a resumed run draw what an uninterrupted one would, and
writes that never leave a half-written or missing checkpoint behind."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch
from LungLiverSegTraining import checkpoint
from LungLiverSegTraining.errors import TrainingConfigError

CPU = torch.device("cpu")


def draws() -> list[list[float]]:
    """The next random numbers of every generator a training run uses."""
    return [torch.rand(3).tolist(), np.random.rand(3).tolist(), [np.random.randn()], [random.random()]]


def test_rng_states_survive_a_weights_only_checkpoint_and_give_the_same_draws_again(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.randn()  # numpy now holds a cached second Gaussian: part of its state too
    path = tmp_path / checkpoint.LAST
    checkpoint.save_checkpoint(path, {"rng": checkpoint.rng_states()})
    expected = draws()
    assert draws() != expected  # the generators moved on
    checkpoint.restore_rng_states(checkpoint.load_checkpoint(path, CPU)["rng"])
    assert draws() == expected


def test_a_checkpoint_replaces_the_previous_one_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / checkpoint.LAST
    checkpoint.save_checkpoint(path, {"epoch": 1})
    checkpoint.save_checkpoint(path, {"epoch": 2})
    assert checkpoint.load_checkpoint(path, CPU)["epoch"] == 2
    assert [entry.name for entry in tmp_path.iterdir()] == [checkpoint.LAST]


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / checkpoint.BEST
    checkpoint.save_checkpoint(path, {"epoch": 1})
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        checkpoint.save_checkpoint(path, {"epoch": 2, "unsaveable": lambda: None})
    assert checkpoint.load_checkpoint(path, CPU)["epoch"] == 1
    assert [entry.name for entry in tmp_path.iterdir()] == [checkpoint.BEST]


def test_a_missing_or_unreadable_checkpoint_is_one_clear_error(tmp_path):
    with pytest.raises(TrainingConfigError, match="no checkpoint to resume from"):
        checkpoint.load_checkpoint(tmp_path / checkpoint.LAST, CPU)
    (tmp_path / checkpoint.LAST).write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingConfigError, match="cannot read the checkpoint") as error:
        checkpoint.load_checkpoint(tmp_path / checkpoint.LAST, CPU)
    assert "\n" not in str(error.value)


def test_history_of_an_older_checkpoint_gets_todays_metric_names():
    older = [
        {"epoch": 1, "loss": 0.9},
        {"epoch": 2, "loss": 0.5, "val": {"dice": {"lungs": 0.8}, "nsd_2mm": {"lungs": 0.7}}},
    ]
    assert checkpoint.current_history(older) == [
        {"epoch": 1, "loss": 0.9},
        {"epoch": 2, "loss": 0.5, "val": {"dice": {"lungs": 0.8}, "nsd@2mm": {"lungs": 0.7}}},
    ]
    assert checkpoint.current_history(checkpoint.current_history(older)) == checkpoint.current_history(older)


class _WritesAFileWhenUnpickled:
    """A pickle payload: unpickling it would call ``Path.touch`` on ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_a_checkpoint_holding_a_pickled_object_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / checkpoint.LAST
    torch.save({"epoch": 3, "payload": _WritesAFileWhenUnpickled(str(marker))}, path)
    with pytest.raises(TrainingConfigError, match="not one that lunglivseg train wrote") as error:
        checkpoint.load_checkpoint(path, CPU)
    assert "\n" not in str(error.value) and "weights_only" not in str(error.value)
    assert not marker.exists()
