"""Training datasets: discovery, validation and the patient-level split.

Two layouts are read:

* MSD / nnU-Net: ``dataset.json`` (labels MSD style ``{"0": "background", "1": "liver"}`` or
  nnU-Net v2 style ``{"background": 0, "liver": 1}``), ``imagesTr/<case>_0000.nii.gz`` (or MSD's
  ``imagesTr/<case>.nii.gz``) and ``labelsTr/<case>.nii.gz``; one case is one patient.
* 2D folders: ``images/*.png`` and ``<masks_folder>/*.png`` matched by name; the patient (or
  volume) of ``10001_102.png`` is the part before the last ``_`` (``10001``), so slices of one
  volume never end up on both sides of the split.

Hidden files are never cases: the half-written temporary file a killed export leaves (the
``.tmp-`` names of ``LungLiverSegLib.files``), a macOS ``._`` copy of an image's metadata.

The MSD / nnU-Net names and dataset.json are read through ``LungLiverSegLib.dataset.layout``,
the module export writes them with. Every problem is a ``DatasetError`` naming the file, because
a training run that dies an hour in on a mislabelled case wastes far more time than a check up
front. (Not ``monai.data.load_decathlon_datalist``: the "training" list is read by the core's
``layout``, which export uses without MONAI, and MONAI's reader checks no file and names neither
dataset.json nor the entry when an entry is malformed.)
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from LungLiverSegLib.dataset import layout
from LungLiverSegLib.dataset.layout import DATASET_JSON, NNUNET_SPLITS
from LungLiverSegLib.errors import LungLiverSegError
from LungLiverSegLib.files import is_hidden
from LungLiverSegLib.geometry import Image, grid_difference
from LungLiverSegLib.imageio import read_image, split_image_name
from LungLiverSegLib.imageio.suffixes import PICTURE_SUFFIXES
from LungLiverSegLib.jsonio import read_json

from LungLiverSegTraining.config import TrainingConfig
from LungLiverSegTraining.errors import DatasetError

UNKNOWN_LABEL = -1


@dataclass(frozen=True)
class Case:
    """One training example: an image, its label image, and the patient it belongs to."""

    case_id: str
    group_id: str
    image_path: Path
    label_path: Path


@dataclass(frozen=True)
class Dataset:
    """Cases plus the dataset's own label map (value -> name) and any split it defines."""

    root: Path
    cases: tuple[Case, ...]
    label_names: dict[int, str]
    predefined_split: dict[str, list[str]] | None = None


@dataclass(frozen=True)
class Split:
    """Case ids for training and validation, and where the split came from."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    source: str

    def to_json(self) -> dict[str, Any]:
        return {"train": list(self.train), "val": list(self.val), "source": self.source}


def open_dataset(root: str | Path, config: TrainingConfig) -> Dataset:
    """Find the cases of the dataset at ``root`` (either layout) and check their files exist."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    if (root / "images").is_dir() and not (root / DATASET_JSON).exists():
        dataset = _open_image_folders(root, config)
    else:
        dataset = _open_msd(root)
    if not dataset.cases:
        raise DatasetError(f"{root}: the dataset is empty (no image with a matching label found)")
    return dataset


def _open_msd(root: Path) -> Dataset:
    json_path = root / DATASET_JSON
    if not json_path.is_file():
        raise DatasetError(
            f"{root}: missing {DATASET_JSON} (expected the MSD / nnU-Net layout with "
            "dataset.json, imagesTr/, labelsTr/, or a 2D layout with images/ and masks/)"
        )
    description = layout.read_dataset_json(root, DatasetError)
    labels = layout.label_names(description, json_path, DatasetError)
    listed = bool(description.get("training"))
    if listed:
        pairs = layout.listed_cases(root, description, DatasetError)
    else:
        pairs = layout.found_cases(root, DatasetError)
    for _, image, label in pairs:
        for path in (image, label):
            _require_file(path, json_path if listed else image)
    cases = _unique_cases(
        [Case(case_id, case_id, image, label) for case_id, image, label in pairs], json_path
    )
    return Dataset(root, cases, labels, _predefined_split(root, description, json_path))


def _require_file(path: Path, source: Path) -> None:
    if not path.is_file():
        raise DatasetError(f"{source}: {path} does not exist")


def _unique_cases(cases: list[Case], source: Path) -> tuple[Case, ...]:
    seen: dict[str, Case] = {}
    for case in cases:
        if case.case_id in seen:
            raise DatasetError(
                f"{source}: duplicate case id {case.case_id!r} "
                f"({seen[case.case_id].image_path.name} and {case.image_path.name})"
            )
        seen[case.case_id] = case
    return tuple(cases)


def _predefined_split(root: Path, description: dict[str, Any], source: Path) -> dict[str, list[str]] | None:
    """dataset.json's ``"split": {"train": [...], "val": [...]}``, else fold 0 of nnU-Net's splits."""
    split = description.get("split")
    splits_file = root / NNUNET_SPLITS
    if split is None and splits_file.is_file():
        folds = read_json(splits_file, DatasetError, "nnU-Net's splits")
        split, source = (folds[0] if isinstance(folds, list) and folds else folds), splits_file
    if split is None:
        return None
    if not isinstance(split, dict) or not all(isinstance(split.get(key), list) for key in ("train", "val")):
        raise DatasetError(f'{source}: split: expected {{"train": [case ids], "val": [case ids]}}')
    return {"train": [str(c) for c in split["train"]], "val": [str(c) for c in split["val"]]}


def _open_image_folders(root: Path, config: TrainingConfig) -> Dataset:
    masks_folder = root / config.masks_folder
    if not masks_folder.is_dir():
        raise DatasetError(
            f"{masks_folder}: missing (2D layout: images/ and {config.masks_folder}/ with "
            "masks of the same file names)"
        )
    cases = []
    for image in _pictures(root / "images"):
        mask = masks_folder / image.name
        if not mask.is_file():
            raise DatasetError(f"{image}: no mask {mask.name} in {masks_folder}")
        case_id = split_image_name(image)[0]
        cases.append(Case(case_id, case_id.rsplit("_", 1)[0] if "_" in case_id else case_id, image, mask))
    return Dataset(root, _unique_cases(cases, root / "images"), dict(config.label_names))


def _pictures(folder: Path) -> list[Path]:
    """The 2D images of ``folder``; hidden files (a writer's temporary file, a macOS ``._`` copy)
    are no one's images."""
    return sorted(
        path
        for path in folder.iterdir()
        if split_image_name(path)[1] in PICTURE_SUFFIXES and not is_hidden(path)
    )


# ------------------------------------------------------------------------------------------
# Labels: dataset values -> the config's output values
# ------------------------------------------------------------------------------------------


def label_lookup(dataset: Dataset, config: TrainingConfig) -> np.ndarray:
    """Lookup table dataset label value -> output value (by segment name and ``label_sources``).

    Dataset labels that no output segment claims become background, so a dataset with extra
    structures can train a model of fewer ones; values the dataset does not list map to
    ``UNKNOWN_LABEL`` so that ``load_case`` can refuse them.
    """
    by_name = {name: value for value, name in dataset.label_names.items()}
    lookup = np.full(max(dataset.label_names, default=0) + 1, UNKNOWN_LABEL, dtype=np.int16)
    lookup[[0, *dataset.label_names]] = 0
    for value, name in config.label_names.items():
        sources = config.label_sources.get(name, [name])
        missing = [source for source in sources if source not in by_name]
        if missing:
            raise DatasetError(
                f"{dataset.root}: label {missing[0]!r} (for segment {name!r}) is not in the "
                f"dataset's labels {sorted(by_name)}; set label_sources in the config"
            )
        for source in sources:
            lookup[by_name[source]] = value
    return lookup


def load_case(case: Case, lookup: np.ndarray) -> tuple[Image, Image]:
    """Read a case, check that image and labels line up, and map labels to the output values."""
    try:
        image, labels = read_image(case.image_path), read_image(case.label_path)
    except LungLiverSegError as error:
        raise DatasetError(f"case {case.case_id}: {error}") from error
    check_same_grid(image, labels, case)
    values = np.unique(labels.array)
    outside = [v for v in values.tolist() if not 0 <= v < len(lookup) or lookup[int(v)] == UNKNOWN_LABEL]
    if outside:
        known = [v for v in range(len(lookup)) if lookup[v] != UNKNOWN_LABEL]
        raise DatasetError(
            f"{case.label_path}: label values {outside} are not in the dataset's label map (known: {known})"
        )
    return image, labels.with_array(lookup[labels.array.astype(np.int64)].astype(np.uint8))


def check_same_grid(image: Image, labels: Image, case: Case) -> None:
    """Image and labels must lie on one voxel grid (``geometry.grid_difference``'s tolerance)."""
    if image.array.ndim != labels.array.ndim or image.size != labels.size:
        raise DatasetError(
            f"case {case.case_id}: image size {image.size} (array {image.array.shape}) "
            f"differs from label size {labels.size} (array {labels.array.shape})"
        )
    difference = grid_difference(image, labels)
    if difference is not None:
        name, _, values = difference.partition(" ")
        raise DatasetError(
            f"case {case.case_id}: image and label {name} differ: {values}; resample the labels "
            "onto the image grid"
        )


# ------------------------------------------------------------------------------------------
# Split
# ------------------------------------------------------------------------------------------


def make_split(dataset: Dataset, val_fraction: float, seed: int) -> Split:
    """The dataset's own split when it has one, else a seeded split of patients (groups)."""
    ids = [case.case_id for case in dataset.cases]
    if dataset.predefined_split is not None:
        named = {case_id for part in dataset.predefined_split.values() for case_id in part}
        unknown = sorted(named - set(ids))
        if unknown:
            raise DatasetError(f"{dataset.root}: the split names cases that do not exist: {unknown[:5]}")
        return Split(
            tuple(dataset.predefined_split["train"]), tuple(dataset.predefined_split["val"]), "dataset"
        )
    groups = sorted({case.group_id for case in dataset.cases})
    if len(groups) < 2:
        raise DatasetError(
            f"{dataset.root}: at least 2 patients are needed to hold one out for "
            f"validation, found {len(groups)}"
        )
    random.Random(seed).shuffle(groups)
    n_val = min(len(groups) - 1, max(1, round(val_fraction * len(groups))))
    val_groups = set(groups[:n_val])
    val = tuple(case.case_id for case in dataset.cases if case.group_id in val_groups)
    train = tuple(case.case_id for case in dataset.cases if case.group_id not in val_groups)
    return Split(train, val, f"seeded by patient (seed {seed}, {n_val} of {len(groups)} patients held out)")


def split_from_json(data: dict[str, Any]) -> Split:
    """Read back ``split.json`` (for ``--resume``)."""
    return Split(tuple(data["train"]), tuple(data["val"]), str(data["source"]))
