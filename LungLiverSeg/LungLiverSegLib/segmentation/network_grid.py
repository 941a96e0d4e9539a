"""Postprocessing on the network's grid when it is coarser than the input's.

A chest CT's body crop at 0.98x0.98x3 mm has 4 times the voxels of the network's 2x2x3 mm grid,
a 0.7x0.7x0.5 mm one 49 times: labelling components and holes at input resolution was most of
the time spent around the network. So the clean-up decides on the network's grid, on the argmax
of its scores, and records each decision in the scores themselves (a dropped voxel becomes
certain background, a filled one certain label); the way back to the input grid then interpolates
the edited scores as before. Where the network's grid is the finer one (a 2D model's 256x256
slices of a small image), the clean-up stays on the input grid.

The result is the input-resolution clean-up's up to where the two grids disagree about a
boundary voxel: components and holes that the coarser grid joins or splits differently, a size
just at the limit. ``Testing/segmentation/test_network_grid.py`` compares the two paths.
"""

from __future__ import annotations

import numpy as np
import torch

from LungLiverSegLib.bundle.spec import PostprocessingSpec
from LungLiverSegLib.segmentation.postprocess import postprocess_labels
from LungLiverSegLib.segmentation.preprocess import labels_from_scores


def coarser(scores: torch.Tensor, input_shape: tuple[int, ...]) -> bool:
    """Whether the network's grid (``scores``' spatial shape) has fewer voxels than the input's."""
    return int(np.prod(scores.shape[1:])) < int(np.prod(input_shape))


def postprocess_scores(
    scores: torch.Tensor,
    input_spacing_kji: tuple[float, ...],
    spec: PostprocessingSpec,
    intensities: np.ndarray,
) -> None:
    """Apply the bundle's postprocessing to the argmax of ``class_scores`` ``[C - 1, k, j, i]`` on
    the network's grid and write its decisions into ``scores`` (in place).

    ``intensities`` is the image on the input grid (the body crop) and ``input_spacing_kji`` its
    spacing; the density check measures input voxels (``sample_nearest``), not the network's
    smoothed ones, so that gas keeps its share of voxels darker than pure air's limit.
    """
    labels = labels_from_scores(scores.permute(1, 0, 2, 3)).numpy()
    network_spacing = np.asarray(input_spacing_kji) * np.asarray(intensities.shape) / np.asarray(labels.shape)
    sampled = sample_nearest(intensities, labels.shape) if spec.density_check is not None else None
    before = labels.copy()
    postprocess_labels(labels, tuple(network_spacing), spec, sampled)
    settle(scores, before, labels)


def sample_nearest(array: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """``array`` ``[k, j, i]`` at the centres of a grid of ``shape`` over the same field of view:
    each voxel of that grid takes the value of the input voxel its centre lies in
    (``F.interpolate``'s ``nearest-exact``). Values stay values of the input, unlike an
    interpolation's. Slices first, then one in-plane gather (2x faster than ``np.ix_``)."""
    k, j, i = (
        np.minimum(((np.arange(size) + 0.5) * source / size).astype(np.intp), source - 1)
        for size, source in zip(shape, array.shape, strict=True)
    )
    slices = array if len(k) == array.shape[0] else array[k]
    return slices[:, j[:, None], i]


def settle(scores: torch.Tensor, before: np.ndarray, after: np.ndarray) -> None:
    """Make ``scores`` certain where the clean-up changed a label from ``before`` to ``after``:
    -1 for every class (certain background) or 1 for the new label and 0 for the others, the
    scores of probability 1 for one class."""
    changed = before != after
    if not changed.any():
        return
    values = after[changed]
    edited = np.where(values == 0, -1.0, 0.0).astype(np.float32)
    channels = scores.numpy()  # a view: edits go into ``scores``
    for channel in range(channels.shape[0]):
        channels[channel][changed] = np.where(values == channel + 1, 1.0, edited)
