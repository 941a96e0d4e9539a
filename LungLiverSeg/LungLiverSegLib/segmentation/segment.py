"""The one function that turns an image into a label image: ``segment_image``.

Every front end (``lunglivseg segment``, the Python API, the Slicer module's subprocess) calls
it. The pipeline, all driven by the model bundle:

1. check the input (dims, colour, NaN, constant) with one-line errors (``input_checks``);
2. preflight memory and choose devices / batch size (``memory``);
3. ``preprocess.prepare``: reorient, crop to the body, resample, normalise;
4. the network: 3D sliding window with Gaussian blending, or 2D batched slices
   (``sliding_window``); then the out-of-distribution checks on its output (``input_checks``);
5. postprocessing (``postprocess``) on the coarser of the network's grid and the body crop's
   (``network_grid``), and the label-aware return to the input grid
   (``preprocess.scores_to_labels``): class probabilities are interpolated (separably, a few
   slices at a time so memory stays bounded) and only then argmax'ed;
6. paste into the full grid and undo the reorientation (``PreparedImage.to_input_grid``).

The result has exactly the input's size, spacing, origin and direction. Nothing here imports
MONAI: the networks (``bundle.unets``) and the sliding window are MONAI's, rebuilt in plain torch
to save its import time.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from LungLiverSegLib.bundle.catalogue import find_model
from LungLiverSegLib.bundle.spec import ModelBundle
from LungLiverSegLib.bundle.weights import load_network
from LungLiverSegLib.errors import ExecutionPlanWarning, InputImageError, LungLiverSegError
from LungLiverSegLib.geometry import Image, as_volume
from LungLiverSegLib.progress import Progress, StageClock
from LungLiverSegLib.segmentation.input_checks import check_input, check_prediction
from LungLiverSegLib.segmentation.memory import ExecutionPlan, JobSize, plan_execution
from LungLiverSegLib.segmentation.network_grid import coarser, postprocess_scores
from LungLiverSegLib.segmentation.postprocess import postprocess_labels
from LungLiverSegLib.segmentation.preprocess import (
    PreparedImage,
    class_scores,
    prepare,
    scores_to_labels,
    target_shape,
)
from LungLiverSegLib.segmentation.sliding_window import sliding_window_inference, window_count

STAGES = {"preprocess": 0.1, "network": 0.75, "postprocess": 0.15}


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


def segment_image(  # noqa: PLR0913  (the public entry point: image and model, then keyword options)
    image: Image,
    model: LoadedModel | ModelBundle | str | Path,
    *,
    device: str | torch.device = "auto",
    overlap: float | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
    clock: StageClock | None = None,
) -> Image:
    """Segment ``image`` with ``model``; return a uint8 label image on the input's exact grid.

    ``clock`` (when given) gets the seconds of each stage: preprocess, network, back to grid,
    postprocess."""
    if batch_size is not None and batch_size < 1:
        raise LungLiverSegError(f"batch size must be at least 1, got {batch_size}")
    loaded = model if isinstance(model, LoadedModel) else load_model(model, device)
    bundle = loaded.bundle
    progress = progress or Progress(stages=STAGES)
    clock = clock or StageClock()
    source = str(image.metadata.get("source_path", "input image"))
    with clock.stage("preprocess"):
        check_input(image, bundle, source)
        progress.update("preprocess", 0.0)
        plan = _plan(as_volume(image), bundle, loaded.device, batch_size)
        for note in plan.notes:
            warnings.warn(note, ExecutionPlanWarning, stacklevel=2)
        prepared = prepare(image, bundle.preprocessing)
        progress.update("preprocess", 1.0)
    with clock.stage("network"):
        probabilities = predict(prepared.tensor, loaded, plan, overlap, progress)
    with clock.stage("back to grid"):
        if prepared.body is not None:
            outside_body(probabilities, prepared.body)
        unsure, outside = check_prediction(probabilities, prepared.tensor, bundle, source)
        progress.update("postprocess", 0.0)
        scores = class_scores(probabilities)
        del probabilities
    labels = labels_on_crop(scores, prepared, bundle, clock)
    progress.update("postprocess", 0.8)
    with clock.stage("postprocess"):
        result = prepared.to_input_grid(labels, image)
    result.metadata.update(unsure_ratio=unsure, histogram_distance=outside)
    progress.update("postprocess", 1.0)
    return result


def labels_on_crop(
    scores: torch.Tensor, prepared: PreparedImage, bundle: ModelBundle, clock: StageClock
) -> np.ndarray:
    """Postprocessed labels on the body crop at input resolution from the network's
    ``class_scores``: the clean-up runs on the coarser of the two grids (``network_grid``)."""
    spacing_kji = prepared.oriented.spacing[::-1]
    intensities = prepared.oriented.array[prepared.crop_box]
    if coarser(scores, prepared.crop_shape):
        with clock.stage("postprocess"):
            postprocess_scores(scores, spacing_kji, bundle.postprocessing, intensities)
        with clock.stage("back to grid"):
            return scores_to_labels(scores, prepared.crop_shape)
    with clock.stage("back to grid"):
        labels = scores_to_labels(scores, prepared.crop_shape)
    with clock.stage("postprocess"):
        return postprocess_labels(labels, spacing_kji, bundle.postprocessing, intensities)


def _plan(volume: Image, bundle: ModelBundle, device: torch.device, batch_size: int | None) -> ExecutionPlan:
    spacing_kji = np.asarray(volume.spacing[::-1])
    prepared_voxels = int(np.prod(target_shape(volume.array.shape, spacing_kji, bundle.preprocessing)))
    job = JobSize(
        volume.array.shape,
        volume.array.dtype.itemsize,
        prepared_voxels,
        batch_size or bundle.inference.batch_size,
    )
    return plan_execution(job, bundle, device)


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
        total_windows = window_count(tensor.shape[1:], roi, overlap)
    else:
        slices = tensor.permute(1, 0, 2, 3)  # slices as a batch: [k, 1, j, i]
        batches = list(torch.split(slices, plan.batch_size))
        total_windows = len(batches) * window_count(slices.shape[2:], roi, overlap)
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
                    roi,
                    plan.batch_size if bundle.dims == 3 else batch.shape[0],
                    forward,
                    overlap,
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
