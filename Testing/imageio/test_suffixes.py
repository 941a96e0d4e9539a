"""Image file names: the one list of suffixes and the one splitter."""

from __future__ import annotations

from pathlib import Path

import pytest
from LungLiverSegLib.imageio import IMAGE_SUFFIXES, WRITABLE_SUFFIXES, split_image_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ct.nii.gz", ("ct", ".nii.gz")),
        ("lungs.seg.nrrd", ("lungs", ".seg.nrrd")),
        ("volume.nrrd", ("volume", ".nrrd")),
        ("CT.NII.GZ", ("CT", ".nii.gz")),
        ("x-ray.v2.PNG", ("x-ray.v2", ".png")),
        ("scan.tiff", ("scan", ".tiff")),
        ("slice.dcm", ("slice.dcm", "")),
        ("notes", ("notes", "")),
    ],
)
def test_split_image_name(name, expected):
    assert split_image_name(Path("some/folder") / name) == expected


def test_every_writable_suffix_is_readable_and_every_suffix_splits_off_whole():
    assert set(WRITABLE_SUFFIXES) <= set(IMAGE_SUFFIXES)
    assert all(split_image_name(f"case{suffix}") == ("case", suffix) for suffix in IMAGE_SUFFIXES)
