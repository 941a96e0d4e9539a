# Copyright (c) MONAI Consortium
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
#
# Derived from MONAI 1.6 (monai/inferers/utils.py sliding_window_inference and _get_scan_interval,
# monai/data/utils.py dense_patch_slices and compute_importance_map), reduced to the options
# LungLiverSeg uses by the LungLiverSeg contributors.
"""MONAI's ``sliding_window_inference`` with Gaussian blending, in plain torch.

Inference imports no MONAI (``bundle.unets`` says why: importing it costs about 1.4 s). This is the
part of ``monai.inferers.sliding_window_inference`` that ``segment.predict`` uses: ``mode="gaussian"``
with MONAI's default ``sigma_scale=0.125``, zero padding of inputs smaller than the window, one
window grid for all images of the batch, windows visited in MONAI's order and blended with MONAI's
arithmetic, so the result is MONAI's bit for bit (``Testing/segmentation/test_sliding_window.py``
compares the two on random 2D and 3D volumes, and ``window_starts`` with MONAI's grid).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

SIGMA_SCALE = 0.125
"""Standard deviation of the Gaussian weights, as a fraction of the window (MONAI's default)."""


def window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Where windows start along one axis: every ``int(window * (1 - overlap))`` voxels (at least
    one), the last one moved back to end at the edge; one window when the axis is not longer than it
    (MONAI's ``_get_scan_interval`` and ``dense_patch_slices``)."""
    if size <= window:
        return [0]
    step = max(int(window * (1 - overlap)), 1)
    count = math.ceil((size - window) / step) + 1
    return [min(index * step, size - window) for index in range(count)]


def window_count(shape: Sequence[int], roi: Sequence[int], overlap: float) -> int:
    """How many windows cover one image of spatial ``shape`` (for progress and ETA)."""
    return math.prod(len(window_starts(n, w, overlap)) for n, w in zip(shape, roi, strict=True))


def gaussian_weights(roi: Sequence[int], device: torch.device | str) -> torch.Tensor:
    """MONAI's Gaussian importance map: 1 in the centre, at least 1e-3 at the corners."""
    weights = torch.empty(0)
    for axis, size in enumerate(roi):
        x = torch.arange(start=-(size - 1) / 2.0, end=(size - 1) / 2.0 + 1, dtype=torch.float, device=device)
        x = torch.exp(x**2 / (-2 * (size * SIGMA_SCALE) ** 2))
        weights = weights.unsqueeze(-1) * x[(None,) * axis] if axis > 0 else x
    return weights.clamp(min=max(weights.min().item(), 1e-3))


def sliding_window_inference(  # noqa: PLR0913 (MONAI's arguments)
    inputs: torch.Tensor,
    roi: Sequence[int],
    batch_size: int,
    predictor: Callable[[torch.Tensor], torch.Tensor],
    overlap: float,
    *,
    sw_device: torch.device,
    device: torch.device,
) -> torch.Tensor:
    """``predictor`` on windows of ``roi`` over ``inputs`` ``[B, C, *spatial]``, blended with
    Gaussian weights; ``batch_size`` windows per call, run on ``sw_device``, summed on ``device``.

    The predictor must keep the window's spatial size (a segmentation network does). Windows of
    all images are visited image by image, ``batch_size`` at a time, across image boundaries.
    """
    spatial = tuple(inputs.shape[2:])
    padding = _padding(spatial, roi)
    if any(padding):
        inputs = F.pad(inputs, padding)
    padded = tuple(inputs.shape[2:])
    starts = [window_starts(n, w, overlap) for n, w in zip(padded, roi, strict=True)]
    grid = [
        tuple(slice(s, s + w) for s, w in zip(corner, roi, strict=True))
        for corner in itertools.product(*starts)
    ]
    places = [(image, box) for image in range(inputs.shape[0]) for box in grid]
    weights = gaussian_weights(roi, sw_device)[None, None]
    output = count = torch.empty(0)
    for first in range(0, len(places), batch_size):
        batch = places[first : first + batch_size]
        windows = torch.cat([inputs[(slice(b, b + 1), slice(None), *box)] for b, box in batch])
        scores = predictor(windows.to(sw_device))
        if first == 0:
            output = torch.zeros(
                (inputs.shape[0], scores.shape[1], *padded), dtype=inputs.dtype, device=device
            )
            count = torch.zeros((1, 1, *padded), dtype=inputs.dtype, device=device)
            for box in grid:
                count[(slice(None), slice(None), *box)] += weights.to(device)
        weighted = (scores * weights).to(device)
        for (b, box), patch in zip(batch, weighted, strict=True):
            output[(slice(b, b + 1), slice(None), *box)] += patch
    output /= count
    before = padding[-2::-2]  # the padding before each axis, first axis first
    crop = tuple(slice(start, start + n) for start, n in zip(before, spatial, strict=True))
    return output[(slice(None), slice(None), *crop)]


def _padding(spatial: Sequence[int], roi: Sequence[int]) -> list[int]:
    """Zero padding that makes every axis at least a window long, split in half (``F.pad``'s order:
    last axis first, before then after)."""
    padding: list[int] = []
    for size, window in reversed(list(zip(spatial, roi, strict=True))):
        missing = max(window - size, 0)
        padding += [missing // 2, missing - missing // 2]
    return padding
