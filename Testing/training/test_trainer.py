"""The training loop: a tiny real run on phantoms (trained once for the module), exact resume,
fine-tuning, and short runs of the 2D presets on real images. Every test here trains, hence
``slow`` on the whole module."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from factories import require_file
from LungLiverSegLib import cli
from LungLiverSegLib.bundle.model_json import load_bundle
from LungLiverSegLib.bundle.networks import build_network
from LungLiverSegLib.demo.phantom import make_phantom_dataset
from LungLiverSegLib.errors import Cancelled
from LungLiverSegLib.imageio.images import read_image
from LungLiverSegLib.progress import CancelToken
from LungLiverSegTraining import checkpoint
from LungLiverSegTraining.config import load_config
from LungLiverSegTraining.dataset_reader import label_lookup, load_case, open_dataset
from LungLiverSegTraining.distributed import DistributedContext
from LungLiverSegTraining.errors import TrainingConfigError
from LungLiverSegTraining.trainer import TrainOptions, train
from LungLiverSegTraining.validation import ValidationCase, validate

pytestmark = pytest.mark.slow

PHANTOM_SIZE = (80, 64, 48)
PHANTOM_SPACING = (4.0, 4.0, 6.0)


def tiny_config(epochs: int = 8):
    """phantom-ct-3d with a smaller patch and every augmentation switched on, for speed and coverage."""
    config = load_config("phantom-ct-3d")
    config = replace(
        config,
        epochs=epochs,
        validate_every=4,
        warmup_epochs=1,
        inference={**config.inference, "patch_size": [32, 32, 32]},
        flip_axes=[0],
        rotate90_prob=0.3,
        average_last_epochs=3,
    )
    return config.validate()


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One thread: on a small, shared CI machine OpenMP threads that spin-wait for busy cores make
    training many times slower than a single thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def phantom_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("phantoms")
    return make_phantom_dataset(folder, 5, seed=3, size=PHANTOM_SIZE, spacing=PHANTOM_SPACING)


@pytest.fixture(scope="module")
def trained_run(phantom_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("run")
    events: list[dict] = []
    result = train(
        TrainOptions(dataset=phantom_dataset, out=out, config=tiny_config(), callback=events.append)
    )
    return out, result, events


def untrained_mean_dice(dataset: Path, out: Path) -> float:
    """Validation Dice of the same network at its (seeded) initialisation."""
    config = tiny_config()
    torch.manual_seed(config.seed)
    template = config.bundle_template()
    network = build_network(template.architecture, 3, 1, template.out_channels)
    opened = open_dataset(dataset, config)
    lookup = label_lookup(opened, config)
    by_id = {case.case_id: case for case in opened.cases}
    val_ids = json.loads((out / "split.json").read_text())["val"]
    cases = [ValidationCase(i, by_id[i].group_id, *load_case(by_id[i], lookup)) for i in val_ids]
    return float(validate(network, template, cases, torch.device("cpu"), DistributedContext())["mean_dice"])


def test_tiny_training_beats_untrained_model_and_its_bundle_segments(trained_run, phantom_dataset, tmp_path):
    out, result, events = trained_run
    assert result.best_mean_dice > untrained_mean_dice(phantom_dataset, out) + 0.1
    losses = [record["loss"] for record in result.history]
    assert losses[-1] < losses[0]
    assert {"step", "validation", "epoch", "done"} <= {event["event"] for event in events}
    assert all(event["eta_s"] is None or event["eta_s"] >= 0 for event in events if event["event"] == "step")
    assert (out / "curves.png").stat().st_size > 1000
    bundle = load_bundle(result.bundle_folder)
    assert bundle.validation["dice"].keys() == {"lungs", "liver"}
    assert bundle.validation["cpu_time_s"] > 0
    assert bundle.inference.unsure_ratio_limit == round(2 * bundle.validation["unsure_ratio_p95"], 2)
    fingerprint = bundle.inference.input_histogram
    assert fingerprint is not None
    assert all(a <= b for a, b in zip(fingerprint.low, fingerprint.high, strict=True))
    assert bundle.validation["unlike_training_images"] == 0  # the phantoms are all alike
    assert bundle.provenance["seed"] == 0 and bundle.provenance["epochs"] == 8
    assert result.history[-1]["weights"] == "mean of the weights of epochs 6-8"
    assert "weights" not in result.history[-2]
    assert "phantom_" in bundle.provenance["split"]
    assert "synthetic phantoms only" in (result.bundle_folder / "README.md").read_text()

    image = phantom_dataset / "imagesTr" / "phantom_000_0000.nii.gz"
    target = tmp_path / "seg.nii.gz"
    assert (
        cli.main(
            ["segment", str(image), str(target), "--model", str(result.bundle_folder), "--progress", "none"]
        )
        == 0
    )
    labels = read_image(target)
    assert labels.size == read_image(image).size
    assert set(np.unique(labels.array)) <= {0, 1, 2} and (labels.array == 1).any()


def test_resume_after_interruption_matches_an_uninterrupted_run(phantom_dataset, trained_run, tmp_path):
    _, uninterrupted, _ = trained_run
    cancel = CancelToken()

    def stop_after_epoch_7(event: dict) -> None:
        """Inside the weight-averaging window (6-8): the running mean must survive the restart."""
        if event["event"] == "epoch" and event["epoch"] == 7:
            cancel.cancel()

    options = TrainOptions(
        dataset=phantom_dataset,
        out=tmp_path,
        config=tiny_config(),
        callback=stop_after_epoch_7,
        cancel=cancel,
    )
    with pytest.raises(Cancelled):
        train(options)
    assert torch.load(tmp_path / checkpoint.LAST, weights_only=True)["epoch"] == 7
    resumed = train(TrainOptions(dataset=phantom_dataset, out=tmp_path, resume=True))

    expected = [record["loss"] for record in uninterrupted.history]
    assert [record["loss"] for record in resumed.history] == pytest.approx(expected, rel=1e-5)
    assert resumed.best_mean_dice == pytest.approx(uninterrupted.best_mean_dice, abs=1e-4)
    weights = torch.load(tmp_path / checkpoint.LAST, weights_only=True)["model"]
    reference = torch.load(uninterrupted.bundle_folder.parents[1] / checkpoint.LAST, weights_only=True)[
        "model"
    ]
    for key, tensor in reference.items():
        torch.testing.assert_close(weights[key], tensor, rtol=1e-4, atol=1e-5)


def test_an_existing_run_is_not_overwritten_without_resume(trained_run, phantom_dataset):
    out, _, _ = trained_run
    with pytest.raises(TrainingConfigError, match="--resume"):
        train(TrainOptions(dataset=phantom_dataset, out=out, config=tiny_config()))


def test_init_from_a_bundle_with_other_labels_is_refused(trained_run, phantom_dataset, tmp_path):
    _, result, _ = trained_run
    config = tiny_config()
    config = replace(config, labels={"1": config.labels["1"]}, label_sources={})
    with pytest.raises(TrainingConfigError, match="labels"):
        train(
            TrainOptions(dataset=phantom_dataset, out=tmp_path, config=config, init_from=result.bundle_folder)
        )


def test_init_from_a_fitting_bundle_fine_tunes(trained_run, phantom_dataset, tmp_path):
    _, result, _ = trained_run
    tuned = train(
        TrainOptions(
            dataset=phantom_dataset,
            out=tmp_path,
            config=tiny_config(epochs=1),
            init_from=result.bundle_folder,
        )
    )
    assert tuned.best_mean_dice > result.best_mean_dice - 0.15


def small_2d_subset(source: Path, folder: Path, masks_folder: str, count: int) -> Path:
    """Link the first ``count`` images (and masks) of a shared 2D set into ``folder``."""
    for name in sorted(path.name for path in (source / "images").iterdir())[:count]:
        for sub in ("images", masks_folder):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            (folder / sub / name).symlink_to(source / sub / name)
    return folder


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("data", "preset"), [("ct_liver_msd_2d", "liver-ct-2d"), ("cxr_lung_shenzhen", "lungs-cxr-2d")]
)
def test_2d_presets_train_on_real_images(shared_data, tmp_path, data, preset):
    config = load_config(preset)
    params = {**config.architecture["params"], "channels": [8, 16, 32], "strides": [2, 2]}
    config = replace(
        config,
        architecture={**config.architecture, "params": params},
        epochs=2,
        validate_every=2,
        batch_size=4,
        preprocessing={**config.preprocessing, "resize_inplane": [64, 64]},
        inference={**config.inference, "patch_size": [64, 64]},
    ).validate()
    dataset = small_2d_subset(require_file(shared_data / data), tmp_path / "data", config.masks_folder, 12)
    result = train(TrainOptions(dataset=dataset, out=tmp_path / "run", config=config))
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    groups = {case_id.rsplit("_", 1)[0] for case_id in split["val"]}
    assert not groups & {case_id.rsplit("_", 1)[0] for case_id in split["train"]}
    assert 0.0 <= result.best_mean_dice <= 1.0
    image = next((dataset / "images").iterdir())
    target = tmp_path / "seg.nii.gz"
    assert (
        cli.main(
            ["segment", str(image), str(target), "--model", str(result.bundle_folder), "--progress", "none"]
        )
        == 0
    )
    assert read_image(target).size == read_image(image).size
