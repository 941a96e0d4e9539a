"""What the module's widgets show: model choices and tooltips, device choices, status lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from factories import make_bundle, save_bundled_models, save_tiny_bundle
from LungLiverSegLib.bundle.catalogue import find_model
from LungLiverSegLib.bundle.importing import import_model
from LungLiverSegLib.paths import BUNDLED_MODELS_ENV, USER_MODELS_ENV
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
        f"Yours (trained or imported): {tmp_path / 'tiny-lungs-v1.0.0'}",
    ]


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The bundled lungs-ct-3d 0.1.1, and an empty folder for the user's models."""
    bundled = save_bundled_models(tmp_path / "bundled", make_bundle(name="lungs-ct-3d", version="0.1.1"))
    monkeypatch.setenv(BUNDLED_MODELS_ENV, str(bundled))
    monkeypatch.setenv(USER_MODELS_ENV, str(tmp_path / "user"))
    return tmp_path / "user"


def test_a_trained_model_older_than_the_bundled_one_is_its_own_item_and_its_key_runs_it(
    user_dir: Path, tmp_path: Path
):
    """The lungs-ct-3d preset trains 0.1.0, older than the bundled 0.1.1: by name alone, the
    bundled model would run whichever item the user picked."""
    trained = save_tiny_bundle(tmp_path / "run", make_bundle(name="lungs-ct-3d", version="0.1.0"))
    import_model(trained)

    choices = presentation.model_choices()
    assert [(choice.key, choice.text) for choice in choices] == [
        ("lungs-ct-3d@0.1.1", "lungs-ct-3d 0.1.1"),
        ("lungs-ct-3d@0.1.0", "lungs-ct-3d 0.1.0 (yours)"),
    ]
    runs = {choice.key: find_model(choice.key) for choice in choices}
    assert (runs["lungs-ct-3d@0.1.0"].version, runs["lungs-ct-3d@0.1.0"].folder) == (
        "0.1.0",
        user_dir / "lungs-ct-3d-v0.1.0",
    )
    assert runs["lungs-ct-3d@0.1.1"].folder == tmp_path / "bundled" / "lungs-ct-3d-v0.1.1"
    assert [choice.tooltip.splitlines()[-1] for choice in choices] == [
        "Comes with LungLiverSeg",
        f"Yours (trained or imported): {user_dir / 'lungs-ct-3d-v0.1.0'}",
    ]


def test_a_stored_model_is_shown_by_the_item_that_runs_it():
    keys = ["lungs-ct-3d@0.1.1", "lungs-ct-3d@0.1.0", "lungs-ct-3d@0.10.0-rc.1", "liver-ct-2d@1.0.0"]
    assert presentation.shown_key("lungs-ct-3d@0.1.0", keys) == "lungs-ct-3d@0.1.0"
    # a scene saved before the items had versions: the name runs its newest version
    assert presentation.shown_key("lungs-ct-3d", keys) == "lungs-ct-3d@0.10.0-rc.1"
    assert presentation.shown_key("lungs-ct-3d@9.9.9", keys) is None
    assert presentation.shown_key("", keys) is None and presentation.shown_key("x", []) is None


def test_a_users_copy_of_a_bundled_version_is_one_item_describing_the_copy_that_runs(
    user_dir: Path, tmp_path: Path
):
    copy = save_tiny_bundle(tmp_path / "copy", make_bundle(name="lungs-ct-3d", version="0.1.1"))
    import_model(copy, replace=True)  # the bundled 0.1.1 no longer runs under its name: asked for
    [choice] = presentation.model_choices()
    assert (choice.key, choice.text) == ("lungs-ct-3d@0.1.1", "lungs-ct-3d 0.1.1 (yours)")
    assert find_model(choice.key).folder == user_dir / "lungs-ct-3d-v0.1.1"


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
    assert outcome.model_key == "lungs@0.2.0" and TrainingOutcome(error="failed").model_key is None


def test_training_status_line_when_the_user_kept_the_installed_model():
    outcome = TrainingOutcome(
        model_name="lungs",
        model_version="0.1.0",
        bundle_folder=Path("/runs/lungs/bundle/lungs-v0.1.0"),
        metrics={"mean_dice": 0.9, "dice": {"lungs": 0.9}, "epoch": 3},
        kept_installed=True,
    )
    assert presentation.describe_training(outcome) == (
        "Trained lungs 0.1.0, kept in /runs/lungs/bundle/lungs-v0.1.0 (your installed lungs 0.1.0 was "
        "not replaced): validation Dice 0.900 (lungs 0.900), best epoch 3."
    )
