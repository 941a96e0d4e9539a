"""Label clean-up the bundle asks for: a density check of aerated organs, largest connected
component, hole filling, small debris.

Applied on the body crop at input resolution, label by label, so that one structure's clean-up
never touches another's voxels except where a filled hole claims background.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from LungLiverSegLib.bundle.spec import DensityCheckSpec, PostprocessingSpec
from LungLiverSegLib.geometry import bounding_box


def _components(mask: np.ndarray, connectivity: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Connected-component labels of ``mask`` and each component's size (index 0: background)."""
    structure = ndimage.generate_binary_structure(mask.ndim, connectivity or mask.ndim)
    components, count = ndimage.label(mask, structure=structure)
    return components, np.bincount(components.ravel(), minlength=count + 1)


def keep_largest_component(mask: np.ndarray, connectivity: int | None = None) -> np.ndarray:
    """The largest connected component of ``mask`` (empty stays empty).

    ``connectivity`` is scipy's: 1 joins voxels that share a face, ``mask.ndim`` (the default, 26
    neighbours in 3D) also those that share only an edge or a corner.
    """
    components, sizes = _components(mask, connectivity)
    if len(sizes) <= 2:
        return mask
    sizes[0] = 0
    return components == int(sizes.argmax())


def drop_small_components(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """Remove connected components (26-connected) smaller than ``min_voxels`` (specks far from the organ)."""
    if min_voxels <= 1:
        return mask
    components, sizes = _components(mask, None)
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[components]


def density_check(
    labels: np.ndarray, intensities: np.ndarray, voxel_ml: float, check: DensityCheckSpec
) -> np.ndarray:
    """Drop small components of aerated-organ labels that do not look aerated (in place).

    A network that sees one window at a time can take gas in the bowel or stomach, or a patch of
    soft tissue, for a piece of lung. Lung tissue is air with vessels and walls: its mean is far
    below soft tissue, and only a minority of it is as dark as pure gas (even in emphysema, about
    20% below -950 HU in the COPDGene case we have, against 40-50% in bowel gas). Components of
    ``check.below_ml`` or more are always kept, so a whole lung is never removed by this rule.
    """
    min_voxels = check.below_ml / voxel_ml
    for value in check.labels:
        mask = labels == value
        if not mask.any():
            continue
        box = bounding_box(mask, (0,) * labels.ndim)
        components, sizes = _components(mask[box], None)
        flat, inside = components.ravel(), intensities[box].ravel()
        per_voxel = 1.0 / np.maximum(sizes, 1)
        means = np.bincount(flat, inside, len(sizes)) * per_voxel
        air = np.bincount(flat, inside < check.air_below, len(sizes)) * per_voxel
        drop = (sizes < min_voxels) & ((means > check.max_mean) | (air > check.max_air_fraction))
        drop[0] = False
        if drop.any():
            labels[box][drop[components]] = 0
    return labels


def postprocess_labels(
    labels: np.ndarray,
    spacing_kji: tuple[float, ...],
    spec: PostprocessingSpec,
    intensities: np.ndarray | None = None,
) -> np.ndarray:
    """Apply the bundle's postprocessing to a ``[k, j, i]`` label array in place and return it.

    ``intensities`` (the image on the same grid) is needed by the density check and ignored
    otherwise. Each label is cleaned inside its own bounding box (plus one voxel, so that hole
    filling sees the outside): an organ is a small part of a body crop, and the 3D morphology is
    the cost.
    """
    voxel_ml = float(np.prod(spacing_kji)) / 1000.0
    if spec.density_check is not None and intensities is not None:
        density_check(labels, intensities, voxel_ml, spec.density_check)
    min_voxels = int(np.ceil(spec.min_volume_ml / voxel_ml)) if spec.min_volume_ml > 0 else 0
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=1))
    for value in present[present > 0]:
        if value not in spec.largest_component and value not in spec.fill_holes and not min_voxels:
            continue
        box = bounding_box(labels == value, (1,) * labels.ndim)
        _clean_label(labels[box], int(value), spec, min_voxels)
    return labels


def _clean_label(labels: np.ndarray, value: int, spec: PostprocessingSpec, min_voxels: int) -> None:
    """Clean one label inside a view of the label array (modified in place)."""
    mask = labels == value
    cleaned = mask
    if value in spec.largest_component:
        cleaned = keep_largest_component(cleaned)
    elif min_voxels:
        cleaned = drop_small_components(cleaned, min_voxels)
    if value in spec.fill_holes:
        cleaned = ndimage.binary_fill_holes(cleaned)
        cleaned &= (labels == 0) | mask  # a filled hole never steals another structure
    labels[mask & ~cleaned] = 0
    labels[cleaned & ~mask] = value
