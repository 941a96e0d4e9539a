"""Time our surface metrics against DeepMind's ``surface-distance`` on one CT-sized mask pair.

Run: ``python bench/bench_metrics.py``. Builds two lung-like ellipsoid pairs (truth, and a
prediction shifted by a few voxels and slightly larger) on a 150x512x512 grid with spacing
(3.0, 0.7, 0.7) mm in array order, computes the surface distances and the derived metrics with
both implementations in the same run, checks that the numbers agree and prints the best of
three times of each.
"""

from __future__ import annotations

import time

import numpy as np

np.Inf = np.inf  # surface_distance 0.1 still uses the NumPy 1 aliases
np.NaN = np.nan
import surface_distance  # noqa: E402  (needs the aliases above)
from LungLiverSegLib.evaluation import metrics  # noqa: E402

SHAPE = (150, 512, 512)
SPACING = (3.0, 0.7, 0.7)
TOLERANCE_MM = 2.0
REPEATS = 3


def two_lungs(shift_voxels: tuple[int, int, int], scale: float) -> np.ndarray:
    """Two ellipsoids left and right of the midline, roughly lung sized (mm)."""
    k, j, i = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    z = (k - 75 - shift_voxels[0]) * SPACING[0]
    y = (j - 250 - shift_voxels[1]) * SPACING[1]
    mask = np.zeros(SHAPE, bool)
    for centre_i in (160, 352):
        x = (i - centre_i - shift_voxels[2]) * SPACING[2]
        mask |= (z / (130 * scale)) ** 2 + (y / (80 * scale)) ** 2 + (x / (55 * scale)) ** 2 <= 1.0
    return mask


def ours(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Our distances and metrics."""
    sd = metrics.surface_distances(pred, gt, SPACING)
    average = metrics.asd(sd)
    return {
        "nsd": metrics.nsd(sd, TOLERANCE_MM),
        "hd95": metrics.hd95(sd),
        "hd": metrics.hd(sd),
        "asd_pred_to_gt": average.pred_to_gt,
        "asd_gt_to_pred": average.gt_to_pred,
    }


def deepmind(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """The same numbers from DeepMind's reference code."""
    sd = surface_distance.compute_surface_distances(gt, pred, SPACING)
    gt_to_pred, pred_to_gt = surface_distance.compute_average_surface_distance(sd)
    return {
        "nsd": surface_distance.compute_surface_dice_at_tolerance(sd, TOLERANCE_MM),
        "hd95": surface_distance.compute_robust_hausdorff(sd, 95),
        "hd": surface_distance.compute_robust_hausdorff(sd, 100),
        "asd_pred_to_gt": pred_to_gt,
        "asd_gt_to_pred": gt_to_pred,
    }


def best_time(function, pred: np.ndarray, gt: np.ndarray) -> tuple[dict[str, float], float]:
    """Result and the best wall time (s) of REPEATS runs: the machine is shared, the minimum is stable."""
    seconds = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = function(pred, gt)
        seconds.append(time.perf_counter() - start)
    return result, min(seconds)


def main() -> None:
    gt = two_lungs((0, 0, 0), 1.0)
    pred = two_lungs((1, 3, -2), 1.02)
    print(f"grid {SHAPE}, spacing {SPACING} mm, truth {gt.sum()} voxels, prediction {pred.sum()} voxels")
    our_numbers, our_seconds = best_time(ours, pred, gt)
    reference_numbers, reference_seconds = best_time(deepmind, pred, gt)
    for name, value in our_numbers.items():
        print(f"  {name:15s} ours {value:.6f}   surface_distance {reference_numbers[name]:.6f}")
        assert abs(value - reference_numbers[name]) < 1e-6, name
    print(
        f"ours {our_seconds:.2f} s, surface_distance {reference_seconds:.2f} s, "
        f"speed-up x{reference_seconds / our_seconds:.1f}"
    )


if __name__ == "__main__":
    main()
