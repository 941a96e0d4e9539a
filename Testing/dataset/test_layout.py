"""The nnU-Net / MSD layout: case names, dataset.json written and read back, both label styles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from LungLiverSegLib.dataset import layout
from LungLiverSegLib.errors import LungLiverSegError


def test_case_id_strips_the_image_suffix_and_nnunet_channel_0():
    names = ["a.seg.nrrd", "b_0000.nii.gz", "c.nii", "d.NRRD", "e.mha", "f_0001.nii.gz", "g_0000.png"]
    assert [layout.case_id(Path(n)) for n in names] == ["a", "b", "c", "d", "e", "f_0001", "g"]


def test_dataset_json_has_the_nnunet_v2_fields_and_the_msd_training_list(tmp_path):
    description = layout.dataset_json(
        name="Lungs",
        description="two cases",
        modality="CXR",
        labels={2: "left lung", 1: "right lung"},
        case_ids=["p1", "p2"],
        licence="CC BY 4.0",
    )
    layout.write_dataset_json(tmp_path, description)
    written = json.loads((tmp_path / "dataset.json").read_text())
    assert written == layout.read_dataset_json(tmp_path, LungLiverSegError)
    assert written["channel_names"] == {"0": "CXR"}
    assert written["labels"] == {"background": 0, "right lung": 1, "left lung": 2}
    assert (written["numTraining"], written["file_ending"], written["licence"]) == (2, ".nii.gz", "CC BY 4.0")
    assert written["training"][1] == {"image": "./imagesTr/p2_0000.nii.gz", "label": "./labelsTr/p2.nii.gz"}
    assert [case for case, _, _ in layout.listed_cases(tmp_path, written, LungLiverSegError)] == ["p1", "p2"]
    _, image, label = layout.listed_cases(tmp_path, written, LungLiverSegError)[0]
    assert (image, label) == (layout.image_path(tmp_path, "p1"), layout.label_path(tmp_path, "p1"))


def test_only_ct_gets_nnunets_ct_normalisation():
    """nnU-Net maps the channel name, case-folded, to a normalisation; only "ct" is Hounsfield units."""
    assert layout.channel_names("CT") == {"0": "CT"}
    assert all(layout.channel_names(modality)["0"].casefold() != "ct" for modality in ("CXR", "MR"))


@pytest.mark.parametrize(
    "labels", [{"background": 0, "liver": 1, "tumour": 2}, {"0": "background", "1": "liver", "2": "tumour"}]
)
def test_label_names_reads_nnunet_and_msd_styles(labels):
    assert layout.label_names({"labels": labels}, Path("d.json"), LungLiverSegError) == {
        1: "liver",
        2: "tumour",
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "dataset.json: cannot read dataset.json"),
        ("[1, 2]", "dataset.json: expected a JSON object"),
    ],
)
def test_an_unreadable_dataset_json_raises_the_callers_error_naming_it(tmp_path, content, message):
    class CallersError(LungLiverSegError):
        pass

    (tmp_path / "dataset.json").write_text(content)
    with pytest.raises(CallersError, match=message):
        layout.read_dataset_json(tmp_path, CallersError)


def test_found_cases_pairs_images_with_labels_and_refuses_a_second_channel(tmp_path):
    for name in ("imagesTr/a_0000.nii.gz", "imagesTr/b.nrrd", "imagesTr/notes.txt", "labelsTr/a.nii.gz"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = layout.found_cases(tmp_path, LungLiverSegError)
    assert found == [
        ("a", tmp_path / "imagesTr/a_0000.nii.gz", tmp_path / "labelsTr/a.nii.gz"),
        ("b", tmp_path / "imagesTr/b.nrrd", tmp_path / "labelsTr/b.nrrd"),
    ]
    (tmp_path / "imagesTr/a_0001.nii.gz").write_bytes(b"")
    with pytest.raises(LungLiverSegError, match=r"a_0001.nii.gz: only single-channel .* \(channel 0001\)"):
        layout.found_cases(tmp_path, LungLiverSegError)
