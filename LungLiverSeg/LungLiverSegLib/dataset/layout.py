"""The nnU-Net v2 / Medical Segmentation Decathlon dataset layout, written and read only here::

    dataset.json                  nnU-Net v2 fields (channel_names, labels, numTraining, file_ending)
                                  and MSD's "training" list of {image, label}
    imagesTr/<case>_0000.nii.gz   the image (channel 0: datasets here have one channel)
    labelsTr/<case>.nii.gz        its label map

Every writer (export, the phantom dataset, ``Training/scripts/prepare_lctsc.py``) builds its
dataset.json with ``dataset_json`` and writes it with ``write_dataset_json``, as nnU-Net's
converters all call ``generate_dataset_json``; every reader (export, Training's dataset reader,
evaluation's case names) goes through ``read_dataset_json``, ``label_names``, ``listed_cases``
and ``case_id``. Export adds ``predictions/`` and ``cases.jsonl`` beside, which nnU-Net ignores.

Functions that can fail take the caller's error type, so that export raises its
``DatasetExportError`` and Training its ``DatasetError``, each naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from LungLiverSegLib.files import is_hidden
from LungLiverSegLib.imageio.suffixes import VOLUME_SUFFIXES, split_image_name
from LungLiverSegLib.jsonio import read_json, write_json

DATASET_JSON = "dataset.json"
CASES_JSONL = "cases.jsonl"
NNUNET_SPLITS = "splits_final.json"
IMAGES_FOLDER, LABELS_FOLDER, PREDICTIONS_FOLDER = "imagesTr", "labelsTr", "predictions"
CHANNEL_SUFFIX = "_0000"
FILE_ENDING = ".nii.gz"
CT_CHANNEL = "CT"


def image_path(root: Path, case_id: str) -> Path:
    return root / IMAGES_FOLDER / f"{case_id}{CHANNEL_SUFFIX}{FILE_ENDING}"


def label_path(root: Path, case_id: str) -> Path:
    return root / LABELS_FOLDER / f"{case_id}{FILE_ENDING}"


def prediction_path(root: Path, case_id: str) -> Path:
    return root / PREDICTIONS_FOLDER / f"{case_id}{FILE_ENDING}"


def case_id(path: str | Path) -> str:
    """The case a file belongs to: its name without the image suffix and nnU-Net's ``_0000``."""
    return split_image_name(path)[0].removesuffix(CHANNEL_SUFFIX)


def channel_names(modality: str) -> dict[str, str]:
    """nnU-Net's ``channel_names`` for one channel of ``modality`` (a bundle's: CT, CXR, MR).

    nnU-Net picks the normalisation by this name: "CT" gets its dataset-wide Hounsfield-unit
    clipping and scaling, any other name z-scoring per image, which X-rays and MR need.
    """
    return {"0": modality}


def dataset_json(
    *,
    name: str,
    description: str,
    modality: str,
    labels: Mapping[int, str],
    case_ids: Sequence[str],
    **extra: Any,
) -> dict[str, Any]:
    """A dataset.json: ``labels`` maps label value -> name (0, background, is added); ``extra``
    keys (licence, a predefined split, export's own section) are kept as given."""
    document = {
        "name": name,
        "description": description,
        "channel_names": channel_names(modality),
        "labels": {"background": 0, **{label: value for value, label in sorted(labels.items())}},
        "numTraining": 0,
        "file_ending": FILE_ENDING,
        "training": [],
        **extra,
    }
    return with_cases(document, case_ids)


def with_cases(description: Mapping[str, Any], case_ids: Sequence[str]) -> dict[str, Any]:
    """``description`` listing exactly ``case_ids`` (numTraining and MSD's "training" list)."""
    here = Path()
    training = [
        {"image": f"./{image_path(here, case).as_posix()}", "label": f"./{label_path(here, case).as_posix()}"}
        for case in case_ids
    ]
    return {**description, "numTraining": len(case_ids), "training": training}


def write_dataset_json(root: Path, description: Mapping[str, Any]) -> Path:
    """Write ``root/dataset.json`` atomically (a reader never sees half of it)."""
    return write_json(root / DATASET_JSON, dict(description))


def read_dataset_json(root: Path, error_type: type[Exception]) -> dict[str, Any]:
    """``root/dataset.json`` as a dict; a missing, unreadable or non-object file raises ``error_type``."""
    path = root / DATASET_JSON
    description = read_json(path, error_type, DATASET_JSON)
    if not isinstance(description, dict):
        raise error_type(f"{path}: expected a JSON object")
    return description


def label_names(description: Mapping[str, Any], source: Path, error_type: type[Exception]) -> dict[int, str]:
    """Label value -> name without background, from nnU-Net v2's ``{"background": 0, "liver": 1}``
    or MSD's ``{"0": "background", "1": "liver"}``."""
    labels = description.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise error_type(f"{source}: labels: missing or not a JSON object")
    msd_style = all(str(key).isdigit() for key in labels)
    pairs = labels.items() if msd_style else ((value, name) for name, value in labels.items())
    result: dict[int, str] = {}
    for value, name in pairs:
        if not str(value).isdigit() or not isinstance(name, str):
            raise error_type(
                f"{source}: labels: {name!r}: {value!r} is not a label value; expected "
                '{"0": "background", "1": "liver"} or {"background": 0, "liver": 1}'
            )
        result[int(value)] = name
    return {value: name for value, name in sorted(result.items()) if value != 0}


def listed_cases(
    root: Path, description: Mapping[str, Any], error_type: type[Exception]
) -> list[tuple[str, Path, Path]]:
    """``(case id, image, label)`` of MSD's "training" list, named after the label files as in
    nnU-Net; whether the files exist is for the caller to decide."""
    listed = description.get("training", [])
    source = root / DATASET_JSON
    if not isinstance(listed, list):
        raise error_type(f"{source}: training: expected a list of {{image, label}} objects")
    cases = []
    for entry in listed:
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(key), str) for key in ("image", "label")
        ):
            raise error_type(f"{source}: training: entry {entry!r} lacks image or label")
        image, label = root / entry["image"], root / entry["label"]
        cases.append((case_id(label), image, label))
    return cases


def found_cases(root: Path, error_type: type[Exception]) -> list[tuple[str, Path, Path]]:
    """``(case id, image, label)`` for every single-channel image in ``imagesTr`` (no "training" list).

    nnU-Net names channel ``n`` of a case ``<case>_000n``; an image named like a second channel
    means a multi-channel dataset, which the models here cannot take. Hidden files are no cases:
    the half-written temporary file of a killed export, a macOS ``._`` copy of an image's metadata.
    """
    images_folder, labels_folder = root / IMAGES_FOLDER, root / LABELS_FOLDER
    for folder in (images_folder, labels_folder):
        if not folder.is_dir():
            raise error_type(f"{folder}: missing (the MSD / nnU-Net layout needs imagesTr/ and labelsTr/)")
    cases = []
    for image in sorted(images_folder.iterdir()):
        stem, suffix = split_image_name(image)
        if suffix not in VOLUME_SUFFIXES or is_hidden(image):
            continue
        channel = stem.rpartition("_")[2]
        if not stem.endswith(CHANNEL_SUFFIX) and "_" in stem and channel.isdigit() and len(channel) == 4:
            raise error_type(f"{image}: only single-channel datasets are supported (channel {channel})")
        case = stem.removesuffix(CHANNEL_SUFFIX)
        cases.append((case, image, labels_folder / (case + image.name[len(stem) :])))
    return cases
