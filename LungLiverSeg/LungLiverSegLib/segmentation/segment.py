"""The one function that turns an image into a label image: ``segment_image``.

Every front end (``lunglivseg segment``, the Python API, the Slicer module's subprocess) calls
it. The pipeline, all driven by the model bundle:

1. check the input (dims, colour, NaN, constant) with one-line errors;
2. preflight memory and choose devices / batch size;
3. ``transforms.prepare``: reorient, crop to the body, resample, normalise;
4. the network: 3D sliding window with Gaussian blending, or 2D batched slices;
5. label-aware return to the input grid: class probabilities are interpolated (separably,
   a few slices at a time so memory stays bounded) and only then argmax'ed;
6. postprocessing on the body crop; paste into the full grid; undo the reorientation.

The result has exactly the input's size, spacing, origin and direction.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference

from LungLiverSegLib import geometry
from LungLiverSegLib.bundle.catalogue import find_model
from LungLiverSegLib.bundle.spec import ModelBundle
from LungLiverSegLib.bundle.weights import load_network
from LungLiverSegLib.errors import InputImageError
from LungLiverSegLib.geometry import Image, as_volume
from LungLiverSegLib.progress import Progress
from LungLiverSegLib.segmentation.memory import ExecutionPlan, plan_execution
from LungLiverSegLib.segmentation.postprocess import postprocess_labels
from LungLiverSegLib.segmentation.preprocess import PreparedImage, intensity_histogram, prepare, target_shape

STAGES = {"preprocess": 0.1, "network": 0.75, "postprocess": 0.15}
BYTES_PER_RESAMPLE_CHUNK = 256 * 1024**2
SURE_PROBABILITY = 0.9
UNSURE_RATIO_LIMIT = 1.0
"""Above this ``unsure_ratio`` the result comes with an ``InputWarning``, unless the bundle sets
its own ``inference.unsure_ratio_limit`` (calibrated on its validation images by training)."""
HISTOGRAM_TOLERANCE = 0.25
"""Above this ``histogram_distance`` (a quarter of the voxels outside every training image's
intensity histogram range) the result comes with an ``InputWarning``."""


class InputWarning(UserWarning):
    """The input can be segmented but may not be what the model was made for (e.g. MR to a CT model)."""


@dataclass
class LoadedModel:
    """A bundle with its network built and on a device: load once, segment many images."""

    bundle: ModelBundle
    network: torch.nn.Module
    device: torch.device


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is a clear error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputImageError("device 'cuda' was asked for but no CUDA GPU is available; use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise InputImageError(f"unknown device {device!r}: use auto, cpu or cuda")
    return torch.device(device)


def load_model(
    model: str | Path | ModelBundle, device: str | torch.device = "auto", threads: int | None = None
) -> LoadedModel:
    """Resolve a model name/path, build its network and move it to the device."""
    if threads:
        torch.set_num_threads(int(threads))
    bundle = model if isinstance(model, ModelBundle) else find_model(str(model))
    target = resolve_device(device)
    network = load_network(bundle, device=str(target))
    return LoadedModel(bundle, network, target)


def segment_image(
    image: Image,
    model: LoadedModel | ModelBundle | str | Path,
    *,
    device: str | torch.device = "auto",
    overlap: float | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> Image:
    """Segment ``image`` with ``model``; return a uint8 label image on the input's exact grid."""
    loaded = model if isinstance(model, LoadedModel) else load_model(model, device)
    bundle = loaded.bundle
    progress = progress or Progress(stages=STAGES)
    source = image.metadata.get("source_path", "input image")
    check_input(image, bundle, source)

    progress.update("preprocess", 0.0)
    volume = as_volume(image)
    plan = _plan(volume, bundle, loaded.device, batch_size)
    for note in plan.notes:
        warnings.warn(note, ResourceWarning, stacklevel=2)
    prepared = prepare(image, bundle.preprocessing)
    progress.update("preprocess", 1.0)

    probabilities = predict(prepared.tensor, loaded, plan, overlap, progress)
    if prepared.body is not None:
        outside_body(probabilities, prepared.body)
    unsure = unsure_ratio(probabilities)
    _warn_if_unsure(unsure, bundle, source)
    outside = histogram_distance(intensity_histogram(prepared.tensor, bundle.preprocessing.intensity), bundle)
    _warn_if_unlike_training(outside, bundle, source)
    progress.update("postprocess", 0.0)
    labels = probabilities_to_labels(probabilities, prepared.crop_shape)
    del probabilities
    spacing_kji = prepared.oriented.spacing[::-1]
    intensities = prepared.oriented.array[prepared.crop_box]
    labels = postprocess_labels(labels, spacing_kji, bundle.postprocessing, intensities)
    progress.update("postprocess", 0.8)
    result = _back_to_input_grid(labels, prepared, image)
    result.metadata["unsure_ratio"] = unsure
    result.metadata["histogram_distance"] = outside
    progress.update("postprocess", 1.0)
    return result


def check_input(image: Image, bundle: ModelBundle, source: str) -> None:
    """Refuse inputs the model cannot segment meaningfully, with a one-line reason."""
    array = image.array
    if array.size == 0:
        raise InputImageError(f"{source}: the image is empty (size {image.size})")
    if image.ndim > 3 or array.ndim > image.ndim + 1:
        raise InputImageError(
            f"{source}: a {image.ndim}D image (time series?) cannot be segmented; extract one 3D volume first"
        )
    if array.ndim == image.ndim + 1:
        raise InputImageError(
            f"{source}: a colour (RGB) image was given to the {bundle.modality} model "
            f"'{bundle.name}', which expects a grayscale image"
        )
    if bundle.dims == 3 and image.ndim == 2:
        raise InputImageError(
            f"{source}: a 2D image was given to the 3D model '{bundle.name}'; "
            "use a 3D CT volume or a 2D model"
        )
    if bundle.modality == "CXR" and image.ndim == 3 and array.shape[0] > 1:
        raise InputImageError(f"{source}: a 3D volume was given to the chest X-ray model '{bundle.name}'")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise InputImageError(f"{source}: {bad} voxels are NaN or infinite; fix or mask them first")
    low, high = float(array.min()), float(array.max())
    if low == high:
        raise InputImageError(f"{source}: the image is constant (every voxel is {low:g}); nothing to segment")
    _warn_if_unexpected(image, bundle, source, low, high)


def _warn_if_unexpected(image: Image, bundle: ModelBundle, source: str, low: float, high: float) -> None:
    modality = image.metadata.get("modality", "")
    if modality and bundle.modality == "CT" and modality != "CT":
        warnings.warn(
            f"{source}: DICOM modality is {modality}, the model '{bundle.name}' was made for CT; "
            "the result may be meaningless",
            InputWarning,
            stacklevel=3,
        )
    elif (
        bundle.modality == "CT"
        and bundle.preprocessing.intensity.type == "window"
        and image.ndim == 3
        and (low > -500 or high < 0)
    ):
        warnings.warn(
            f"{source}: intensities {low:g}..{high:g} do not look like CT in Hounsfield units "
            "(no air below -500 HU); the result may be meaningless",
            InputWarning,
            stacklevel=3,
        )


def unsure_ratio(probabilities: torch.Tensor) -> float:
    """How unsure the network was, relative to what it found: voxels where no class reaches
    ``SURE_PROBABILITY`` while some structure has at least 1 - ``SURE_PROBABILITY``, divided by
    the voxels labelled as a structure (at least 1).

    On images like its training data a network is unsure only in a thin band along each
    boundary; on an input unlike them (another modality, another body region, not a medical
    image) whole regions are unsure, and the ratio shows it even when the argmax looks clean.
    """
    background = probabilities[0]
    top = probabilities.max(dim=0).values
    unsure = int(((top < SURE_PROBABILITY) & (background < SURE_PROBABILITY)).sum())
    found = int((background < probabilities[1:].max(dim=0).values).sum()) if len(probabilities) > 1 else 0
    return unsure / max(found, 1)


def _warn_if_unsure(ratio: float, bundle: ModelBundle, source: str) -> None:
    limit = bundle.inference.unsure_ratio_limit or UNSURE_RATIO_LIMIT
    if ratio > limit:
        warnings.warn(
            f"{source}: the model '{bundle.name}' is unsure about much of this image (unsure/found "
            f"ratio {ratio:.2f}, usual below {limit:g}); it may be unlike the "
            f"{bundle.modality} images the model was trained on: check the result before using it",
            InputWarning,
            stacklevel=3,
        )


def histogram_distance(histogram: np.ndarray, bundle: ModelBundle) -> float:
    """Share of the input's voxels that would have to change bins for its intensity histogram to
    fit inside the training images' range (0: it does; None in the bundle: always 0)."""
    fingerprint = bundle.inference.input_histogram
    if fingerprint is None:
        return 0.0
    below = np.clip(np.asarray(fingerprint.low) - histogram, 0.0, None)
    above = np.clip(histogram - np.asarray(fingerprint.high), 0.0, None)
    return float(max(below.sum(), above.sum()))


def _warn_if_unlike_training(distance: float, bundle: ModelBundle, source: str) -> None:
    if distance > HISTOGRAM_TOLERANCE:
        warnings.warn(
            f"{source}: the intensities are unlike every image the model '{bundle.name}' was trained on "
            f"({distance:.0%} of the voxels fall outside the training images' histogram); it may not be a "
            f"{bundle.modality} image prepared like them: check the result before using it",
            InputWarning,
            stacklevel=3,
        )


def _plan(volume: Image, bundle: ModelBundle, device: torch.device, batch_size: int | None) -> ExecutionPlan:
    spacing_kji = np.asarray(volume.spacing[::-1])
    prepared_voxels = int(np.prod(target_shape(volume.array.shape, spacing_kji, bundle.preprocessing)))
    return plan_execution(
        volume.array.shape,
        volume.array.dtype.itemsize,
        prepared_voxels,
        bundle,
        device,
        batch_size or bundle.inference.batch_size,
    )


def predict(
    tensor: torch.Tensor, loaded: LoadedModel, plan: ExecutionPlan, overlap: float | None, progress: Progress
) -> torch.Tensor:
    """Class probabilities ``[C, k, j, i]`` (float32, on the CPU) for a prepared ``[1, k, j, i]``."""
    bundle = loaded.bundle
    network = loaded.network.to(plan.device)
    overlap = bundle.inference.overlap if overlap is None else overlap
    roi = tuple(int(n) for n in bundle.inference.patch_size[::-1])
    if bundle.dims == 3:
        batches = [tensor[None]]  # one volume: [1, 1, k, j, i]
        total_windows = _count_windows(tensor.shape[1:], roi, overlap)
    else:
        slices = tensor.permute(1, 0, 2, 3)  # slices as a batch: [k, 1, j, i]
        batches = list(torch.split(slices, plan.batch_size))
        total_windows = len(batches) * _count_windows(slices.shape[2:], roi, overlap)
    done = 0

    def forward(windows: torch.Tensor) -> torch.Tensor:
        nonlocal done
        with torch.autocast("cuda", dtype=torch.float16, enabled=plan.device.type == "cuda"):
            logits = network(windows.to(plan.device))
        done += 1 if bundle.dims == 2 else windows.shape[0]
        progress.update("network", done / max(total_windows, 1))
        return torch.softmax(logits.float(), dim=1)

    outputs = []
    with torch.inference_mode():
        for batch in batches:
            outputs.append(
                sliding_window_inference(
                    batch,
                    roi_size=roi,
                    sw_batch_size=plan.batch_size if bundle.dims == 3 else batch.shape[0],
                    predictor=forward,
                    overlap=overlap,
                    mode="gaussian",
                    sw_device=plan.device,
                    device=plan.aggregate_device,
                ).cpu()
            )
    merged = torch.cat(outputs, dim=0)
    return merged[0] if bundle.dims == 3 else merged.permute(1, 0, 2, 3)


def outside_body(probabilities: torch.Tensor, body: torch.Tensor) -> None:
    """Make everything outside the body certain background (in place), before upsampling.

    Air around the patient looks like lung and the CT table like tissue to a network that sees one
    window at a time; the body mask settles it, and doing it on probabilities keeps the return to
    the input grid label-aware.
    """
    outside = ~body
    probabilities[0][outside] = 1.0
    probabilities[1:, outside] = 0.0


def _count_windows(shape: tuple[int, ...], roi: tuple[int, ...], overlap: float) -> int:
    """How many windows MONAI's sliding window visits (for progress and ETA)."""
    count = 1
    for size, window in zip(shape, roi, strict=True):
        if size <= window:
            continue
        step = max(int(window * (1 - overlap)), 1)
        count *= math.ceil((size - window) / step) + 1
    return count


def probabilities_to_labels(probabilities: torch.Tensor, shape: tuple[int, int, int]) -> np.ndarray:
    """Trilinear-interpolate class probabilities to ``shape`` and argmax, a chunk of slices at a time.

    Interpolating probabilities (not labels) gives smooth, label-aware boundaries. Trilinear is
    separable: slices are interpolated in plane, then blended along k with the same
    ``align_corners=False`` source coordinates as ``F.interpolate``, so only a few full-resolution
    slices exist at once even for 1000-slice CTs.
    """
    channels, depth = probabilities.shape[0], probabilities.shape[1]
    out_depth, height, width = shape
    labels = np.empty(shape, dtype=np.uint8)
    source = ((torch.arange(out_depth, dtype=torch.float64) + 0.5) * depth / out_depth - 0.5).clamp(min=0)
    lower = source.floor().long().clamp(max=depth - 1)
    upper = (lower + 1).clamp(max=depth - 1)
    weight = (source - lower).float()
    chunk = max(1, BYTES_PER_RESAMPLE_CHUNK // (4 * channels * height * width * 3))
    for start in range(0, out_depth, chunk):
        stop = min(out_depth, start + chunk)
        needed = torch.unique(torch.cat([lower[start:stop], upper[start:stop]]))
        planes = _inplane(probabilities[:, needed], (height, width))  # [n, C, H, W]
        index = {int(k): n for n, k in enumerate(needed)}
        low = planes[[index[int(k)] for k in lower[start:stop]]]
        high = planes[[index[int(k)] for k in upper[start:stop]]]
        w = weight[start:stop, None, None, None]
        blended = low if not w.any() else low * (1 - w) + high * w
        labels[start:stop] = argmax_channels(blended).numpy()
    return labels


def argmax_channels(scores: torch.Tensor) -> torch.Tensor:
    """``argmax`` over dim 1 as uint8, by a loop over the few channels.

    ``torch.argmax`` along a non-innermost dimension is ~80x slower on the CPU than elementwise
    comparisons; ties keep the lower channel, as ``torch.argmax`` does.
    """
    best = scores[:, 0].clone()
    labels = torch.zeros(best.shape, dtype=torch.uint8)
    for channel in range(1, scores.shape[1]):
        better = scores[:, channel] > best
        labels[better] = channel
        torch.maximum(best, scores[:, channel], out=best)
    return labels


def _inplane(planes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    batch = planes.permute(1, 0, 2, 3)
    if tuple(batch.shape[2:]) == tuple(size):
        return batch
    return F.interpolate(batch, size=size, mode="bilinear", align_corners=False)


def _back_to_input_grid(labels_crop: np.ndarray, prepared: PreparedImage, image: Image) -> Image:
    """Paste the crop into the full reoriented grid, undo the reorientation, restore geometry."""
    full = np.zeros(prepared.oriented.array.shape, dtype=np.uint8)
    full[prepared.crop_box] = labels_crop
    oriented = prepared.oriented.with_array(full)
    if prepared.original_code is not None:
        oriented = geometry.reorient(oriented, prepared.original_code)
    array = oriented.array if image.ndim == 3 else oriented.array[0]
    result = image.with_array(np.ascontiguousarray(array))
    result.metadata = {k: v for k, v in image.metadata.items() if k in ("source_path", "series_uid")}
    return result
