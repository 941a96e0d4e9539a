"""Batch staging: every input of a batch (volume node or image file) into one input folder under a
unique, file-system-safe name, so that ONE child process segments them all (the model loads once).

Files are linked where the platform allows (a large CT costs nothing), else copied; volume nodes
are written as NRRD. Each input's labels go to ``<output folder>/<staged name>.seg.nrrd``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from LungLiverSegLib.errors import InputImageError
from LungLiverSegLib.imageio import IMAGE_SUFFIXES, SEGMENTATION_SUFFIX, split_image_name, write_image
from LungLiverSegLib.slicer_module import mrml_bridge

if TYPE_CHECKING:
    import slicer

# Images whose single file holds the whole image, so a link to it in another folder still reads
# (not .mhd, whose voxels are in a second file), and that are not already a segmentation.
LINKABLE_SUFFIXES = tuple(suffix for suffix in IMAGE_SUFFIXES if suffix not in (".mhd", SEGMENTATION_SUFFIX))


@dataclass
class SegmentationCase:
    """One input of a run: a volume node (gets a segmentation node) or a file (gets an output file)."""

    label_path: Path
    volume_node: slicer.vtkMRMLScalarVolumeNode | None = None
    existing_node: slicer.vtkMRMLSegmentationNode | None = None


def stage_batch(
    inputs: Sequence[slicer.vtkMRMLScalarVolumeNode | str | Path], input_folder: Path, output_folder: Path
) -> list[SegmentationCase]:
    """Put every input into ``input_folder`` under a unique name; return where its labels will be."""
    input_folder.mkdir(parents=True)
    cases: list[SegmentationCase] = []
    taken: set[str] = set()
    for item in inputs:
        if isinstance(item, str | Path):
            file, volume_node = Path(item), None
            stem, suffix = _file_name(file)
        else:
            file, volume_node = None, item
            stem, suffix = safe_stem(volume_node.GetName()), ".nrrd"
        stem = _unique(stem, taken)
        staged = input_folder / (stem + suffix)
        if file is not None:
            _link_or_copy(file, staged)
        else:
            write_image(staged, mrml_bridge.image_from_volume_node(volume_node), compress=False)
        cases.append(SegmentationCase(output_folder / f"{stem}{SEGMENTATION_SUFFIX}", volume_node))
    return cases


def _file_name(path: Path) -> tuple[str, str]:
    """``(safe stem, suffix)`` of a single-file image; anything else is refused with the reason."""
    if not path.is_file():
        raise InputImageError(f"{path}: no such image file")
    stem, suffix = split_image_name(path)
    if suffix not in LINKABLE_SUFFIXES:
        raise InputImageError(
            f"{path}: batch inputs must be single image files ({', '.join(LINKABLE_SUFFIXES)}); "
            "load other images into Slicer and pass the volume nodes"
        )
    return safe_stem(stem), suffix


def safe_stem(name: str) -> str:
    """A file name made of letters, digits, ``.``, ``_`` and ``-`` (a node name may hold anything)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"


def _unique(stem: str, taken: set[str]) -> str:
    """``stem``, or ``stem_2``, ``stem_3``... : unique ignoring case (file systems that fold it)."""
    candidate, number = stem, 1
    while candidate.casefold() in taken:
        number += 1
        candidate = f"{stem}_{number}"
    taken.add(candidate.casefold())
    return candidate


def _link_or_copy(source: Path, target: Path) -> None:
    """A link costs nothing for a large CT; where links are not allowed (Windows), a copy."""
    try:
        os.symlink(source.resolve(), target)
    except OSError:
        shutil.copyfile(source, target)
