"""The cases of a folder of unlabeled scans: its image files, and each DICOM series of its
subfolders (one level down, as a scanner export or a PACS download lays them out)."""

from __future__ import annotations

from pathlib import Path

from LungLiverSegLib.dataset.export import sanitize_case_id
from LungLiverSegLib.files import is_hidden
from LungLiverSegLib.imageio import SEGMENTATION_SUFFIX, list_dicom_series, split_image_name
from LungLiverSegLib.imageio.dicom_lengths import has_dicom_magic
from LungLiverSegLib.worklist.store import Found


def find_cases(images: Path) -> list[Found]:
    """Image files (not segmentations) and DICOM series, sorted by name; case IDs are the names made
    safe for a dataset, unique (a series of a folder with several gets its number)."""
    found: list[Found] = []
    for path in sorted(p for p in images.iterdir() if not is_hidden(p)):
        stem, suffix = split_image_name(path)
        if path.is_file() and suffix and suffix != SEGMENTATION_SUFFIX:
            found.append(Found(sanitize_case_id(stem), path.name))
        elif path.is_dir() and _holds_dicom(path):
            series = list_dicom_series(path)
            for number, one in enumerate(series, start=1):
                suffix_id = f"_{number}" if len(series) > 1 else ""
                found.append(Found(sanitize_case_id(path.name) + suffix_id, path.name, one.uid))
    return _unique(found)


def _holds_dicom(folder: Path) -> bool:
    return any(has_dicom_magic(path) for path in sorted(folder.iterdir())[:20] if path.is_file())


def _unique(found: list[Found]) -> list[Found]:
    """``ct.nii.gz`` and ``ct.nrrd`` both give "ct": the second becomes "ct_2"."""
    taken: set[str] = set()
    unique = []
    for case in found:
        case_id, number = case.case_id, 1
        while case_id in taken:
            number += 1
            case_id = f"{case.case_id}_{number}"
        taken.add(case_id)
        unique.append(Found(case_id, case.source, case.series_uid))
    return unique
