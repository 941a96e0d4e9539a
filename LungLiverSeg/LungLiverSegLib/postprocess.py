"""Label clean-up the bundle asks for: largest connected component, hole filling, small debris.

Applied on the body crop at input resolution, label by label, so that one structure's clean-up
never touches another's voxels except where a filled hole claims background.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .bundle import PostprocessingSpec


def keep_largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of ``mask`` (empty stays empty)."""
    components, count = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    if count <= 1:
        return mask
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == int(sizes.argmax())


def drop_small_components(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """Remove connected components smaller than ``min_voxels`` (specks far from the organ)."""
    if min_voxels <= 1:
        return mask
    components, count = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    if count == 0:
        return mask
    sizes = np.bincount(components.ravel())
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[components]


def postprocess_labels(
    labels: np.ndarray, spacing_kji: tuple[float, ...], spec: PostprocessingSpec
) -> np.ndarray:
    """Apply the bundle's postprocessing to a ``[k, j, i]`` label array in place and return it."""
    voxel_ml = float(np.prod(spacing_kji)) / 1000.0
    min_voxels = int(np.ceil(spec.min_volume_ml / voxel_ml)) if spec.min_volume_ml > 0 else 0
    for value in np.unique(labels):
        if value == 0:
            continue
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
    return labels
