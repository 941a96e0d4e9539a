"""Training: a tiny real run on phantoms, exact resume, dataset checks, configs, the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
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
from LungLiverSegTraining.config import PRESETS, config_from_json, config_to_json, load_config, phantom_ct_3d
from LungLiverSegTraining.dataset_reader import label_lookup, load_case, open_dataset
from LungLiverSegTraining.distributed import DistributedContext
from LungLiverSegTraining.errors import DatasetError, TrainingConfigError
from LungLiverSegTraining.trainer import TrainOptions, train
from LungLiverSegTraining.validation import ValidationCase, validate, validation_cases

PHANTOM_SIZE = (80, 64, 48)
PHANTOM_SPACING = (4.0, 4.0, 6.0)


def tiny_config(epochs: int = 8):
    """phantom-ct-3d with a smaller patch and every augmentation switched on, for speed and coverage."""
    config = phantom_ct_3d()
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


# ------------------------------------------------------------------------------------------
# Dataset checks
# ------------------------------------------------------------------------------------------


def write_nifti(path: Path, array: np.ndarray, spacing=(2.0, 2.0, 3.0), origin=(0.0, 0.0, 0.0)) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def small_msd(folder: Path, cases: int = 3, labels: dict | None = None) -> Path:
    """A tiny valid MSD dataset: cubes of label 1 in noise."""
    rng = np.random.default_rng(0)
    for index in range(cases):
        image = rng.normal(0, 100, (8, 16, 16)).astype(np.int16)
        label = np.zeros((8, 16, 16), np.uint8)
        label[2:6, 4:12, 4:12] = 1
        write_nifti(folder / "imagesTr" / f"case_{index}_0000.nii.gz", image)
        write_nifti(folder / "labelsTr" / f"case_{index}.nii.gz", label)
    description = {"labels": labels or {"background": 0, "lungs": 1, "liver": 2}}
    (folder / "dataset.json").write_text(json.dumps(description))
    return folder


def load_all(folder: Path) -> None:
    config = phantom_ct_3d()
    dataset = open_dataset(folder, replace(config, label_sources={}))
    lookup = label_lookup(dataset, replace(config, label_sources={}))
    for case in dataset.cases:
        load_case(case, lookup)


def test_a_valid_small_dataset_loads_with_either_label_style(tmp_path):
    load_all(small_msd(tmp_path / "v2"))
    load_all(small_msd(tmp_path / "msd", labels={"0": "background", "1": "lungs", "2": "liver"}))


def test_missing_dataset_json_is_reported(tmp_path):
    folder = small_msd(tmp_path)
    (folder / "dataset.json").unlink()
    with pytest.raises(DatasetError, match="missing dataset.json"):
        load_all(folder)


def test_empty_dataset_is_reported(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "lungs": 1}}))
    with pytest.raises(DatasetError, match="empty"):
        open_dataset(tmp_path, phantom_ct_3d())


def test_size_mismatch_is_reported(tmp_path):
    folder = small_msd(tmp_path)
    write_nifti(folder / "labelsTr" / "case_1.nii.gz", np.zeros((8, 16, 15), np.uint8))
    with pytest.raises(DatasetError, match="case_1: image size .* differs from label size"):
        load_all(folder)


def test_geometry_mismatch_is_reported(tmp_path):
    folder = small_msd(tmp_path)
    write_nifti(
        folder / "labelsTr" / "case_2.nii.gz", np.zeros((8, 16, 16), np.uint8), origin=(5.0, 0.0, 0.0)
    )
    with pytest.raises(DatasetError, match="case_2: image and label origin differ"):
        load_all(folder)


def test_label_values_outside_the_map_are_reported(tmp_path):
    folder = small_msd(tmp_path)
    write_nifti(folder / "labelsTr" / "case_0.nii.gz", np.full((8, 16, 16), 7, np.uint8))
    with pytest.raises(DatasetError, match=r"label values \[7\] are not in the dataset's label map"):
        load_all(folder)


def test_duplicate_case_ids_are_reported(tmp_path):
    folder = small_msd(tmp_path)
    write_nifti(folder / "imagesTr" / "case_0.nii.gz", np.zeros((8, 16, 16), np.int16))
    with pytest.raises(DatasetError, match="duplicate case id 'case_0'"):
        load_all(folder)


def test_a_config_label_missing_from_the_dataset_is_reported(tmp_path):
    folder = small_msd(tmp_path, labels={"background": 0, "kidney": 1})
    with pytest.raises(DatasetError, match="'lungs'.*not in the dataset's labels"):
        load_all(folder)


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array.astype(np.uint8)), str(path))


def test_2d_folders_split_by_volume_and_split_json_is_written(tmp_path):
    for volume in range(5):
        for slice_index in range(3):
            name = f"{1000 + volume}_{slice_index}.png"
            write_png(tmp_path / "images" / name, np.full((16, 16), 100))
            write_png(tmp_path / "masks" / name, np.eye(16))
    config = load_config("liver-ct-2d")
    dataset = open_dataset(tmp_path, config)
    assert len(dataset.cases) == 15 and dataset.cases[0].group_id == "1000"
    from LungLiverSegTraining.dataset_reader import make_split

    split = make_split(dataset, 0.4, seed=1)
    volume = {case_id.rsplit("_", 1)[0] for case_id in split.val}
    assert len(volume) == 2 and not volume & {case_id.rsplit("_", 1)[0] for case_id in split.train}
    assert make_split(dataset, 0.4, seed=1) == split


class BrightIsForeground(torch.nn.Module):
    """Label 1 exactly where a 0..255 image is above 127 (normalised above 0.5)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([-(x - 0.5), x - 0.5], dim=1) * 100.0


def test_2d_validation_pools_dice_per_volume(tmp_path):
    """Volume 1000: a 1600-pixel liver found exactly and a 16-pixel one missed (slice Dice 1 and 0,
    pooled 3200 / 3232); volume 1001: one slice found exactly. Patient mean: (3200/3232 + 1) / 2."""
    big, small, elsewhere = np.zeros((3, 256, 256), np.uint8)
    big[100:140, 100:140] = small[20:24, 20:24] = elsewhere[200:204, 200:204] = 1
    slices = {"1000_1": (big, big), "1000_2": (small, elsewhere), "1001_5": (big, big)}
    for name, (truth, bright) in slices.items():
        write_png(tmp_path / "images" / f"{name}.png", bright * 255)
        write_png(tmp_path / "masks" / f"{name}.png", truth)
    no_cleaning = {"largest_component": [], "fill_holes": [], "min_volume_ml": 0.0}
    config = replace(load_config("liver-ct-2d"), postprocessing=no_cleaning).validate()
    cases = validation_cases(open_dataset(tmp_path, config), config, list(slices))
    result = validate(
        BrightIsForeground(), config.bundle_template(), cases, torch.device("cpu"), DistributedContext()
    )
    assert result["mean_dice"] == pytest.approx((3200 / 3232 + 1.0) / 2)
    assert result["nsd_2mm"]["liver"] == pytest.approx((0.5 + 1.0) / 2)  # NSD: mean over a volume's slices
    assert (result["patients"], result["cases"]) == (2, 3)
    assert result["unsure_ratio_p95"] == 0.01  # a sure network: every image in the first 0.01 bin


def test_a_predefined_split_in_dataset_json_is_used(tmp_path):
    folder = small_msd(tmp_path)
    description = json.loads((folder / "dataset.json").read_text())
    description["split"] = {"train": ["case_0", "case_1"], "val": ["case_2"]}
    (folder / "dataset.json").write_text(json.dumps(description))
    from LungLiverSegTraining.dataset_reader import make_split

    split = make_split(open_dataset(folder, phantom_ct_3d()), 0.2, seed=0)
    assert split.val == ("case_2",) and split.source == "dataset"


# ------------------------------------------------------------------------------------------
# Configs and CLI
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_configs_round_trip_through_json(name, tmp_path):
    config = load_config(name)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config_to_json(config)))
    assert load_config(str(path)) == config
    assert config.bundle_template().name == name


def test_config_errors_name_the_field():
    data = config_to_json(phantom_ct_3d())
    with pytest.raises(TrainingConfigError, match="unknown fields: colour"):
        config_from_json({**data, "colour": 1})
    with pytest.raises(TrainingConfigError, match="preprocessing.spacing"):
        config_from_json({**data, "preprocessing": {**data["preprocessing"], "spacing": [1.0, 2.0]}})
    with pytest.raises(TrainingConfigError, match="epochs"):
        config_from_json({**data, "epochs": 0})


def test_cli_train_errors_are_one_line(tmp_path, capsys):
    code = cli.main(
        [
            "train",
            "--dataset",
            str(tmp_path / "nowhere"),
            "--config",
            "phantom-ct-3d",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("lunglivseg: error:") and "dataset folder not found" in error
    assert "\n" not in error


def test_cli_data_card_that_cannot_be_read_is_one_line(tmp_path, capsys):
    arguments = [
        "train",
        "--dataset",
        str(tmp_path),
        "--config",
        "phantom-ct-3d",
        "--out",
        str(tmp_path / "o"),
    ]
    assert cli.main([*arguments, "--data-card", str(tmp_path / "missing.md")]) == 2
    error = capsys.readouterr().err.strip()
    assert "--data-card" in error and "missing.md" in error and "\n" not in error


# ------------------------------------------------------------------------------------------
# Real 2D data (skipped when ../shared/data is absent)
# ------------------------------------------------------------------------------------------


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
