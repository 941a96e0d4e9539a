"""Metrics against DeepMind's reference vectors, DeepMind's own code, and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from LungLiverSegLib.evaluation import metrics
from scipy import ndimage

np.Inf = np.inf  # surface_distance 0.1 still uses the NumPy 1 aliases on empty masks
np.NaN = np.nan
surface_distance = pytest.importorskip("surface_distance")
lookup_tables = pytest.importorskip("surface_distance.lookup_tables")

ANISOTROPIC_SPACING = (3.0, 0.8, 0.7)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:surface_distance")


def random_blob(rng: np.random.Generator, shape: tuple[int, ...], threshold: float = 0.02) -> np.ndarray:
    """A few irregular connected regions: thresholded smoothed noise."""
    return ndimage.gaussian_filter(rng.standard_normal(shape), 3.0) > threshold


def reference_distances(pred: np.ndarray, gt: np.ndarray, spacing) -> dict:
    """DeepMind's surface distances (its argument order is gt, pred)."""
    return surface_distance.compute_surface_distances(gt, pred, spacing)


def assert_matches_deepmind(pred: np.ndarray, gt: np.ndarray, spacing, tolerance: float = 1e-6) -> None:
    """Every surface metric of ours equals DeepMind's on this pair."""
    ref = reference_distances(pred, gt, spacing)
    ours = metrics.surface_distances(pred, gt, spacing)
    np.testing.assert_allclose(ours.pred_to_gt, ref["distances_pred_to_gt"], atol=tolerance)
    np.testing.assert_allclose(ours.gt_to_pred, ref["distances_gt_to_pred"], atol=tolerance)
    np.testing.assert_allclose(ours.pred_areas, ref["surfel_areas_pred"], atol=tolerance)
    np.testing.assert_allclose(ours.gt_areas, ref["surfel_areas_gt"], atol=tolerance)
    ref_gt_to_pred, ref_pred_to_gt = surface_distance.compute_average_surface_distance(ref)
    average = metrics.asd(ours)
    assert average.pred_to_gt == pytest.approx(ref_pred_to_gt, abs=tolerance)
    assert average.gt_to_pred == pytest.approx(ref_gt_to_pred, abs=tolerance)
    assert metrics.hd95(ours) == pytest.approx(
        surface_distance.compute_robust_hausdorff(ref, 95), abs=tolerance
    )
    assert metrics.hd(ours) == pytest.approx(
        surface_distance.compute_robust_hausdorff(ref, 100), abs=tolerance
    )
    for tolerance_mm in (0.5, 1.0, 2.0, 5.0):
        ref_nsd = surface_distance.compute_surface_dice_at_tolerance(ref, tolerance_mm)
        assert metrics.nsd(ours, tolerance_mm) == pytest.approx(ref_nsd, abs=tolerance)
        ref_gt, ref_pred = surface_distance.compute_surface_overlap_at_tolerance(ref, tolerance_mm)
        overlap = metrics.surface_overlap(ours, tolerance_mm)
        assert overlap.gt == pytest.approx(ref_gt, abs=tolerance)
        assert overlap.pred == pytest.approx(ref_pred, abs=tolerance)


def single_voxel_pair(shape, gt_index, pred_index) -> tuple[np.ndarray, np.ndarray]:
    """(pred, gt) masks holding one voxel each."""
    pred, gt = np.zeros(shape, bool), np.zeros(shape, bool)
    pred[pred_index] = True
    gt[gt_index] = True
    return pred, gt


@pytest.mark.parametrize(
    ("shape", "gt_index", "pred_index", "spacing"),
    [
        ((128, 128), (50, 70), (50, 72), (2.0, 1.0)),
        ((128, 128, 128), (50, 60, 70), (50, 60, 72), (3.0, 2.0, 1.0)),
    ],
)
def test_deepmind_reference_single_voxels(shape, gt_index, pred_index, spacing):
    pred, gt = single_voxel_pair(shape, gt_index, pred_index)
    sd = metrics.surface_distances(pred, gt, spacing)
    assert metrics.asd(sd)[:2] == pytest.approx((1.5, 1.5), abs=1e-3)
    assert metrics.hd(sd) == pytest.approx(2.0, abs=1e-3)
    assert metrics.hd95(sd) == pytest.approx(2.0, abs=1e-3)
    assert tuple(metrics.surface_overlap(sd, 1.0)) == pytest.approx((0.5, 0.5), abs=1e-3)
    assert metrics.nsd(sd, 1.0) == pytest.approx(0.5, abs=1e-3)
    assert metrics.dice(pred, gt) == 0.0


def test_deepmind_reference_slabs():
    gt, pred = np.zeros((100, 100, 100), bool), np.zeros((100, 100, 100), bool)
    gt[0:50] = True
    pred[0:51] = True
    sd = metrics.surface_distances(pred, gt, (2.0, 1.0, 1.0))
    average = metrics.asd(sd)
    assert (average.gt_to_pred, average.pred_to_gt) == pytest.approx((0.322, 0.339), abs=1e-3)
    assert metrics.hd(sd) == pytest.approx(2.0, abs=1e-3)
    assert metrics.hd95(sd) == pytest.approx(2.0, abs=1e-3)
    overlap = metrics.surface_overlap(sd, 1.0)
    assert (overlap.gt, overlap.pred) == pytest.approx((0.842, 0.830), abs=1e-3)
    assert metrics.nsd(sd, 1.0) == pytest.approx(0.836, abs=1e-3)
    assert metrics.dice(pred, gt) == pytest.approx(0.990, abs=1e-3)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (3.0, 0.8, 0.7), (0.5, 2.5, 1.2)])
def test_surfel_area_table_equals_deepmind(spacing):
    reference = lookup_tables.create_table_neighbour_code_to_surface_area(spacing)
    np.testing.assert_allclose(metrics.surfel_area_table_3d(spacing), reference, atol=1e-12)


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (2.0, 1.0), (0.7, 1.9)])
def test_contour_length_table_equals_deepmind(spacing):
    reference = lookup_tables.create_table_neighbour_code_to_contour_length(spacing)
    np.testing.assert_allclose(metrics.contour_length_table_2d(spacing), reference, atol=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_random_anisotropic_3d_blobs_match_deepmind(seed):
    rng = np.random.default_rng(seed)
    pred, gt = random_blob(rng, (40, 40, 40)), random_blob(rng, (40, 40, 40))
    assert_matches_deepmind(pred, gt, ANISOTROPIC_SPACING)


@pytest.mark.parametrize("seed", range(5))
def test_random_anisotropic_2d_blobs_match_deepmind(seed):
    rng = np.random.default_rng(100 + seed)
    assert_matches_deepmind(random_blob(rng, (96, 80)), random_blob(rng, (96, 80)), (1.3, 0.6))


def test_overlapping_shifted_blob_matches_deepmind():
    """A realistic case: prediction = truth shifted and eroded (most surfels close together)."""
    gt = random_blob(np.random.default_rng(7), (40, 48, 44), threshold=-0.05)
    pred = ndimage.binary_erosion(np.roll(gt, 2, axis=2))
    assert_matches_deepmind(pred, gt, ANISOTROPIC_SPACING)


def test_masks_touching_the_border_match_deepmind():
    """Voxels outside the array are background: border-touching masks get a closed surface."""
    rng = np.random.default_rng(3)
    gt = random_blob(rng, (30, 36, 32), threshold=-0.1)
    pred = gt.copy()
    pred[:, :, -3:] = True
    pred[0] = True
    assert gt[0].any() and gt[-1].any()  # the test is only meaningful if the border is touched
    assert_matches_deepmind(pred, gt, ANISOTROPIC_SPACING)


@pytest.mark.parametrize("seed", range(4))
def test_crop_changes_nothing(seed):
    rng = np.random.default_rng(200 + seed)
    shape = (48, 52, 50)
    pred, gt = np.zeros(shape, bool), np.zeros(shape, bool)
    pred[10:30, 15:40, 8:26] = random_blob(rng, (20, 25, 18))
    gt[12:34, 14:38, 10:30] = random_blob(rng, (22, 24, 20))
    cropped = metrics.surface_distances(pred, gt, ANISOTROPIC_SPACING, crop=True)
    full = metrics.surface_distances(pred, gt, ANISOTROPIC_SPACING, crop=False)
    for field in ("pred_to_gt", "pred_areas", "gt_to_pred", "gt_areas"):
        np.testing.assert_array_equal(getattr(cropped, field), getattr(full, field))


def test_dice_and_jaccard_hand_computed():
    pred = np.zeros((4, 5), bool)
    gt = np.zeros((4, 5), bool)
    pred[0, 0:4] = True  # 4 voxels
    gt[0, 2:5] = True  # 3 voxels, 2 shared, union 5
    assert metrics.dice(pred, gt) == pytest.approx(2 * 2 / 7)
    assert metrics.jaccard(pred, gt) == pytest.approx(2 / 5)
    assert metrics.dice(pred, pred) == 1.0
    assert metrics.jaccard(pred, ~pred) == 0.0
    assert metrics.dice(pred.astype(np.uint8) * 2, gt.astype(np.uint8)) == pytest.approx(2 * 2 / 7)


def empty_and_blob(which_empty: str) -> tuple[np.ndarray, np.ndarray]:
    """(pred, gt) with the named side(s) empty and the other a small cube."""
    cube = np.zeros((12, 12, 12), bool)
    cube[3:8, 4:9, 2:7] = True
    empty = np.zeros_like(cube)
    return {"pred": (empty, cube), "gt": (cube, empty), "both": (empty, empty)}[which_empty]


@pytest.mark.parametrize("which_empty", ["pred", "gt"])
def test_one_empty_mask_scores_worst(which_empty):
    pred, gt = empty_and_blob(which_empty)
    result = metrics.mask_metrics(pred, gt, ANISOTROPIC_SPACING)
    assert (result["dice"], result["jaccard"], result["nsd@1mm"], result["nsd@2mm"]) == (0.0, 0.0, 0.0, 0.0)
    for key in ("asd_pred_to_gt", "asd_gt_to_pred", "asd", "hd95", "hd"):
        assert result[key] == math.inf, key
    sd = metrics.surface_distances(pred, gt, ANISOTROPIC_SPACING)
    assert tuple(metrics.surface_overlap(sd, 1.0)) == (0.0, 0.0)
    assert metrics.hd(sd) == surface_distance.compute_robust_hausdorff(
        reference_distances(pred, gt, ANISOTROPIC_SPACING), 100
    )


def test_both_empty_scores_perfect():
    pred, gt = empty_and_blob("both")
    result = metrics.mask_metrics(pred, gt, ANISOTROPIC_SPACING)
    assert (result["dice"], result["jaccard"], result["nsd@1mm"], result["nsd@2mm"]) == (1.0, 1.0, 1.0, 1.0)
    for key in ("asd_pred_to_gt", "asd_gt_to_pred", "asd", "hd95", "hd", "volume_pred_ml", "volume_gt_ml"):
        assert result[key] == 0.0, key


def test_symmetric_asd_is_pooled_area_weighted_mean():
    rng = np.random.default_rng(11)
    sd = metrics.surface_distances(
        random_blob(rng, (30, 30, 30)), random_blob(rng, (30, 30, 30)), (2.0, 1.0, 1.0)
    )
    distances = np.concatenate([sd.pred_to_gt, sd.gt_to_pred])
    areas = np.concatenate([sd.pred_areas, sd.gt_areas])
    assert metrics.asd(sd).symmetric == pytest.approx(np.average(distances, weights=areas))


def test_compute_label_metrics_per_label_with_volumes():
    pred, gt = np.zeros((10, 10, 10), np.uint8), np.zeros((10, 10, 10), np.uint8)
    gt[1:4, 1:4, 1:4] = 1
    pred[1:4, 1:4, 1:4] = 1
    gt[6:9, 6:9, 6:9] = 2  # label 2 missed entirely
    pred[0, 9, 9] = 3  # label 3 only predicted
    spacing = (2.0, 1.0, 0.5)
    result = metrics.compute_label_metrics(pred, gt, spacing, tolerances_mm=(1.5,))
    assert sorted(result) == ["label_1", "label_2", "label_3"]
    assert result["label_1"]["dice"] == 1.0 and result["label_1"]["hd"] == 0.0
    assert result["label_1"]["volume_gt_ml"] == pytest.approx(27 * 1.0 / 1000)
    assert result["label_2"]["dice"] == 0.0 and result["label_2"]["nsd@1.5mm"] == 0.0
    assert result["label_3"]["hd95"] == math.inf and result["label_3"]["volume_pred_ml"] == pytest.approx(
        0.001
    )
    named = metrics.compute_label_metrics(pred, gt, spacing, labels={1: "liver", 5: "absent"})
    assert sorted(named) == ["absent", "liver"]
    assert named["absent"]["dice"] == 1.0


def test_mean_over_cases_counts_infinite_and_keeps_them_in_median():
    summary = metrics.mean_over_cases([1.0, 3.0, math.inf])
    assert (summary.mean, summary.n_infinite, summary.n_cases) == (2.0, 1, 3)
    assert summary.std == pytest.approx(1.0)
    assert (summary.median, summary.min, summary.max) == (3.0, 1.0, math.inf)
    assert metrics.mean_over_cases([math.inf, math.inf]).mean == math.inf
    assert metrics.mean_over_cases([0.0, 1.0]).mean == 0.5  # a missed structure (Dice 0) pulls down
    with pytest.raises(ValueError):
        metrics.mean_over_cases([1.0, math.nan])
