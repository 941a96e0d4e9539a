"""Training from the module's logic: the real ``lunglivseg train`` in a real child process on tiny
phantoms, its progress, the installed bundle, a failure, and cancel + resume.

``train`` touches no MRML, but ``logic`` imports the MRML bridge: those tests need slicer-core.
The parsing of the training lines and the run-folder rules need nothing but the library.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from factories import make_bundle, save_tiny_bundle
from LungLiverSegLib.bundle.catalogue import CatalogueEntry, find_model, list_models
from LungLiverSegLib.cli.train_request import TrainRequest
from LungLiverSegLib.demo.phantom import make_phantom_dataset
from LungLiverSegLib.paths import USER_MODELS_ENV
from LungLiverSegLib.slicer_module.presentation import describe_training
from LungLiverSegLib.slicer_module.process import (
    CaseDone,
    EpochValidated,
    ProgressUpdate,
    parse_line,
)
from LungLiverSegLib.slicer_module.training_job import default_run_folder, holds_training_run
from LungLiverSegTraining.checkpoint import LAST, load_checkpoint
from LungLiverSegTraining.config import config_to_json, load_config

pytestmark = pytest.mark.skipif(os.name == "nt", reason="the process checks use POSIX signals")

MODEL = "tiny-phantom"
EPOCHS_BEFORE_RESUME = 4


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            '{"event": "step", "epoch": 3, "step": 5, "steps": 5, "loss": 0.4109, '
            '"fraction": 0.03, "eta_s": 160.2}',
            ProgressUpdate(0.03, "epoch 3, loss 0.41", 160.2, epoch=3, loss=0.4109),
        ),
        (
            '{"event": "validation", "epoch": 10, "dice": {"lungs": 0.95}, "nsd@2mm": {"lungs": 0.9}, '
            '"mean_dice": 0.95, "cases": 2, "cpu_time_s": 1.1}',
            EpochValidated(10, 0.95, {"lungs": 0.95}),
        ),
        ('{"event": "epoch", "epoch": 10, "loss": 0.12, "lr": 0.0029}', None),
        (
            '{"event": "done", "bundle": "runs/x/bundle/x-v0.1.0", "best_epoch": 60, "best_mean_dice": 0.94}',
            CaseDone("", "runs/x/bundle/x-v0.1.0"),
        ),
    ],
)
def test_training_lines_become_events(line: str, expected: object):
    assert parse_line(line) == expected


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dataset")
    return make_phantom_dataset(folder, 4, seed=5, size=(40, 32, 24), spacing=(4.0, 4.0, 6.0))


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """phantom-ct-3d, renamed (not to meet the bundled demo model) and shrunk to 2 short epochs."""
    config = config_to_json(load_config("phantom-ct-3d"))
    config.update(name=MODEL, epochs=2, validate_every=1, warmup_epochs=1, samples_per_case=1)
    config["inference"] = {**config["inference"], "patch_size": [24, 24, 16]}
    path = tmp_path_factory.mktemp("config") / "tiny.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


@pytest.fixture
def logic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A logic without a scene (training needs none), installing into the test's own models folder.

    ``logic`` imports the MRML bridge, hence slicer-core."""
    pytest.importorskip("slicer", reason="needs slicer-core (pip install 'slicer-core==5.11.*')")
    from LungLiverSegLib.slicer_module.logic import SceneLogic

    monkeypatch.setenv(USER_MODELS_ENV, str(tmp_path / "models"))
    return SceneLogic(scene=None)


def train(logic, dataset: Path, config_file: Path, out: Path, on_progress=None, **options):
    """One run on the CPU with one thread; the outcome and every progress update it reported."""
    updates: list[ProgressUpdate] = []
    request = TrainRequest(dataset, out, str(config_file), device="cpu", threads=1, **options)
    outcome = logic.train(request, waitForCompletion=True, on_progress=on_progress or updates.append)
    return outcome, updates


@pytest.mark.slow
@pytest.mark.slicer
def test_training_reports_progress_and_installs_its_bundle(logic, dataset, config_file, tmp_path):
    outcome, updates = train(logic, dataset, config_file, tmp_path / "run")

    assert outcome.succeeded, outcome.error
    fractions = [update.fraction for update in updates]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert updates[0].stage.startswith("epoch 1/2, loss ")
    assert "val Dice" in updates[-1].stage and updates[-1].eta_s is not None
    assert (outcome.model_name, outcome.model_version) == (MODEL, "0.1.0")
    assert 0.0 <= outcome.metrics["mean_dice"] <= 1.0
    installed = [(entry.name, entry.folder) for entry in list_models() if entry.error is None]
    assert (MODEL, outcome.bundle_folder) in installed
    assert describe_training(outcome).startswith(f"Installed {MODEL} 0.1.0: validation Dice ")


@pytest.mark.slow
@pytest.mark.slicer
def test_a_bad_dataset_fails_with_one_line(logic, config_file, tmp_path):
    outcome, updates = train(logic, tmp_path / "missing", config_file, tmp_path / "run")

    assert not outcome.succeeded and not outcome.cancelled and not updates
    assert "missing" in outcome.error and "\n" not in outcome.error
    assert "Traceback" not in outcome.error


@pytest.mark.slow
@pytest.mark.slicer
def test_cancel_stops_the_process_and_resume_continues_from_the_checkpoint(
    logic, dataset, config_file, tmp_path
):
    out = tmp_path / "run"
    cancelled: list[ProgressUpdate] = []

    def cancel_in_second_epoch(update: ProgressUpdate) -> None:
        """The first epoch's checkpoint is written before the second epoch's first step."""
        if update.epoch == 2 and not cancelled:
            cancelled.append(update)
            logic.cancel()

    outcome, _ = train(
        logic, dataset, config_file, out, on_progress=cancel_in_second_epoch, epochs=EPOCHS_BEFORE_RESUME
    )
    assert outcome.cancelled and outcome.error is None
    with pytest.raises(ProcessLookupError):
        os.kill(logic.runner.pid, 0)
    assert not (out / "bundle").exists() and holds_training_run(out)
    saved_epoch = load_checkpoint(out / LAST, torch.device("cpu"))["epoch"]
    assert 1 <= saved_epoch < EPOCHS_BEFORE_RESUME

    resumed, updates = train(logic, dataset, config_file, out, epochs=EPOCHS_BEFORE_RESUME, resume=True)
    assert resumed.succeeded, resumed.error
    assert updates[0].epoch == saved_epoch + 1
    assert updates[0].stage.startswith(f"epoch {saved_epoch + 1}/{EPOCHS_BEFORE_RESUME}, loss")


WARNING = "lunglivseg: warning: 2 cases have no left lung"


def fake_training(folder: Path, mean_dice: float) -> tuple[str, Path]:
    """Stands in for Slicer's Python running ``train``: a real child process that warns, and reports
    a real lungs-ct-3d 0.1.0 bundle (what the preset trains, every run) of the given validation Dice."""
    bundle = make_bundle(name="lungs-ct-3d", version="0.1.0", validation={"mean_dice": mean_dice})
    exported = save_tiny_bundle(folder / "bundle" / "lungs-ct-3d-v0.1.0", bundle)
    line = json.dumps(
        {"event": "done", "bundle": str(exported), "best_epoch": 1, "best_mean_dice": mean_dice}
    )
    script = folder / "fake_python"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nprint({WARNING!r}, file=sys.stderr)\nprint({line!r})\n"
    )
    script.chmod(0o755)
    return str(script), exported


def train_preset_again(logic, folder: Path, mean_dice: float, **options):
    logic.python, exported = fake_training(folder, mean_dice)
    request = TrainRequest(folder / "dataset", folder / "run", "lungs-ct-3d")
    return logic.train(request, waitForCompletion=True, **options), exported


@pytest.mark.slicer
def test_a_second_run_of_a_preset_replaces_its_model_when_the_user_agrees(logic, tmp_path: Path):
    first, _ = train_preset_again(logic, tmp_path / "first", 0.5)
    assert first.succeeded and not first.kept_installed, first.error
    asked: list[CatalogueEntry] = []

    def agree(installed: CatalogueEntry) -> bool:
        asked.append(installed)
        return True

    second, _ = train_preset_again(logic, tmp_path / "second", 0.75, replace_installed=agree)
    assert second.succeeded and not second.kept_installed, second.error
    assert [(entry.name, entry.version, entry.folder) for entry in asked] == [
        ("lungs-ct-3d", "0.1.0", first.bundle_folder)
    ]
    assert second.bundle_folder == first.bundle_folder and second.metrics["mean_dice"] == 0.75
    assert find_model(second.model_key).validation["mean_dice"] == 0.75


@pytest.mark.slicer
@pytest.mark.parametrize("decision", [False, lambda installed: False], ids=["script", "user declines"])
def test_a_second_run_of_a_preset_keeps_the_installed_model_unless_replacing_is_chosen(
    logic, tmp_path: Path, decision
):
    """Not an error after hours of training: the new model stays in its run folder."""
    first, _ = train_preset_again(logic, tmp_path / "first", 0.5)
    assert first.succeeded, first.error
    second, exported = train_preset_again(logic, tmp_path / "second", 0.75, replace_installed=decision)
    assert second.succeeded and second.kept_installed, second.error
    assert second.warnings == ("2 cases have no left lung",)
    assert (second.model_key, second.bundle_folder, second.metrics["mean_dice"]) == (
        "lungs-ct-3d@0.1.0",
        exported,
        0.75,
    )
    assert find_model("lungs-ct-3d@0.1.0").validation["mean_dice"] == 0.5
    assert find_model(str(exported)).validation["mean_dice"] == 0.75


def test_the_default_run_folder_sits_beside_the_dataset_and_is_named_after_the_config():
    assert default_run_folder("/data/lungs", "lungs-ct-3d") == Path("/data/lungs-training/lungs-ct-3d")
    assert default_run_folder("/data/lungs", "/cfg/tiny.json") == Path("/data/lungs-training/tiny")
