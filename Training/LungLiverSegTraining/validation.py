"""Validation through the core: the network segments the original validation images with
``segment_image`` (preprocessing, sliding window, return to the input grid, post-processing),
and the project's metrics score the result. What is reported is therefore exactly what a user
of the exported bundle will get, not a patch-level proxy.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from LungLiverSegLib.bundle import ModelBundle
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.inference import LoadedModel, segment_image
from LungLiverSegLib.metrics import compute_label_metrics, nsd_key

from .config import TrainingConfig
from .datasets import Dataset, label_lookup, load_case
from .distributed import DistributedContext, sum_across_ranks

NSD_TOLERANCE_MM = 2.0
METRICS = {"dice": "dice", "nsd_2mm": nsd_key(NSD_TOLERANCE_MM)}
"""Name in the history / bundle -> key in ``compute_label_metrics``' result."""


@dataclass(frozen=True)
class ValidationCase:
    case_id: str
    image: Image
    labels: Image


def validation_cases(
    dataset: Dataset, config: TrainingConfig, case_ids: Sequence[str]
) -> list[ValidationCase]:
    """The named cases as read, on their original grid, labels mapped to the config's values."""
    lookup = label_lookup(dataset, config)
    by_id = {case.case_id: case for case in dataset.cases}
    return [ValidationCase(case_id, *load_case(by_id[case_id], lookup)) for case_id in case_ids]


def validate(
    network: torch.nn.Module,
    bundle: ModelBundle,
    cases: Sequence[ValidationCase],
    device: torch.device,
    context: DistributedContext,
) -> dict[str, object]:
    """Mean Dice and NSD@2mm per segment over ``cases`` (each rank scores its share, then summed).

    Returns ``{"dice": {name: v}, "nsd_2mm": {name: v}, "mean_dice": v, "cases": n,
    "cpu_time_s" or "gpu_time_s": mean seconds per case}``; the timing is what the model catalogue
    shows users as the expected segmentation time.
    """
    names = {value: info.name for value, info in bundle.labels.items()}
    loaded = LoadedModel(bundle, network, device)
    totals = torch.zeros(len(METRICS) * len(names) + 2, dtype=torch.float64)
    network.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # memory-plan notes: not the user's concern here
        for case in cases[context.rank :: context.world_size]:
            totals += _case_scores(loaded, case, names)
    network.to(device)  # the memory plan may have moved it; the optimiser's tensors stay on device
    totals = sum_across_ranks(totals, context)
    count = max(int(totals[-1]), 1)
    means = (totals[:-2] / count).reshape(len(METRICS), len(names)).tolist()
    result: dict[str, object] = {
        metric: dict(zip(names.values(), row, strict=True))
        for metric, row in zip(METRICS, means, strict=True)
    }
    result["mean_dice"] = float(np.mean(means[0]))
    result["cases"] = int(totals[-1])
    result["gpu_time_s" if device.type == "cuda" else "cpu_time_s"] = round(float(totals[-2]) / count, 2)
    return result


def _case_scores(loaded: LoadedModel, case: ValidationCase, names: dict[int, str]) -> torch.Tensor:
    started = time.perf_counter()
    prediction = segment_image(case.image, loaded)
    seconds = time.perf_counter() - started
    spacing_kji = case.labels.spacing[::-1]
    scores = compute_label_metrics(
        prediction.array, case.labels.array, spacing_kji, names, tolerances_mm=(NSD_TOLERANCE_MM,)
    )
    values = [scores[name][key] for key in METRICS.values() for name in names.values()]
    return torch.tensor([*values, seconds, 1.0], dtype=torch.float64)
