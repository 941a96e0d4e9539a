"""Export for training: dataset layout, refusals, correction metrics, crash safety, Training reads it."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from LungLiverSegLib.dataset.export import (
    DatasetExportError,
    correction_summary,
    export_case,
    read_dataset,
    sanitize_case_id,
    validate_case_id,
)
from LungLiverSegLib.demo.phantom import PHANTOM_LABELS
from LungLiverSegLib.files import is_temporary
from LungLiverSegLib.geometry import Image, same_grid
from LungLiverSegLib.imageio.images import read_image, write_image
from LungLiverSegLib.labels import LabelInfo
from LungLiverSegTraining.config import load_config
from LungLiverSegTraining.dataset_reader import label_lookup, load_case, open_dataset

LABELS = {value: PHANTOM_LABELS[value] for value in (1, 2)}  # lungs, liver
SPACING = (1.0, 1.5, 2.0)  # (i, j, k) mm
SHAPE = (8, 12, 16)  # (k, j, i)
LUNG_BOX = (slice(2, 6), slice(2, 8), slice(3, 13))  # 4 x 6 x 10 voxels, 10 along i


@pytest.fixture
def image() -> Image:
    voxels = np.random.default_rng(0).integers(-1000, 500, SHAPE).astype(np.int16)
    return Image(voxels, SPACING, (10.0, -5.0, 3.0), np.diag([-1.0, 1.0, 1.0]))


def boxes(image: Image, lung_shift_i: int = 0) -> Image:
    """Lungs: a 4x6x10 box (optionally shifted along i); liver: a fixed 2x2x2 box."""
    labels = np.zeros(SHAPE, np.uint8)
    k, j, i = LUNG_BOX
    labels[k, j, slice(i.start + lung_shift_i, i.stop + lung_shift_i)] = 1
    labels[5:7, 9:11, 1:3] = 2
    return image.with_array(labels)


def dataset_json(root: Path) -> dict:
    return json.loads((root / "dataset.json").read_text())


def case_lines(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "cases.jsonl").read_text().splitlines()]


def test_new_dataset_has_the_nnunet_layout_and_provenance(tmp_path: Path, image: Image) -> None:
    root = tmp_path / "Dataset001_Lungs"
    record = export_case(
        root,
        "case1",
        image,
        boxes(image),
        LABELS,
        proposal=boxes(image, lung_shift_i=2),
        source={"path": "/data/ct1.nrrd"},
        model={"name": "lungs-ct-3d", "version": "1.0.0"},
    )
    description = dataset_json(root)
    assert description["labels"] == {"background": 0, "lungs": 1, "liver": 2}
    assert description["channel_names"] == {"0": "CT"}
    assert (description["numTraining"], description["file_ending"]) == (1, ".nii.gz")
    own = description["lunglivseg"]
    assert own["label_map"]["2"]["name"] == "liver"
    assert own["label_map"]["1"]["terminology"]["type"] == ["SCT", "39607008", "Lung"]
    assert own["label_map"]["1"]["color"] == list(LABELS[1].color)
    assert own["created"] == own["updated"] == record.exported_at
    label = read_image(root / "labelsTr" / "case1.nii.gz")
    assert label.array.dtype == np.uint8 and np.array_equal(label.array, boxes(image).array)
    assert same_grid(label, image)
    written = read_image(root / "imagesTr" / "case1_0000.nii.gz")
    assert np.array_equal(written.array, image.array) and same_grid(written, image)
    proposal = read_image(root / "predictions" / "case1.nii.gz")
    assert np.array_equal(proposal.array, boxes(image, lung_shift_i=2).array)
    [line] = case_lines(root)
    assert line["case_id"] == "case1" and line["source"] == {"path": "/data/ct1.nrrd"}
    assert line["model"] == {"name": "lungs-ct-3d", "version": "1.0.0"}
    assert line["label_values"] == [1, 2] and line["user"]
    assert datetime.fromisoformat(line["exported_at"]).tzinfo is not None
    assert set(line["correction"]) == {"lungs", "liver"}


def test_second_case_is_added_and_read_back(tmp_path: Path, image: Image) -> None:
    export_case(tmp_path / "ds", "a", image, boxes(image), LABELS)
    export_case(tmp_path / "ds", "b", image, boxes(image, 1), LABELS)
    info = read_dataset(tmp_path / "ds")
    assert [case.case_id for case in info.cases] == ["a", "b"]
    assert {value: label.name for value, label in info.label_map.items()} == {1: "lungs", 2: "liver"}
    assert dataset_json(tmp_path / "ds")["numTraining"] == 2
    assert len(case_lines(tmp_path / "ds")) == 2


def test_existing_case_is_refused_without_overwrite_and_replaced_with_it(
    tmp_path: Path, image: Image
) -> None:
    export_case(tmp_path, "a", image, boxes(image), LABELS, proposal=boxes(image))
    with pytest.raises(DatasetExportError, match=r"'a' already exists.*overwrite"):
        export_case(tmp_path, "a", image, boxes(image, 3), LABELS)
    assert np.array_equal(read_image(tmp_path / "labelsTr" / "a.nii.gz").array, boxes(image).array)
    export_case(tmp_path, "a", image, boxes(image, 3), LABELS, overwrite=True)
    assert np.array_equal(read_image(tmp_path / "labelsTr" / "a.nii.gz").array, boxes(image, 3).array)
    assert not (tmp_path / "predictions" / "a.nii.gz").exists()  # the old proposal went with it
    [record] = read_dataset(tmp_path).cases
    assert record.correction is None
    assert dataset_json(tmp_path)["numTraining"] == 1 and len(case_lines(tmp_path)) == 1


def test_case_id_differing_only_in_letter_case_is_refused(tmp_path: Path, image: Image) -> None:
    export_case(tmp_path, "Case1", image, boxes(image), LABELS)
    with pytest.raises(DatasetExportError, match="letter case"):
        export_case(tmp_path, "case1", image, boxes(image), LABELS)


def test_mismatched_label_map_is_refused_naming_the_label(tmp_path: Path, image: Image) -> None:
    export_case(tmp_path, "a", image, boxes(image), LABELS)
    renamed = {**LABELS, 2: LabelInfo(2, "Liver")}
    with pytest.raises(DatasetExportError, match="label 2 is 'liver' in the dataset but 'Liver'"):
        export_case(tmp_path, "b", image, boxes(image), renamed)
    extra = {**LABELS, 3: PHANTOM_LABELS[3]}
    with pytest.raises(DatasetExportError, match="label 3 is not defined in the dataset but 'liver_tumour'"):
        export_case(tmp_path, "b", image, boxes(image), extra)
    assert [case.case_id for case in read_dataset(tmp_path).cases] == ["a"]


def test_labels_off_the_image_grid_are_refused(tmp_path: Path, image: Image) -> None:
    moved = Image(boxes(image).array, SPACING, (11.0, -5.0, 3.0), image.direction)
    with pytest.raises(DatasetExportError, match="approved label is not on the image's grid"):
        export_case(tmp_path / "ds", "a", image, moved, LABELS)
    cropped = image.with_array(boxes(image).array[:, :, :-1])
    with pytest.raises(DatasetExportError, match="proposal label is not on the image's grid"):
        export_case(tmp_path / "ds", "a", image, boxes(image), LABELS, proposal=cropped)
    assert not (tmp_path / "ds").exists()


def test_a_label_within_the_grid_tolerance_is_stored_on_the_image_grid(tmp_path: Path, image: Image) -> None:
    """nnU-Net compares a label's header with its image's more strictly than export does."""
    rounded = Image(boxes(image).array, SPACING, np.add(image.origin, 4e-4), image.direction)
    export_case(tmp_path, "a", image, rounded, LABELS)
    label = read_image(tmp_path / "labelsTr" / "a.nii.gz")
    assert np.array_equal(label.origin, read_image(tmp_path / "imagesTr" / "a_0000.nii.gz").origin)


def test_the_modality_names_the_nnunet_channel_and_is_kept(tmp_path: Path, image: Image) -> None:
    """nnU-Net normalises a channel named "CT" as Hounsfield units and any other name per image."""
    picture = Image(image.array[3], (0.2, 0.2), (0.0, 0.0))  # a 2D X-ray
    lungs = picture.with_array((boxes(image).array[3] == 1).astype(np.uint8))
    export_case(tmp_path / "cxr", "a", picture, lungs, LABELS, modality="CXR")
    assert dataset_json(tmp_path / "cxr")["channel_names"] == {"0": "CXR"}
    export_case(tmp_path / "cxr", "b", picture, lungs, LABELS)  # modality unknown: the dataset's stays
    with pytest.raises(
        DatasetExportError, match=re.escape("channel_names is {'0': 'CXR'} but this export's images are CT")
    ):
        export_case(tmp_path / "cxr", "c", picture, lungs, LABELS, modality="CT")
    assert [case.case_id for case in read_dataset(tmp_path / "cxr").cases] == ["a", "b"]
    export_case(tmp_path / "ct", "a", image, boxes(image), LABELS, modality="CT")
    assert dataset_json(tmp_path / "ct")["channel_names"] == {"0": "CT"}


def test_label_values_outside_the_map_are_refused(tmp_path: Path, image: Image) -> None:
    labels = boxes(image).array.copy()
    labels[0, 0, 0] = 3
    with pytest.raises(DatasetExportError, match=r"values \[3\].*1=lungs, 2=liver"):
        export_case(tmp_path, "a", image, image.with_array(labels), LABELS)


@pytest.mark.parametrize(
    ("case_id", "reason"),
    [
        ("../x", "path separator"),
        ("a/b", "path separator"),
        ("a\\b", "path separator"),
        ("a..b", r"contains '\.\.'"),
        (".hidden", "starts with a dot"),
        ("", "is empty"),
        ("x" * 101, "longer than 100"),
        ("ct 1:2", "contains ' :'"),
    ],
)
def test_bad_case_ids_are_refused_with_the_reason(
    tmp_path: Path, image: Image, case_id: str, reason: str
) -> None:
    with pytest.raises(DatasetExportError, match=reason):
        export_case(tmp_path / "ds", case_id, image, boxes(image), LABELS)
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("CT chest: 1/2", "CT_chest_1_2"), ("../x", "_x"), ("..", "case"), ("", "case"), ("a..b", "a.b")],
)
def test_sanitize_case_id_makes_valid_ids(text: str, expected: str) -> None:
    assert validate_case_id(sanitize_case_id(text)) == expected
    assert len(sanitize_case_id("y" * 300)) == 100


def test_correction_of_a_box_shifted_by_two_voxels(tmp_path: Path, image: Image) -> None:
    record = export_case(tmp_path, "a", image, boxes(image), LABELS, proposal=boxes(image, lung_shift_i=2))
    lungs, liver = record.correction["lungs"], record.correction["liver"]
    # 10-voxel box shifted by 2 along i: overlap 8 of 10 columns, Dice = 2 * 8 / (10 + 10)
    assert lungs["dice"] == pytest.approx(0.8, abs=1e-12)
    # 2 columns lost + 2 gained, each 4 x 6 voxels; a voxel is 1 x 1.5 x 2 = 3 mm^3
    assert lungs["changed_voxels"] == 2 * 2 * 4 * 6
    assert lungs["changed_ml"] == pytest.approx(96 * 3.0 / 1000.0)
    # i spacing is 1 mm: every surfel of one box lies within 2 mm of the other surface
    assert lungs["nsd@2mm"] == pytest.approx(1.0)
    assert 0.0 < lungs["hd95"] <= 2.0
    assert liver == {"dice": 1.0, "nsd@2mm": 1.0, "hd95": 0.0, "changed_voxels": 0, "changed_ml": 0.0}


def test_annotating_from_scratch_exports_without_a_proposal(tmp_path: Path, image: Image) -> None:
    image.metadata.update({"source_path": "/data/ct.nrrd", "series_uid": "1.2.3"})
    record = export_case(tmp_path, "a", image, boxes(image), LABELS)
    assert record.correction is None and record.model is None
    assert record.source == {"path": "/data/ct.nrrd", "series_uid": "1.2.3"}
    assert not (tmp_path / "predictions").exists()
    assert case_lines(tmp_path)[0]["correction"] is None
    assert "1 cases, 0 corrected from a model proposal, 1 annotated from scratch" in correction_summary(
        tmp_path
    )


def test_correction_summary_averages_over_corrected_cases(tmp_path: Path, image: Image) -> None:
    export_case(tmp_path, "a", image, boxes(image), LABELS, proposal=boxes(image, 2))  # lungs Dice 0.8
    export_case(tmp_path, "b", image, boxes(image), LABELS, proposal=boxes(image))  # lungs Dice 1
    export_case(tmp_path, "c", image, boxes(image), LABELS)
    lines = correction_summary(tmp_path).splitlines()
    assert "3 cases, 2 corrected from a model proposal, 1 annotated from scratch" in lines[0]
    assert lines[1].split()[:3] == ["segment", "cases", "mean"]
    assert lines[2].split() == ["lungs", "2", "0.900", "1.000", f"{96 * 3 / 1000 / 2:.1f}"]
    assert lines[3].split() == ["liver", "2", "1.000", "1.000", "0.0"]


def _fail_on_dataset_json(monkeypatch: pytest.MonkeyPatch) -> None:
    real_replace = os.replace

    def replace(source: str | Path, target: str | Path) -> None:
        if Path(target).name == "dataset.json":
            raise OSError("simulated crash")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)


def test_crash_before_dataset_json_leaves_the_previous_dataset(
    tmp_path: Path, image: Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    export_case(tmp_path, "a", image, boxes(image), LABELS)
    with monkeypatch.context() as patch:
        _fail_on_dataset_json(patch)
        with pytest.raises(OSError, match="simulated crash"):
            export_case(tmp_path, "b", image, boxes(image, 1), LABELS, proposal=boxes(image))
    assert (tmp_path / "labelsTr" / "b.nii.gz").exists()  # debris of the interrupted export
    assert [case.case_id for case in read_dataset(tmp_path).cases] == ["a"]
    assert dataset_json(tmp_path)["numTraining"] == 1
    assert [case.case_id for case in open_dataset(tmp_path, load_config("phantom-ct-3d")).cases] == ["a"]
    assert not [p for p in tmp_path.rglob("*") if is_temporary(p)]  # no temporary file left behind
    export_case(tmp_path, "b", image, boxes(image, 1), LABELS)  # debris replaced without overwrite
    assert [case.case_id for case in read_dataset(tmp_path).cases] == ["a", "b"]
    assert read_dataset(tmp_path).cases[1].correction is None


def test_crash_during_overwrite_unlists_the_case(
    tmp_path: Path, image: Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    export_case(tmp_path, "a", image, boxes(image), LABELS)
    export_case(tmp_path, "b", image, boxes(image), LABELS)
    real_write_image = write_image

    def crash_on_image(path: Path, written: Image, *, overwrite: bool = False) -> Path:
        if "imagesTr" in str(path):
            raise OSError("simulated crash")
        return real_write_image(path, written, overwrite=overwrite)

    monkeypatch.setattr("LungLiverSegLib.dataset.export.write_image", crash_on_image)
    with pytest.raises(OSError, match="simulated crash"):
        export_case(tmp_path, "a", image, boxes(image, 2), LABELS, overwrite=True)
    assert [case.case_id for case in read_dataset(tmp_path).cases] == ["b"]
    assert dataset_json(tmp_path)["numTraining"] == 1


def test_training_package_reads_the_exported_dataset(tmp_path: Path, image: Image) -> None:
    export_case(tmp_path, "a", image, boxes(image), PHANTOM_LABELS, proposal=boxes(image, 2))
    export_case(tmp_path, "b", image, boxes(image, 1), PHANTOM_LABELS)
    config = load_config("phantom-ct-3d")  # trains lungs and liver (+ liver_tumour) from these names
    dataset = open_dataset(tmp_path, config)
    assert [case.case_id for case in dataset.cases] == ["a", "b"]
    assert dataset.label_names == {1: "lungs", 2: "liver", 3: "liver_tumour"}
    loaded_image, loaded_labels = load_case(dataset.cases[1], label_lookup(dataset, config))
    assert np.array_equal(loaded_image.array, image.array)
    assert np.array_equal(loaded_labels.array, boxes(image, 1).array)


def test_folder_with_other_files_is_not_turned_into_a_dataset(tmp_path: Path, image: Image) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DatasetExportError, match="holds other files"):
        export_case(tmp_path, "a", image, boxes(image), LABELS)


def test_a_missed_segment_is_recorded_with_infinite_hd95(tmp_path: Path, image: Image) -> None:
    missed_liver = boxes(image).array.copy()
    missed_liver[missed_liver == 2] = 0
    export_case(tmp_path, "a", image, boxes(image), LABELS, proposal=image.with_array(missed_liver))
    liver = case_lines(tmp_path)[0]["correction"]["liver"]
    assert (liver["dice"], liver["nsd@2mm"], liver["hd95"]) == (0.0, 0.0, "inf")
    assert liver["changed_voxels"] == 8
    assert correction_summary(tmp_path).splitlines()[3].split()[:4] == ["liver", "1", "0.000", "0.000"]
