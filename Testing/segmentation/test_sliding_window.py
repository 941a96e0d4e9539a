"""The sliding window against MONAI's own: the same windows, the same weights, the same result.

``segmentation.sliding_window`` exists so that inference need not import MONAI; these tests keep it
MONAI's, bit for bit, for the options ``segment.predict`` uses (and the window count used for
progress is the number of windows MONAI visits).
"""

from __future__ import annotations

import pytest
import torch
from LungLiverSegLib.segmentation.sliding_window import (
    gaussian_weights,
    sliding_window_inference,
    window_count,
    window_starts,
)

monai_inferers = pytest.importorskip("monai.inferers", reason="MONAI is the reference")
from monai.data.utils import compute_importance_map, dense_patch_slices  # noqa: E402
from monai.inferers.utils import _get_scan_interval  # noqa: E402

CPU = torch.device("cpu")


def monai_grid(shape: tuple[int, ...], roi: tuple[int, ...], overlap: float) -> list[tuple[slice, ...]]:
    """The windows ``monai.inferers.sliding_window_inference`` visits (inputs padded up to the roi)."""
    padded = tuple(max(n, w) for n, w in zip(shape, roi, strict=True))
    interval = _get_scan_interval(padded, roi, len(roi), (overlap,) * len(roi))
    return dense_patch_slices(padded, roi, interval)


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.9])
@pytest.mark.parametrize("window", [1, 7, 16, 64])
def test_window_starts_are_monais(window, overlap):
    for size in range(1, 150):
        expected = sorted({box[0].start for box in monai_grid((size,), (window,), overlap)})
        assert window_starts(size, window, overlap) == expected, size


@pytest.mark.parametrize(
    ("shape", "roi", "overlap"),
    [
        ((154, 180, 240), (64, 96, 96), 0.25),
        ((40, 37, 23), (16, 16, 8), 0.25),
        ((10, 300, 300), (32, 32, 16), 0.5),
        ((256, 256), (256, 256), 0.0),
        ((300, 290), (256, 256), 0.0),
    ],
)
def test_the_window_count_for_progress_is_monais(shape, roi, overlap):
    assert window_count(shape, roi, overlap) == len(monai_grid(shape, roi, overlap))


@pytest.mark.parametrize("roi", [(16, 16, 8), (64, 64), (5, 7)])
def test_gaussian_weights_are_monais(roi):
    expected = compute_importance_map(roi, mode="gaussian", sigma_scale=0.125, device=CPU)
    assert torch.equal(gaussian_weights(roi, CPU), expected)


def softmax_of(network: torch.nn.Module):
    return lambda windows: torch.softmax(network(windows), dim=1)


@pytest.mark.parametrize(
    ("shape", "roi", "overlap", "batch_size"),
    [
        ((1, 1, 40, 37, 23), (16, 16, 8), 0.25, 2),  # 3D, as lungs-ct-3d runs: windows overlap
        ((1, 1, 10, 37, 23), (16, 16, 8), 0.25, 3),  # fewer slices than the window: padded
        ((1, 1, 50, 50, 50), (48, 48, 32), 0.5, 1),
        ((5, 1, 70, 33), (64, 64), 0.0, 5),  # 2D, slices as a batch, as the 2D models run
        ((4, 1, 256, 256), (256, 256), 0.0, 4),  # one window per slice (lungs-cxr-2d)
        ((3, 1, 100, 130), (64, 64), 0.25, 2),  # windows of several slices in one call
    ],
    ids=["3d", "3d-padded", "3d-half-overlap", "2d-padded", "2d-one-window", "2d-mixed-batches"],
)
def test_the_result_is_monais_bit_for_bit(shape, roi, overlap, batch_size):
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    convolution = (torch.nn.Conv3d if len(roi) == 3 else torch.nn.Conv2d)(1, 3, 3, padding=1)
    predictor = softmax_of(convolution)
    volume = torch.randn(shape, generator=generator)
    with torch.inference_mode():
        expected = monai_inferers.sliding_window_inference(
            volume, roi, batch_size, predictor, overlap=overlap, mode="gaussian", sw_device=CPU, device=CPU
        )
        result = sliding_window_inference(
            volume, roi, batch_size, predictor, overlap, sw_device=CPU, device=CPU
        )
    assert result.shape == expected.shape == (shape[0], 3, *shape[2:])
    assert torch.equal(result, torch.as_tensor(expected))
