"""Validation through the core: the network segments the original validation images with
``segment_image`` (preprocessing, sliding window, return to the input grid, post-processing),
and the project's metrics score the result. What is reported is therefore exactly what a user
of the exported bundle will get, not a patch-level proxy.

Scores are per patient (``Case.group_id``): a 3D case is its own group, while the slices of one
volume in a 2D dataset form one group whose Dice pools their voxels, so a volume with many small
liver slices counts once and a tiny slice cannot swing the mean (per-volume Dice, as the
bundled liver model's target is stated). NSD is averaged over the group's slices, since surfaces
of unrelated slices must not be compared across slices.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from LungLiverSegLib.bundle.spec import ModelBundle
from LungLiverSegLib.errors import ExecutionPlanWarning
from LungLiverSegLib.evaluation.metrics import NSD_KEY, NSD_TOLERANCE_MM, compute_label_metrics
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.segmentation.input_checks import HISTOGRAM_TOLERANCE, InputWarning
from LungLiverSegLib.segmentation.segment import LoadedModel, segment_image

from LungLiverSegTraining.config import TrainingConfig
from LungLiverSegTraining.dataset_reader import Dataset, label_lookup, load_case
from LungLiverSegTraining.distributed import DistributedContext, sum_across_ranks

METRICS = ("dice", NSD_KEY)
"""Names in the history and the bundle, in the order of the score vectors (``nsd@2mm``, as
``lunglivseg evaluate`` and export's correction records spell it)."""
UNSURE_BINS = np.linspace(0.0, 5.0, 501)
"""Histogram of the images' ``unsure_ratio`` (summed across ranks, so percentiles work under DDP)."""


@dataclass(frozen=True)
class ValidationCase:
    case_id: str
    group_id: str
    image: Image
    labels: Image


def validation_cases(
    dataset: Dataset, config: TrainingConfig, case_ids: Sequence[str]
) -> list[ValidationCase]:
    """The named cases as read, on their original grid, labels mapped to the config's values."""
    lookup = label_lookup(dataset, config)
    by_id = {case.case_id: case for case in dataset.cases}
    return [
        ValidationCase(case_id, by_id[case_id].group_id, *load_case(by_id[case_id], lookup))
        for case_id in case_ids
    ]


def group_by_patient(cases: Sequence[ValidationCase]) -> list[list[ValidationCase]]:
    """Cases grouped by ``group_id``, groups in order of first appearance."""
    groups: dict[str, list[ValidationCase]] = {}
    for case in cases:
        groups.setdefault(case.group_id, []).append(case)
    return list(groups.values())


def validate(
    network: torch.nn.Module,
    bundle: ModelBundle,
    cases: Sequence[ValidationCase],
    device: torch.device,
    context: DistributedContext,
) -> dict[str, object]:
    """Mean per-patient Dice and NSD@2mm per segment (each rank scores its share of patients).

    Returns ``{"dice": {name: v}, "nsd@2mm": {name: v}, "mean_dice": v, "cases": n,
    "patients": n, "cpu_time_s" or "gpu_time_s": mean seconds per case, "unsure_ratio_p95": v,
    "unlike_training_images": n}``; the timing is what the model catalogue shows users as the
    expected segmentation time of one image; the last two measure the input checks' false alarms
    (the count of validation images the intensity-fingerprint check would warn about).
    """
    names = {value: info.name for value, info in bundle.labels.items()}
    loaded = LoadedModel(bundle, network, device)
    totals = torch.zeros(len(METRICS) * len(names) + 4, dtype=torch.float64)
    unsure = torch.zeros(len(UNSURE_BINS) - 1, dtype=torch.float64)
    network.eval()
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", ExecutionPlanWarning
        )  # memory-plan notes: not the user's concern here
        warnings.simplefilter("ignore", InputWarning)  # an early network is unsure: that is measured below
        for group in group_by_patient(cases)[context.rank :: context.world_size]:
            totals += _group_scores(loaded, group, names, unsure)
    network.to(device)  # the memory plan may have moved it; the optimiser's tensors stay on device
    totals, unsure = sum_across_ranks(totals, context), sum_across_ranks(unsure, context)
    patients, images = max(int(totals[-1]), 1), max(int(totals[-2]), 1)
    means = (totals[:-4] / patients).reshape(len(METRICS), len(names)).tolist()
    result: dict[str, object] = {
        metric: dict(zip(names.values(), row, strict=True))
        for metric, row in zip(METRICS, means, strict=True)
    }
    result["mean_dice"] = float(np.mean(means[0]))
    result["cases"] = int(totals[-2])
    result["patients"] = int(totals[-1])
    result["gpu_time_s" if device.type == "cuda" else "cpu_time_s"] = round(float(totals[-3]) / images, 2)
    result["unsure_ratio_p95"] = _percentile(unsure.numpy(), 95.0)
    result["unlike_training_images"] = int(totals[-4])
    return result


def unsure_ratio_limit(validation: Mapping[str, Any]) -> float | None:
    """The warning limit a bundle gets: twice the validation images' 95th percentile of
    ``unsure_ratio`` (a few unusual validation images may exceed it; inputs unlike the training
    data exceed it by far: see docs/MODELS.md)."""
    p95 = validation.get("unsure_ratio_p95")
    return None if p95 is None else round(2.0 * float(p95), 2)


def _percentile(histogram: np.ndarray, percent: float) -> float:
    """Upper bin edge where the cumulative count first reaches ``percent`` of the total."""
    cumulative = np.cumsum(histogram)
    index = int(np.searchsorted(cumulative, cumulative[-1] * percent / 100.0))
    return float(UNSURE_BINS[min(index + 1, len(UNSURE_BINS) - 1)])


def _group_scores(
    loaded: LoadedModel, group: Sequence[ValidationCase], names: dict[int, str], unsure: torch.Tensor
) -> torch.Tensor:
    """[Dice per name (pooled over the group), NSD per name (mean over it), images whose
    intensities are unlike the training images', seconds, images, 1]; each image's
    ``unsure_ratio`` is counted into the histogram ``unsure``."""
    overlap = np.zeros((len(names), 2), dtype=np.int64)  # |P & G|, |P| + |G| per label
    nsd_sum = np.zeros(len(names))
    seconds, unlike = 0.0, 0
    for case in group:
        started = time.perf_counter()
        result = segment_image(case.image, loaded)
        seconds += time.perf_counter() - started
        prediction = result.array
        unlike += float(result.metadata["histogram_distance"]) > HISTOGRAM_TOLERANCE
        ratio = min(float(result.metadata["unsure_ratio"]), UNSURE_BINS[-1] - 1e-9)
        unsure[int(np.searchsorted(UNSURE_BINS, ratio, side="right")) - 1] += 1
        scores = compute_label_metrics(
            prediction, case.labels.array, case.labels.spacing[::-1], names, tolerances_mm=(NSD_TOLERANCE_MM,)
        )
        for row, (value, name) in enumerate(names.items()):
            pred, truth = prediction == value, case.labels.array == value
            overlap[row] += (np.count_nonzero(pred & truth), np.count_nonzero(pred) + np.count_nonzero(truth))
            nsd_sum[row] += scores[name][NSD_KEY]
    dice = [1.0 if total == 0 else 2.0 * both / total for both, total in overlap]  # metrics.dice's policy
    return torch.tensor(
        [*dice, *(nsd_sum / len(group)), unlike, seconds, len(group), 1.0], dtype=torch.float64
    )
