"""``lunglivseg demo``: merging several models' segments, and the run end to end."""

from __future__ import annotations

import numpy as np
from LungLiverSegLib.demo.run import merge_by_name, run_demo
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.imageio.images import read_image
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


def test_demo_with_the_phantom_model_writes_everything_a_user_looks_at(tmp_path):
    summary = run_demo(tmp_path, models=["phantom-ct-3d"], device="cpu")
    for name in ("phantom_ct.nii.gz", "phantom_segmentation.seg.nrrd", "overlay.png", "volumes.csv"):
        assert (tmp_path / name).stat().st_size > 0, name
    labels = read_image(tmp_path / "phantom_segmentation.seg.nrrd")
    assert set(np.unique(labels.array)) == {0, 1, 2}
    dice = {line.split()[0]: float(line.split()[2]) for line in summary.splitlines() if "Dice" in line}
    assert dice["lungs"] > 0.9 and dice["liver"] > 0.85


def test_default_demo_takes_lungs_from_the_real_ct_model(tmp_path):
    summary = run_demo(tmp_path, device="cpu")
    lines = {line.split()[0]: line for line in summary.splitlines() if "Dice" in line}
    assert "from lungs-ct-3d" in lines["lungs"] and float(lines["lungs"].split()[2]) > 0.95
    assert "from phantom-ct-3d" in lines["liver"] and float(lines["liver"].split()[2]) > 0.85
