"""Segmentation metrics with one documented definition each (see docs/METRICS.md).

Surface metrics follow DeepMind's ``surface-distance`` definition (the Medical Segmentation
Decathlon reference): the surface is made of *surfels* placed on the grid of voxel corners
(shifted by half a voxel), each surfel weighted by its area in mm^2 (its length in mm in 2D)
taken from a lookup table indexed by the 2x2(x2) neighbourhood code; distances are Euclidean
distance transforms that honour the voxel spacing. This is our own implementation of that
algorithm (numpy/scipy only); the ``surface-distance`` package is used by the tests as an oracle.

Empty masks follow one policy everywhere, so that a missed structure never improves an average:

* prediction empty, truth not (or the reverse): Dice 0, Jaccard 0, NSD 0, every distance inf;
* both empty: Dice 1, Jaccard 1, NSD 1, every distance 0 (nothing to find, nothing found).

All arrays are in array order (``[k, j, i]``) and ``spacing`` is given in that same order, in mm.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from LungLiverSegLib.geometry import bounding_box
from LungLiverSegLib.labels import default_label_name

NSD_TOLERANCE_MM = 2.0
"""The one NSD tolerance where a single NSD is reported (training validation, the correction
record of an export), so that the two can be compared."""

# Absolute surfel normals of DeepMind's 3D marching-cubes table, in eighths of a voxel, for the
# neighbourhood codes 0..127 (code c and 255 - c have the same surfels; only the magnitudes
# matter for the area). Entries are separated by spaces, the normals of one entry by commas.
# Derived from deepmind/surface-distance lookup_tables.py (Apache-2.0, Copyright 2018 Google).
_NORMALS_IN_EIGHTHS_3D = (
    "000 111 111 220,220 111 202,202 111,111 111,222,400 111 111,111 202,202 111,222,400 220,220 "
    "111,222,400 111,222,400 400,400 111 022,022 111,111 040,111,222 111,111 004,111,222 111,111,111 "
    "111,111,222,222 111,111 022,022,111 111,202,202 022,111,202,333 111,220,220 022,111,220,333 "
    "111,111,222,400 111,222,400 111 111,111 022,022 040,111,222 111,111 111,202,202 022,022,111 "
    "022,111,202,333 111,111 111,111,111 004,111,222 111,111,222,222 111,220,220 111,111,222,400 "
    "022,111,220,333 111,222,400 220,220 040,111,222 040,111,222 040,040 111,220,220 111,202,220,333 "
    "040,111,111,222 040,111,222 111,220,220 040,111,111,222 111,202,220,333 040,111,222 "
    "220,220,220,220 111,220,220 111,220,220 220,220 111 111,111 111,111 111,220,220 022,022 "
    "004,111,222 022,022,111 022,111,220,333 111,111 111,111,111 111,202,202 111,111,222,400 "
    "040,111,222 111,111,222,222 022,111,202,333 111,222,400 202,202 004,111,222 111,202,202 "
    "111,202,220,333 004,111,222 004,004 004,111,111,222 004,111,222 111,202,202 004,111,111,222 "
    "202,202,202,202 111,202,202 111,202,220,333 004,111,222 111,202,202 202,202 111,111 111,111,111 "
    "022,022,111 040,111,111,222 022,022,111 004,111,111,222 022,022,022,022 022,022,111 111,111,111 "
    "111,111,111,111 004,111,111,222 111,111,111 040,111,111,222 111,111,111 022,022,111 111,111 "
    "111,222,400 111,111,222,222 022,111,202,333 040,111,222 022,111,220,333 004,111,222 022,022,111 "
    "022,022 111,111,222,400 111,111,111 111,202,202 111,111 111,220,220 111,111 111,111 111 "
)


@lru_cache(maxsize=32)
def surfel_area_table_3d(spacing: tuple[float, float, float]) -> np.ndarray:
    """Area (mm^2) of the surfels of each of the 256 neighbourhood codes for this spacing.

    A triangle's area vector scales with the cofactors of the spacing: component ``n`` is
    multiplied by the product of the two *other* spacings.
    """
    cofactors = np.array([spacing[1] * spacing[2], spacing[0] * spacing[2], spacing[0] * spacing[1]])
    half_table = np.zeros(128)
    for code, entry in enumerate(_NORMALS_IN_EIGHTHS_3D.split()):
        normals = np.array([[int(digit) / 8 for digit in normal] for normal in entry.split(",")])
        half_table[code] = np.linalg.norm(normals * cofactors, axis=1).sum()
    return np.concatenate([half_table, half_table[::-1]])


@lru_cache(maxsize=32)
def contour_length_table_2d(spacing: tuple[float, float]) -> np.ndarray:
    """Contour length (mm) of each of the 16 neighbourhood codes of a 2x2 pixel block.

    Bits 3..0 are the top-left, top-right, bottom-left, bottom-right pixels. One (or three)
    pixels inside cut a corner: half a diagonal; two side by side: a straight segment across
    the block; two diagonal pixels: two corner cuts.
    """
    half_diagonal = 0.5 * math.hypot(*spacing)
    table = np.zeros(16)
    for code in range(1, 15):
        inside = [(code >> (3 - bit)) & 1 for bit in range(4)]
        if sum(inside) != 2:
            table[code] = half_diagonal
        elif inside[0] == inside[1]:  # same row: the contour runs along axis 1
            table[code] = spacing[1]
        elif inside[0] == inside[2]:  # same column: the contour runs along axis 0
            table[code] = spacing[0]
        else:
            table[code] = 2 * half_diagonal
    return table


@dataclass(frozen=True)
class SurfaceDistances:
    """Directed surface distances (mm) with the surfel areas, each direction sorted by distance.

    ``pred_to_gt[n]`` is the distance from the n-th predicted surfel (area ``pred_areas[n]``)
    to the nearest ground-truth surfel; an empty opposite surface makes every distance inf.
    """

    pred_to_gt: np.ndarray
    pred_areas: np.ndarray
    gt_to_pred: np.ndarray
    gt_areas: np.ndarray


class SurfaceOverlap(NamedTuple):
    """Area fraction of each surface lying within the tolerance of the other surface."""

    pred: float
    gt: float


class AverageSurfaceDistance(NamedTuple):
    """Directed area-weighted means (mm) and their symmetric combination.

    ``symmetric`` pools the surfels of both surfaces: sum(d * area) over both / total area.
    """

    pred_to_gt: float
    gt_to_pred: float
    symmetric: float


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice = 2|P & G| / (|P| + |G|); 1 when both masks are empty (policy). Non-zero = inside."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    total = int(np.count_nonzero(pred)) + int(np.count_nonzero(gt))
    return 1.0 if total == 0 else 2.0 * np.count_nonzero(pred & gt) / total


def jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    """Jaccard = |P & G| / |P | G|; 1 when both masks are empty (policy). Non-zero = inside."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    union = int(np.count_nonzero(pred | gt))
    return 1.0 if union == 0 else np.count_nonzero(pred & gt) / union


def _neighbourhood_codes(mask: np.ndarray) -> np.ndarray:
    """Code of every voxel corner: one bit per voxel of its 2x2(x2) neighbourhood.

    Corner ``c`` lies between voxels ``c - 1`` and ``c`` on every axis (shape ``mask.shape + 1``);
    voxels outside the array count as background, so masks touching the border get a closed
    surface. Bit order is DeepMind's: the voxel at offset (0,..,0) is the highest bit.
    """
    padded = np.pad(mask.astype(np.uint8), 1)
    codes = np.zeros(tuple(n + 1 for n in mask.shape), np.uint8)
    highest_bit = 2**mask.ndim - 1
    for position, offset in enumerate(itertools.product((0, 1), repeat=mask.ndim)):
        window = tuple(slice(o, o + n + 1) for o, n in zip(offset, mask.shape, strict=True))
        codes |= padded[window] << (highest_bit - position)
    return codes


def _surfels(mask: np.ndarray, area_table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean map of the corners that carry a surfel, and the area of each surfel."""
    codes = _neighbourhood_codes(mask)
    is_surfel = (codes != 0) & (codes != len(area_table) - 1)
    return is_surfel, area_table[codes[is_surfel]]


def _distances_to(is_surfel: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distance (mm) from every corner to the nearest surfel; inf everywhere without surfels."""
    if not is_surfel.any():
        return np.full(is_surfel.shape, np.inf)
    return ndimage.distance_transform_edt(~is_surfel, sampling=spacing)


def _sorted_by_distance(distances: np.ndarray, areas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort by (distance, area), DeepMind's order, so that percentiles pick the same surfel."""
    order = np.lexsort((areas, distances))
    return distances[order], areas[order]


def surface_distances(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float], crop: bool = True
) -> SurfaceDistances:
    """Directed surfel distances between two boolean masks (2D or 3D, spacing in array order).

    ``crop`` only exists to let the tests prove that cropping changes nothing. Why it does not:
    a corner carries a surfel only if its 2^d neighbourhood holds a foreground voxel, so every
    surfel of either mask lies within half a voxel of the union bounding box; the corner grid of
    the cropped box (which ``_neighbourhood_codes`` extends by that half voxel on every side)
    therefore holds all surfels, with the same codes because every voxel outside the box is
    background in both masks, just like the padding. The exact Euclidean distance transform
    gives, at each corner, the distance to the nearest surfel of the *array*, and that set of
    surfels is the same with or without the crop, so every distance is identical. No further
    margin is needed, whatever the tolerance.
    """
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape or len(spacing) != pred.ndim or pred.ndim not in (2, 3):
        raise ValueError(
            f"need two 2D or 3D masks of one shape with spacing per axis, got "
            f"{pred.shape}, {gt.shape}, spacing {tuple(spacing)}"
        )
    spacing = tuple(float(s) for s in spacing)
    union = pred | gt
    if not union.any():
        empty = np.zeros(0)
        return SurfaceDistances(empty, empty, empty, empty)
    box = bounding_box(union, (0,) * union.ndim) if crop else tuple(slice(None) for _ in spacing)
    area_table = surfel_area_table_3d(spacing) if pred.ndim == 3 else contour_length_table_2d(spacing)
    pred_surfels, pred_areas = _surfels(pred[box], area_table)
    gt_surfels, gt_areas = _surfels(gt[box], area_table)
    with ThreadPoolExecutor(max_workers=2) as pool:  # scipy's EDT releases the GIL: ~2x faster
        to_gt, to_pred = pool.map(partial(_distances_to, spacing=spacing), (gt_surfels, pred_surfels))
    pred_to_gt, gt_to_pred = to_gt[pred_surfels], to_pred[gt_surfels]
    return SurfaceDistances(
        *_sorted_by_distance(pred_to_gt, pred_areas), *_sorted_by_distance(gt_to_pred, gt_areas)
    )


def _empty_surface_value(sd: SurfaceDistances, both_empty: float, one_empty: float) -> float | None:
    """The policy value when a surface is missing, None when both surfaces exist."""
    pred_empty, gt_empty = sd.pred_areas.size == 0, sd.gt_areas.size == 0
    if pred_empty and gt_empty:
        return both_empty
    if pred_empty or gt_empty:
        return one_empty
    return None


def surface_overlap(sd: SurfaceDistances, tolerance_mm: float) -> SurfaceOverlap:
    """Area fraction of each surface within ``tolerance_mm`` of the other (DeepMind's overlap)."""
    policy = _empty_surface_value(sd, both_empty=1.0, one_empty=0.0)
    if policy is not None:
        return SurfaceOverlap(policy, policy)
    return SurfaceOverlap(
        float(sd.pred_areas[sd.pred_to_gt <= tolerance_mm].sum() / sd.pred_areas.sum()),
        float(sd.gt_areas[sd.gt_to_pred <= tolerance_mm].sum() / sd.gt_areas.sum()),
    )


def nsd(sd: SurfaceDistances, tolerance_mm: float) -> float:
    """Normalised surface Dice: area of both surfaces within tolerance / total area of both."""
    policy = _empty_surface_value(sd, both_empty=1.0, one_empty=0.0)
    if policy is not None:
        return policy
    within = (
        sd.pred_areas[sd.pred_to_gt <= tolerance_mm].sum() + sd.gt_areas[sd.gt_to_pred <= tolerance_mm].sum()
    )
    return float(within / (sd.pred_areas.sum() + sd.gt_areas.sum()))


def asd(sd: SurfaceDistances) -> AverageSurfaceDistance:
    """Average surface distance: both directed area-weighted means and their pooled mean."""
    policy = _empty_surface_value(sd, both_empty=0.0, one_empty=math.inf)
    if policy is not None:
        return AverageSurfaceDistance(policy, policy, policy)
    pred_sum, gt_sum = (sd.pred_to_gt * sd.pred_areas).sum(), (sd.gt_to_pred * sd.gt_areas).sum()
    return AverageSurfaceDistance(
        float(pred_sum / sd.pred_areas.sum()),
        float(gt_sum / sd.gt_areas.sum()),
        float((pred_sum + gt_sum) / (sd.pred_areas.sum() + sd.gt_areas.sum())),
    )


def _directed_percentile(distances: np.ndarray, areas: np.ndarray, percent: float) -> float:
    """Smallest sorted distance whose cumulative area fraction reaches ``percent`` (DeepMind)."""
    cumulative = np.cumsum(areas) / np.sum(areas)
    index = int(np.searchsorted(cumulative, percent / 100.0))
    return float(distances[min(index, len(distances) - 1)])


def hd95(sd: SurfaceDistances) -> float:
    """DeepMind's robust Hausdorff: max of the two area-weighted directed 95th percentiles."""
    policy = _empty_surface_value(sd, both_empty=0.0, one_empty=math.inf)
    if policy is not None:
        return policy
    return max(
        _directed_percentile(sd.pred_to_gt, sd.pred_areas, 95.0),
        _directed_percentile(sd.gt_to_pred, sd.gt_areas, 95.0),
    )


def hd(sd: SurfaceDistances) -> float:
    """Hausdorff distance: the largest surfel distance in either direction."""
    policy = _empty_surface_value(sd, both_empty=0.0, one_empty=math.inf)
    if policy is not None:
        return policy
    return float(max(sd.pred_to_gt[-1], sd.gt_to_pred[-1]))


def nsd_key(tolerance_mm: float) -> str:
    """Name of the NSD entry for one tolerance, e.g. ``nsd@1mm`` or ``nsd@1.5mm``."""
    return f"nsd@{tolerance_mm:g}mm"


NSD_KEY = nsd_key(NSD_TOLERANCE_MM)
"""``nsd@2mm``: the key of the one reported NSD, in training histories, model.json validation
sections and export's correction records."""


def mask_metrics(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float], tolerances_mm: Sequence[float] = (1.0, 2.0)
) -> dict[str, float]:
    """Every metric of one structure given as two boolean masks (see ``compute_label_metrics``)."""
    sd = surface_distances(pred, gt, spacing)
    average = asd(sd)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    return {
        "dice": dice(pred, gt),
        "jaccard": jaccard(pred, gt),
        **{nsd_key(t): nsd(sd, t) for t in tolerances_mm},
        "asd_pred_to_gt": average.pred_to_gt,
        "asd_gt_to_pred": average.gt_to_pred,
        "asd": average.symmetric,
        "hd95": hd95(sd),
        "hd": hd(sd),
        "volume_pred_ml": np.count_nonzero(pred) * voxel_ml,
        "volume_gt_ml": np.count_nonzero(gt) * voxel_ml,
    }


def absent_label_metrics(tolerances_mm: Sequence[float] = (1.0, 2.0)) -> dict[str, float]:
    """Policy values for a label absent from both maps (Dice 1, NSD 1, distances 0, volumes 0)."""
    nothing = np.zeros((1, 1), bool)
    return mask_metrics(nothing, nothing, (1.0, 1.0), tolerances_mm)


def compute_label_metrics(
    pred_labels: np.ndarray,
    gt_labels: np.ndarray,
    spacing: Sequence[float],
    labels: dict[int, str] | None = None,
    tolerances_mm: Sequence[float] = (1.0, 2.0),
) -> dict[str, dict[str, float]]:
    """Metrics per label name for two label maps on one grid (spacing in array order, mm).

    ``labels`` maps label value -> name; by default every non-zero value present in either map,
    named ``label_<value>``. Keys per label: dice, jaccard, nsd@<t>mm, asd_pred_to_gt,
    asd_gt_to_pred, asd, hd95, hd, volume_pred_ml, volume_gt_ml.
    """
    if labels is None:
        present = np.union1d(np.unique(pred_labels), np.unique(gt_labels))
        labels = {int(v): default_label_name(int(v)) for v in present if v != 0}
    return {
        name: mask_metrics(pred_labels == value, gt_labels == value, spacing, tolerances_mm)
        for value, name in labels.items()
    }


@dataclass(frozen=True)
class Aggregate:
    """Summary of one metric over cases; inf values are counted, never dropped silently.

    ``mean`` and ``std`` (population, ddof=0) are over the finite values (inf when there are
    none); ``median``, ``min`` and ``max`` are over all values, inf included.
    """

    mean: float
    std: float
    median: float
    min: float
    max: float
    n_cases: int
    n_infinite: int


def mean_over_cases(values: Iterable[float]) -> Aggregate:
    """Aggregate one metric over cases (NaN is refused: the empty-mask policy defines all cases)."""
    array = np.asarray(list(values), dtype=float)
    if array.size == 0 or np.isnan(array).any():
        raise ValueError(f"cannot aggregate {array.size} values containing NaN or none at all")
    finite = array[np.isfinite(array)]
    return Aggregate(
        mean=float(finite.mean()) if finite.size else math.inf,
        std=float(finite.std()) if finite.size else math.inf,
        median=float(np.median(array)),
        min=float(array.min()),
        max=float(array.max()),
        n_cases=int(array.size),
        n_infinite=int(array.size - finite.size),
    )
