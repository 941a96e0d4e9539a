"""What the module's widgets show: model choices and tooltips, device choices, status lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from factories import save_tiny_bundle
from LungLiverSegLib.paths import USER_MODELS_ENV
from LungLiverSegLib.slicer_module import presentation
from LungLiverSegLib.slicer_module.process import ProgressUpdate
from LungLiverSegLib.slicer_module.training_job import TrainingOutcome


def test_model_choices_leave_out_broken_bundles_and_the_tooltip_helps_choose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(USER_MODELS_ENV, str(tmp_path))
    save_tiny_bundle(tmp_path / "tiny-lungs-v1.0.0")
    (tmp_path / "broken-v1.0.0").mkdir()
    (tmp_path / "broken-v1.0.0" / "model.json").write_text("{")
    user_models = [entry for entry in presentation.available_models() if entry.source == "user"]
    assert [entry.name for entry in user_models] == ["tiny-lungs"]
    assert presentation.model_tooltip(user_models[0]).splitlines() == [
        "Tiny 3D test model (tiny-lungs 1.0.0)",
        "Segments: right lung, left lung",
        "3D CT model; CPU ~3 s per image",
        "Licence: Apache-2.0",
    ]


def test_device_choices_map_to_cli_devices():
    choices = presentation.device_choices()
    assert choices[:2] == ["auto", "cpu"]
    expected = ["auto", "cpu", "cuda"][: len(choices)]
    assert [presentation.device_argument(choice) for choice in choices] == expected
    assert presentation.device_argument("cuda (NVIDIA H100, 70.2 GiB free)") == "cuda"
    assert presentation.device_argument("") == "auto"


def test_progress_status_line():
    describe = presentation.describe_progress
    update = ProgressUpdate(0.423, "inference", 65.4, "2/3 ct.nrrd")
    assert describe(update) == "inference 42%, about 1 min 5 s left (2/3 ct.nrrd)"
    assert describe(ProgressUpdate(0.0, "load", None)) == "load 0%"
    assert describe(ProgressUpdate(0.9, "save", 4.4)) == "save 90%, about 4 s left"


def test_training_status_line_names_the_model_and_its_validation():
    outcome = TrainingOutcome(
        model_name="lungs",
        model_version="0.2.0",
        metrics={"mean_dice": 0.9312, "dice": {"right": 0.94, "left": 0.9224}, "epoch": 57},
    )
    assert presentation.describe_training(outcome) == (
        "Installed lungs 0.2.0: validation Dice 0.931 (right 0.940, left 0.922), best epoch 57."
    )
    assert presentation.describe_training(TrainingOutcome(model_name="x", model_version="1")) == (
        "Installed x 1."
    )
