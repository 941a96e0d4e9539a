"""Reading a training dataset: both layouts, one-line reports of what is wrong, the split."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from factories import write_png
from LungLiverSegLib.files import temporary_path
from LungLiverSegTraining.config import load_config
from LungLiverSegTraining.dataset_reader import label_lookup, load_case, make_split, open_dataset
from LungLiverSegTraining.errors import DatasetError

ORIGIN = (0.0, 0.0, 0.0)


def write_nifti(path: Path, array: np.ndarray, spacing=(2.0, 2.0, 3.0), origin=ORIGIN) -> None:
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
    config = load_config("phantom-ct-3d")
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
    with pytest.raises(DatasetError, match=re.escape("missing dataset.json")):
        load_all(folder)


def test_empty_dataset_is_reported(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "lungs": 1}}))
    with pytest.raises(DatasetError, match="empty"):
        open_dataset(tmp_path, load_config("phantom-ct-3d"))


@pytest.mark.parametrize(
    ("file", "array", "origin", "message"),
    [
        (
            "labelsTr/case_1.nii.gz",
            np.zeros((8, 16, 15), np.uint8),
            ORIGIN,
            "case_1: image size .* differs from label size",
        ),
        (
            "labelsTr/case_2.nii.gz",
            np.zeros((8, 16, 16), np.uint8),
            (5.0, 0.0, 0.0),
            "case_2: image and label origin differ",
        ),
        (
            "labelsTr/case_0.nii.gz",
            np.full((8, 16, 16), 7, np.uint8),
            ORIGIN,
            r"label values \[7\] are not in the dataset's label map",
        ),
        ("imagesTr/case_0.nii.gz", np.zeros((8, 16, 16), np.int16), ORIGIN, "duplicate case id 'case_0'"),
    ],
    ids=["size", "geometry", "label-values", "duplicate-case-id"],
)
def test_a_broken_case_is_reported(tmp_path, file, array, origin, message):
    folder = small_msd(tmp_path)
    write_nifti(folder / file, array, origin=origin)
    with pytest.raises(DatasetError, match=message):
        load_all(folder)


def test_hidden_files_and_half_written_temporary_files_are_not_cases(tmp_path):
    """A killed export leaves ``.tmp-<hex>.nii.gz`` in imagesTr, macOS copies leave ``._<name>``:
    neither is a case, with or without a "training" list (nnU-Net v2 needs none)."""
    folder = small_msd(tmp_path / "msd")
    temporary_path(folder / "imagesTr" / "case_3_0000.nii.gz").write_bytes(b"half a NIfTI")
    (folder / "imagesTr" / "._case_0_0000.nii.gz").write_bytes(b"Finder metadata")
    assert [case.case_id for case in open_dataset(folder, load_config("phantom-ct-3d")).cases] == [
        "case_0",
        "case_1",
        "case_2",
    ]
    write_png(tmp_path / "2d" / "images" / "10001_1.png", np.full((16, 16), 100))
    write_png(tmp_path / "2d" / "masks" / "10001_1.png", np.eye(16))
    temporary_path(tmp_path / "2d" / "images" / "10001_2.png").write_bytes(b"half a PNG")
    dataset = open_dataset(tmp_path / "2d", load_config("liver-ct-2d"))
    assert [case.case_id for case in dataset.cases] == ["10001_1"]


def test_a_config_label_missing_from_the_dataset_is_reported(tmp_path):
    folder = small_msd(tmp_path, labels={"background": 0, "kidney": 1})
    with pytest.raises(DatasetError, match=r"'lungs'.*not in the dataset's labels"):
        load_all(folder)


def test_2d_folders_split_by_volume_and_the_split_is_seeded(tmp_path):
    for volume in range(5):
        for slice_index in range(3):
            name = f"{1000 + volume}_{slice_index}.png"
            write_png(tmp_path / "images" / name, np.full((16, 16), 100))
            write_png(tmp_path / "masks" / name, np.eye(16))
    config = load_config("liver-ct-2d")
    dataset = open_dataset(tmp_path, config)
    assert len(dataset.cases) == 15 and dataset.cases[0].group_id == "1000"
    split = make_split(dataset, 0.4, seed=1)
    volume = {case_id.rsplit("_", 1)[0] for case_id in split.val}
    assert len(volume) == 2 and not volume & {case_id.rsplit("_", 1)[0] for case_id in split.train}
    assert make_split(dataset, 0.4, seed=1) == split


def test_a_predefined_split_in_dataset_json_is_used(tmp_path):
    folder = small_msd(tmp_path)
    description = json.loads((folder / "dataset.json").read_text())
    description["split"] = {"train": ["case_0", "case_1"], "val": ["case_2"]}
    (folder / "dataset.json").write_text(json.dumps(description))
    split = make_split(open_dataset(folder, load_config("phantom-ct-3d")), 0.2, seed=0)
    assert split.val == ("case_2",) and split.source == "dataset"
