"""What a page may browse of the ``--data`` folder: the listing of one of its folders, and the DICOM
series of a folder (files written here with SimpleITK, or the real TotalSegmentator example)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import SimpleITK as sitk
from factories import SHARED_DATA, write_dicom_series
from LungLiverSegLib.browser.data_folder import FOLDER, IMAGE, Entry, dicom_series_choices, list_folder
from LungLiverSegLib.browser.security import AccessError

STUDY_UID = "1.2.826.0.1.3680043.2.1125.7"
TOTALSEG_DICOM = SHARED_DATA / "ct_abdomen_totalseg_example" / "example_ct_dicom"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Subfolders (one hidden), images of three formats, a file that is no image and a hidden image.

    Listing needs only the names (contents are not read, except for the DICOM probe)."""
    root = tmp_path / "data"
    for folder in ("b_cases", "A_scans/deeper", ".cache"):
        (root / folder).mkdir(parents=True)
    for name in ("ct.nii.gz", "Xray.png", "vol.nrrd", "notes.txt", ".hidden.nii.gz", "labels.seg.nrrd"):
        (root / name).write_bytes(b"not read by the listing")
    (root / "A_scans" / "inner.mha").write_bytes(b"")
    (root / "A_scans" / "readme.md").write_bytes(b"")
    return root


def test_a_folder_lists_its_subfolders_first_then_its_images(data: Path):
    listing = list_folder(data)
    assert listing.entries == (
        Entry("A_scans", "A_scans", FOLDER),
        Entry("b_cases", "b_cases", FOLDER),
        Entry("ct.nii.gz", "ct.nii.gz", IMAGE),
        Entry("labels.seg.nrrd", "labels.seg.nrrd", IMAGE),
        Entry("vol.nrrd", "vol.nrrd", IMAGE),
        Entry("Xray.png", "Xray.png", IMAGE),
    ), "folders first, names sorted ignoring case; notes.txt and hidden names left out"
    assert listing.parent is None
    assert not listing.has_dicom


def test_a_subfolder_lists_paths_relative_to_the_data_folder_and_its_parent(data: Path):
    scans = list_folder(data, "A_scans")
    assert scans.path == "A_scans"
    assert scans.entries == (
        Entry("deeper", "A_scans/deeper", FOLDER),
        Entry("inner.mha", "A_scans/inner.mha", IMAGE),
    )
    assert scans.parent is not None
    assert list_folder(data, scans.parent).entries == list_folder(data).entries, "the parent is the top"
    deeper = list_folder(data, "A_scans/deeper")
    assert (deeper.path, deeper.parent, deeper.entries) == ("A_scans/deeper", "A_scans", ())


def test_an_empty_relative_path_and_the_tops_own_path_list_the_top(data: Path):
    top = list_folder(data)
    assert list_folder(data, "").entries == top.entries
    assert list_folder(data, top.path).entries == top.entries
    assert list_folder(data, top.path).parent is None


def test_the_listing_is_plain_json_for_the_page(data: Path):
    state = list_folder(data, "A_scans").as_state()
    assert json.loads(json.dumps(state)) == {
        "path": "A_scans",
        "parent": state["parent"],
        "entries": [
            {"name": "deeper", "path": "A_scans/deeper", "kind": "folder"},
            {"name": "inner.mha", "path": "A_scans/inner.mha", "kind": "image"},
        ],
        "has_dicom": False,
    }


@pytest.mark.parametrize("relative", ["..", "../data", "/etc", "A_scans/../..", "C:\\", "missing"])
def test_listing_outside_the_data_folder_or_a_missing_folder_is_refused(data: Path, relative: str):
    with pytest.raises(AccessError):
        list_folder(data, relative)


def test_links_out_of_the_data_folder_are_left_out_of_the_listing(data: Path, tmp_path: Path):
    """A page could not open them (``confined`` refuses them), and the listing must not fail on them."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.nii.gz").write_bytes(b"")
    (data / "escape").symlink_to(outside)
    (data / "escape.nii.gz").symlink_to(outside / "secret.nii.gz")
    (data / "A_scans" / "alias.nrrd").symlink_to(data / "vol.nrrd")
    names = [entry.name for entry in list_folder(data).entries]
    assert "escape" not in names and "escape.nii.gz" not in names
    assert names == ["A_scans", "b_cases", "ct.nii.gz", "labels.seg.nrrd", "vol.nrrd", "Xray.png"]
    alias = [entry for entry in list_folder(data, "A_scans").entries if entry.name == "alias.nrrd"]
    assert [entry.kind for entry in alias] == [IMAGE], "a link within the data folder is listed"


def test_a_link_loop_is_left_out_of_the_listing(data: Path):
    (data / "loop.nii.gz").symlink_to(data / "loop.nii.gz")
    (data / "b_cases" / "ping").symlink_to(data / "b_cases" / "pong")
    (data / "b_cases" / "pong").symlink_to(data / "b_cases" / "ping")
    assert "loop.nii.gz" not in [entry.name for entry in list_folder(data).entries]
    assert list_folder(data, "b_cases").entries == ()


def test_a_folder_with_a_dicom_file_says_so(data: Path):
    sitk.WriteImage(sitk.Image(6, 5, sitk.sitkInt16), str(data / "b_cases" / "x.dcm"))
    assert (data / "b_cases" / "x.dcm").read_bytes()[128:132] == b"DICM"
    cases = list_folder(data, "b_cases")
    assert cases.has_dicom
    assert cases.entries == (), "a .dcm slice is no image entry: the folder opens as a series"
    assert not list_folder(data).has_dicom and not list_folder(data, "A_scans").has_dicom


def test_dicom_files_without_an_extension_are_found_too(tmp_path: Path):
    series = tmp_path / "data" / "series"
    for path in write_dicom_series(series, f"{STUDY_UID}.1", 2):
        path.rename(path.with_suffix(""))
    assert list_folder(tmp_path / "data", "series").has_dicom


def test_the_series_of_a_folder_become_the_pages_choices(tmp_path: Path):
    root = tmp_path / "data"
    write_dicom_series(root / "study", f"{STUDY_UID}.101", 3, "chest")
    write_dicom_series(root / "study", f"{STUDY_UID}.102", 2, "")
    choices = dicom_series_choices(root, "study")
    assert sorted(choices, key=lambda choice: choice["uid"]) == [
        {"uid": f"{STUDY_UID}.101", "title": "CT chest, 3 files"},
        {"uid": f"{STUDY_UID}.102", "title": "CT (no description), 2 files"},
    ]
    assert dicom_series_choices(root, "") == [], "the series of a folder, not of its subfolders"


def test_series_choices_outside_the_data_folder_are_refused(tmp_path: Path):
    write_dicom_series(tmp_path / "outside", f"{STUDY_UID}.9", 2)
    (tmp_path / "data").mkdir()
    with pytest.raises(AccessError):
        dicom_series_choices(tmp_path / "data", "../outside")


@pytest.mark.realdata
def test_the_real_dicom_example_lists_as_one_ct_series(tmp_path: Path):
    if not TOTALSEG_DICOM.is_dir():
        pytest.skip(f"real data not found at {TOTALSEG_DICOM} (clone the repo next to shared/ to run this)")
    root = TOTALSEG_DICOM.parent
    top = list_folder(root)
    assert Entry("example_ct_dicom", "example_ct_dicom", FOLDER) in top.entries
    assert list_folder(root, "example_ct_dicom").has_dicom
    first_file = sorted((root / "example_ct_dicom").iterdir())[0]
    header = sitk.ImageFileReader()
    header.SetFileName(str(first_file))
    header.ReadImageInformation()
    assert header.GetMetaData("0008|103e").strip() == "CT Body 3.0"
    assert dicom_series_choices(root, "example_ct_dicom") == [
        {"uid": header.GetMetaData("0020|000e").strip(), "title": "CT CT Body 3.0, 20 files"}
    ]
