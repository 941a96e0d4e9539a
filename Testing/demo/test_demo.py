"""``lunglivseg demo``: merging several models' segments, and the run end to end."""

from __future__ import annotations

import numpy as np
import pytest
from LungLiverSegLib.demo.report import label_volumes_ml
from LungLiverSegLib.demo.run import ModelRun, merge_by_name, run_demo
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.imageio.images import read_segmentation
from LungLiverSegLib.labels import LabelInfo


def test_merge_takes_each_segment_from_the_first_model_that_has_it():
    grid = Image(np.zeros((1, 2, 3), np.uint8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    lungs = grid.with_array(np.array([[[1, 1, 0], [0, 0, 0]]], np.uint8))
    liver_spleen_lungs = grid.with_array(np.array([[[0, 1, 1], [2, 3, 3]]], np.uint8))
    reference = {7: LabelInfo(7, "liver"), 3: LabelInfo(3, "lungs")}
    second = {1: LabelInfo(1, "liver"), 2: LabelInfo(2, "spleen"), 3: LabelInfo(3, "lungs")}
    labels, label_map, sources = merge_by_name(
        [(lungs, {1: LabelInfo(1, "lungs")}), (liver_spleen_lungs, second)], reference
    )
    assert labels.array.tolist() == [[[3, 3, 7], [8, 0, 0]]]  # the second model's lungs are ignored
    assert sources == {"lungs": 0, "liver": 1, "spleen": 1}
    assert {value: info.name for value, info in label_map.items()} == {3: "lungs", 7: "liver", 8: "spleen"}
    assert all(value == info.value for value, info in label_map.items())


@pytest.mark.slow
def test_demo_with_the_phantom_model_writes_everything_a_user_looks_at(tmp_path):
    result = run_demo(tmp_path, models=["phantom-ct-3d"], device="cpu")
    files = (result.ct, result.segmentation, result.overlay, result.volumes_csv)
    assert [path.name for path in files] == [
        "phantom_ct.nii.gz",
        "phantom_segmentation.seg.nrrd",
        "overlay.png",
        "volumes.csv",
    ]
    assert all(path.parent == tmp_path and path.stat().st_size > 0 for path in files)
    labels, label_map = read_segmentation(result.segmentation)
    assert set(np.unique(labels.array)) == {0, 1, 2}
    assert result.volumes_ml == pytest.approx(label_volumes_ml(labels, label_map))
    assert result.runs == (ModelRun("phantom-ct-3d", result.runs[0].version, "cpu"),)
    assert result.agreement.keys() == {"lungs", "liver"}
    assert result.agreement["lungs"].dice > 0.9 and result.agreement["liver"].dice > 0.85
    assert all(score.run == result.runs[0] and 0 <= score.nsd <= 1 for score in result.agreement.values())


@pytest.mark.slow
def test_default_demo_takes_lungs_from_the_real_ct_model(tmp_path):
    result = run_demo(tmp_path, device="cpu")
    assert [run.name for run in result.runs] == ["lungs-ct-3d", "phantom-ct-3d"]
    assert result.agreement["lungs"].run.name == "lungs-ct-3d" and result.agreement["lungs"].dice > 0.95
    assert result.agreement["liver"].run.name == "phantom-ct-3d" and result.agreement["liver"].dice > 0.85
