"""The cases of a folder: image files (not segmentations, not hidden files), one case per DICOM
series of a subfolder, and case IDs that are valid and unique."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from factories import write_dicom_series
from LungLiverSegLib.dataset.export import validate_case_id
from LungLiverSegLib.imageio import read_image
from LungLiverSegLib.worklist.scan import find_cases
from LungLiverSegLib.worklist.store import Found

STUDY = "1.2.826.0.1.3680043.2.1125.77"


def write_volume(path: Path, value: int = 0) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(np.full((3, 4, 5), value, np.int16)), str(path))
    return path


def test_image_files_are_cases_and_the_rest_is_not(tmp_path: Path):
    for name in ("b.nii.gz", "a.nrrd", "c.mha", "Scan 01 (arterial).nii"):
        write_volume(tmp_path / name)
    write_volume(tmp_path / "a.seg.nrrd")  # a segmentation beside its image
    write_volume(tmp_path / ".hidden.nii.gz")
    write_volume(tmp_path / "._a.nrrd")  # macOS metadata copy
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "README").write_text("nor this")
    (tmp_path / "no dicom here").mkdir()
    write_volume(tmp_path / "no dicom here" / "inner.nii.gz")  # only one level, and only DICOM
    hidden_series = tmp_path / ".trash"
    write_dicom_series(hidden_series, f"{STUDY}.9")

    assert find_cases(tmp_path) == [
        Found("Scan_01_arterial_", "Scan 01 (arterial).nii"),
        Found("a", "a.nrrd"),
        Found("b", "b.nii.gz"),
        Found("c", "c.mha"),
    ]
    for case in find_cases(tmp_path):
        assert validate_case_id(case.case_id) == case.case_id
        assert read_image(tmp_path / case.source).array.shape == (3, 4, 5)


def test_duplicate_stems_get_a_number(tmp_path: Path):
    for name in ("ct.nii.gz", "ct.nrrd", "ct.mha", "ct_2.nii", "c t.nrrd", "c_t.mha"):
        write_volume(tmp_path / name)
    cases = find_cases(tmp_path)
    # sorted names: "c t.nrrd", "c_t.mha", "ct.mha", "ct.nii.gz", "ct.nrrd", "ct_2.nii"
    assert [(case.case_id, case.source) for case in cases] == [
        ("c_t", "c t.nrrd"),
        ("c_t_2", "c_t.mha"),
        ("ct", "ct.mha"),
        ("ct_2", "ct.nii.gz"),
        ("ct_3", "ct.nrrd"),
        ("ct_2_2", "ct_2.nii"),  # its own stem was taken by then
    ]
    assert len({case.case_id for case in cases}) == len(cases)


def test_a_dicom_subfolder_is_one_case_per_series(tmp_path: Path):
    one = f"{STUDY}.1"
    write_dicom_series(tmp_path / "patient 7", one)
    two_a, two_b = f"{STUDY}.2", f"{STUDY}.3"
    write_dicom_series(tmp_path / "study", two_a, prefix="a")
    write_dicom_series(tmp_path / "study", two_b, slices=3, prefix="b")
    (tmp_path / "patient 7" / "DICOMDIR.txt").write_text("a note among the slices")
    write_volume(tmp_path / "patient 7.nii.gz")  # the same name as a file: unique ids

    cases = find_cases(tmp_path)
    assert cases[:2] == [
        Found("patient_7", "patient 7", one),
        Found("patient_7_2", "patient 7.nii.gz"),
    ]
    assert {(case.case_id, case.source) for case in cases[2:]} == {("study_1", "study"), ("study_2", "study")}
    assert {case.series_uid for case in cases[2:]} == {two_a, two_b}
    for case in cases:
        image = read_image(tmp_path / case.source, case.series_uid)
        expected = 3 if case.series_uid in (two_b, None) else 4
        assert image.array.shape[0] == expected
        if case.series_uid is not None:
            assert image.array[0, 0, 0] == -1000 and image.array[-1, 0, 0] == (expected - 1) * 10 - 1000


def test_an_empty_folder_has_no_case(tmp_path: Path):
    assert find_cases(tmp_path) == []
