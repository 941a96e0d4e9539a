"""The evaluate engine on small label files written in tmp_path."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from LungLiverSegLib.errors import InputImageError
from LungLiverSegLib.evaluation import evaluate

np.Inf = np.inf  # surface_distance 0.1 still uses the NumPy 1 aliases on empty masks
np.NaN = np.nan
surface_distance = pytest.importorskip("surface_distance")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:surface_distance")

SPACING_IJK = (0.8, 0.7, 3.0)
SHAPE_KJI = (12, 24, 20)


def write_labels(path: Path, array: np.ndarray, spacing_ijk=SPACING_IJK, origin=(-10.0, 5.0, 30.0)) -> Path:
    """Write a label array (indexed [k, j, i]) with SimpleITK, independently of the library's writer."""
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(spacing_ijk)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))
    return path


def box_labels(lung_box: tuple[slice, ...] | None, liver_box: tuple[slice, ...] | None = None) -> np.ndarray:
    """Label map with 1 = lung and 2 = liver in the given boxes."""
    labels = np.zeros(SHAPE_KJI, np.uint8)
    if lung_box is not None:
        labels[lung_box] = 1
    if liver_box is not None:
        labels[liver_box] = 2
    return labels


TRUTH = box_labels(np.s_[2:8, 3:12, 2:9], np.s_[3:9, 14:22, 10:18])
SHIFTED = box_labels(np.s_[2:8, 4:13, 2:9], np.s_[3:10, 14:22, 11:18])


def test_evaluate_pair_uses_physical_spacing(tmp_path):
    pred_path = write_labels(tmp_path / "pred.nii.gz", SHIFTED)
    gt_path = write_labels(tmp_path / "gt.nrrd", TRUTH)
    result = evaluate.evaluate_pair(pred_path, gt_path, labels={1: "lung", 2: "liver"}, tolerances_mm=(1.0,))
    assert list(result.metrics) == ["lung", "liver"]
    spacing_kji = SPACING_IJK[::-1]
    for value, name in ((1, "lung"), (2, "liver")):
        gt_mask, pred_mask = np.equal(TRUTH, value), np.equal(SHIFTED, value)
        reference = surface_distance.compute_surface_distances(gt_mask, pred_mask, spacing_kji)
        scores = result.metrics[name]
        assert scores["dice"] == pytest.approx(surface_distance.compute_dice_coefficient(gt_mask, pred_mask))
        assert scores["hd95"] == pytest.approx(surface_distance.compute_robust_hausdorff(reference, 95))
        nsd = surface_distance.compute_surface_dice_at_tolerance(reference, 1.0)
        assert scores["nsd@1mm"] == pytest.approx(nsd)
        assert scores["volume_gt_ml"] == pytest.approx(gt_mask.sum() * np.prod(SPACING_IJK) / 1000)
    assert not result.prediction_missing


@pytest.mark.parametrize(
    ("pred_geometry", "what"),
    [
        ({"spacing_ijk": (0.8, 0.7, 2.5)}, "spacing"),
        ({"origin": (-10.0, 5.0, 33.0)}, "origin"),
    ],
)
def test_grid_mismatch_names_both_files(tmp_path, pred_geometry, what):
    pred_path = write_labels(tmp_path / "pred.nii.gz", TRUTH, **pred_geometry)
    gt_path = write_labels(tmp_path / "gt.nii.gz", TRUTH)
    with pytest.raises(InputImageError) as error:
        evaluate.evaluate_pair(pred_path, gt_path)
    message = str(error.value)
    assert "pred.nii.gz" in message and "gt.nii.gz" in message and what in message and "\n" not in message


def test_size_mismatch_is_refused(tmp_path):
    pred_path = write_labels(tmp_path / "pred.nii.gz", TRUTH[:, :, :-1])
    gt_path = write_labels(tmp_path / "gt.nii.gz", TRUTH)
    with pytest.raises(InputImageError, match="size"):
        evaluate.evaluate_pair(pred_path, gt_path)


@pytest.fixture
def case_folders(tmp_path) -> tuple[Path, Path]:
    """case_a perfect, case_b shifted and without liver, case_c missing, case_x without truth."""
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    write_labels(gt_dir / "case_a.nii.gz", TRUTH)
    write_labels(pred_dir / "case_a_0000.nii.gz", TRUTH)
    write_labels(gt_dir / "case_b.nii.gz", box_labels(np.s_[2:8, 3:12, 2:9]))
    write_labels(pred_dir / "case_b.nrrd", box_labels(np.s_[2:8, 4:13, 2:9]))
    write_labels(gt_dir / "case_c.nii.gz", TRUTH)
    write_labels(pred_dir / "case_x.nii.gz", TRUTH)
    return pred_dir, gt_dir


def test_evaluate_folders_counts_missing_cases_as_empty(case_folders):
    result = evaluate.evaluate_folders(*case_folders)
    assert [case.case for case in result.cases] == ["case_a", "case_b", "case_c"]
    assert result.missing_predictions == ["case_c"]
    assert result.extra_predictions == ["case_x"]
    case_b_lung_dice = 2 * (6 * 8 * 7) / (2 * 6 * 9 * 7)  # boxes of 6x9x7 voxels shifted by one row
    lung = result.summary["label_1"]
    assert lung["dice"].mean == pytest.approx((1.0 + case_b_lung_dice + 0.0) / 3)
    assert (lung["dice"].n_cases, lung["dice"].min) == (3, 0.0)
    assert (lung["hd95"].n_infinite, lung["hd95"].max) == (1, math.inf)
    # case_b has no liver in either map: perfect by policy, and it still counts as a case
    assert result.cases[1].metrics["label_2"]["dice"] == 1.0
    assert result.summary["label_2"]["dice"].mean == pytest.approx((1.0 + 1.0 + 0.0) / 3)


def test_outputs_name_definitions_and_keep_inf(case_folders):
    result = evaluate.evaluate_folders(*case_folders, labels={1: "lung", 2: "liver"}, tolerances_mm=(2.0,))
    table = evaluate.format_table(result)
    assert "HD95: DeepMind (max of directed 95th percentiles)" in table
    assert "case_c (missing)" in table and "case_x" in table
    document = json.loads(evaluate.to_json(result))
    missing = document["cases"][2]
    assert missing["prediction_missing"] and missing["metrics"]["lung"]["hd"] == "inf"
    assert missing["metrics"]["lung"]["nsd@2mm"] == 0.0
    assert document["summary"]["lung"]["hd95"]["n_infinite"] == 1
    rows = list(csv.DictReader(io.StringIO(evaluate.to_csv(result))))
    assert len(rows) == 3 * 2 + 2 * len(evaluate.SUMMARY_STATISTICS)
    assert float(rows[4]["hd95"]) == math.inf and rows[4]["case"] == "case_c"
    assert [row["case"] for row in rows[6:12]] == [f"summary:{s}" for s in evaluate.SUMMARY_STATISTICS]


def test_single_case_outputs(tmp_path):
    pred_path = write_labels(tmp_path / "p.nii.gz", SHIFTED)
    gt_path = write_labels(tmp_path / "g.nii.gz", TRUTH)
    result = evaluate.evaluate_pair(pred_path, gt_path)
    assert (
        json.loads(evaluate.to_json(result))["metrics"]["label_2"]["dice"]
        == result.metrics["label_2"]["dice"]
    )
    assert len(evaluate.to_csv(result).splitlines()) == 3
    assert "label_1" in evaluate.format_table(result)


def test_empty_truth_folder_is_an_error(tmp_path):
    with pytest.raises(InputImageError, match="no label files"):
        evaluate.evaluate_folders(tmp_path, tmp_path)
