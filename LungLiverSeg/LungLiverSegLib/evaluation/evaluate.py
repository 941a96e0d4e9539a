"""Engine of ``lunglivseg evaluate``: score label files (or folders of them) against the truth.

Metric definitions and the empty-mask policy live in ``metrics`` (docs/METRICS.md). This module
adds what only files have: reading, checking that both images share one voxel grid, matching
cases between folders, and the three output formats. In JSON, inf is written as the string
``"inf"`` (JSON has no infinity; a string keeps "missed" distinguishable from "not computed").
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np

from LungLiverSegLib.dataset.layout import case_id
from LungLiverSegLib.errors import InputImageError, LungLiverSegError
from LungLiverSegLib.evaluation import metrics
from LungLiverSegLib.files import is_hidden
from LungLiverSegLib.geometry import Image, grid_difference
from LungLiverSegLib.imageio import WRITABLE_SUFFIXES, read_image, split_image_name
from LungLiverSegLib.tables import text_table

LABEL_FILE_SUFFIXES = WRITABLE_SUFFIXES  # the label files segment writes are the ones evaluate reads
DEFINITIONS = (
    "Dice, Jaccard: voxel overlap. NSD@t: DeepMind surface Dice at tolerance t mm. "
    "ASD: area-weighted mean surfel distance (pred->gt, gt->pred, asd = pooled over both surfaces). "
    "HD95: DeepMind (max of directed 95th percentiles). HD: max surfel distance. "
    "Distances in mm, volumes in ml. Missed or spurious structure: Dice/NSD 0, distances inf; "
    "absent from both: Dice/NSD 1, distances 0. Summary mean/std over finite values, n_inf counts inf."
)
SUMMARY_STATISTICS = ("mean", "std", "median", "min", "max", "n_infinite")


@dataclass
class CaseResult:
    """Metrics of one case: label name -> metric name -> value."""

    case: str
    pred_path: Path | None  # None when the prediction is missing (scored as empty)
    gt_path: Path
    metrics: dict[str, dict[str, float]]

    @property
    def prediction_missing(self) -> bool:
        """True when no prediction file existed and an empty one was scored instead."""
        return self.pred_path is None


@dataclass
class FolderResult:
    """Per-case results and their summary: label name -> metric name -> aggregate."""

    cases: list[CaseResult]
    summary: dict[str, dict[str, metrics.Aggregate]]
    missing_predictions: list[str]
    extra_predictions: list[str]


def _label_array(image: Image, path: Path) -> np.ndarray:
    """The voxels as integer labels; anything that is not a scalar label map is refused."""
    array = np.asarray(image.array)
    if array.ndim != image.ndim:
        raise InputImageError(f"{path}: expected a single-component label map, got array shape {array.shape}")
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        return array
    if not np.array_equal(array, np.round(array)):
        raise InputImageError(f"{path}: voxel values are not integers, so this is not a label map")
    return array.astype(np.int32)


def check_tolerances(tolerances_mm: Sequence[float]) -> None:
    """Refuse NSD tolerances that are not positive distances: a negative or NaN tolerance gives
    an NSD that looks like a score but measures nothing."""
    bad = [value for value in tolerances_mm if not (math.isfinite(value) and value > 0)]
    if not tolerances_mm or bad:
        given = ", ".join(map(str, tolerances_mm)) or "none"
        raise LungLiverSegError(f"NSD tolerances must be positive distances in mm, got {given}")


def _score(
    pred_labels: np.ndarray, gt: Image, labels: dict[int, str] | None, tolerances_mm: Sequence[float]
) -> dict[str, dict[str, float]]:
    """Label metrics with the spacing turned from (i, j, k) into array order."""
    return metrics.compute_label_metrics(pred_labels, gt.array, gt.spacing[::-1], labels, tolerances_mm)


def evaluate_pair(
    pred_path: Path | str,
    gt_path: Path | str,
    labels: dict[int, str] | None = None,
    tolerances_mm: Sequence[float] = (1.0, 2.0),
) -> CaseResult:
    """Score one predicted label file against its truth (both must share one voxel grid)."""
    check_tolerances(tolerances_mm)
    pred_path, gt_path = Path(pred_path), Path(gt_path)
    pred, gt = read_image(pred_path), read_image(gt_path)
    difference = grid_difference(pred, gt)
    if difference is not None:
        raise InputImageError(
            f"{pred_path} and {gt_path} are not on the same voxel grid ({difference}); "
            "resample the prediction onto the truth grid first"
        )
    gt = gt.with_array(_label_array(gt, gt_path))
    scores = _score(_label_array(pred, pred_path), gt, labels, tolerances_mm)
    return CaseResult(case_id(gt_path), pred_path, gt_path, scores)


def _missing_prediction(
    gt_path: Path, labels: dict[int, str] | None, tolerances_mm: Sequence[float]
) -> CaseResult:
    """A case without prediction, scored as an empty prediction so that it is never dropped."""
    gt = read_image(gt_path)
    gt = gt.with_array(_label_array(gt, gt_path))
    scores = _score(np.zeros_like(gt.array), gt, labels, tolerances_mm)
    return CaseResult(case_id(gt_path), None, gt_path, scores)


def _label_files(folder: Path) -> dict[str, Path]:
    """Case name -> label file of a folder; two files of one case are an error."""
    if not folder.is_dir():
        raise InputImageError(f"{folder} is not a folder")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not is_hidden(path) and split_image_name(path)[1] in LABEL_FILE_SUFFIXES:
            name = case_id(path)
            if name in files:
                raise InputImageError(f"{folder}: {files[name].name} and {path.name} are both case {name!r}")
            files[name] = path
    return files


def _fill_absent_labels(cases: list[CaseResult], tolerances_mm: Sequence[float]) -> list[str]:
    """Give every case every label seen in any case (absent from both maps: policy values)."""
    names = list(dict.fromkeys(name for case in cases for name in case.metrics))
    for case in cases:
        for name in names:
            case.metrics.setdefault(name, metrics.absent_label_metrics(tolerances_mm))
    return names


def _summarise(cases: list[CaseResult], names: list[str]) -> dict[str, dict[str, metrics.Aggregate]]:
    """Aggregate of every metric of every label over all cases."""
    return {
        name: {
            metric: metrics.mean_over_cases(case.metrics[name][metric] for case in cases)
            for metric in cases[0].metrics[name]
        }
        for name in names
    }


def evaluate_folders(
    pred_dir: Path | str,
    gt_dir: Path | str,
    labels: dict[int, str] | None = None,
    tolerances_mm: Sequence[float] = (1.0, 2.0),
) -> FolderResult:
    """Score every truth file against the prediction of the same case name.

    A case without prediction counts as an empty prediction (Dice 0); predictions without truth
    are listed in ``extra_predictions`` and not scored.
    """
    check_tolerances(tolerances_mm)
    pred_files, gt_files = _label_files(Path(pred_dir)), _label_files(Path(gt_dir))
    if not gt_files:
        raise InputImageError(f"{gt_dir}: no label files ({', '.join(LABEL_FILE_SUFFIXES)})")
    cases = [
        evaluate_pair(pred_files[name], gt_path, labels, tolerances_mm)
        if name in pred_files
        else _missing_prediction(gt_path, labels, tolerances_mm)
        for name, gt_path in gt_files.items()
    ]
    names = _fill_absent_labels(cases, tolerances_mm)
    return FolderResult(
        cases=cases,
        summary=_summarise(cases, names),
        missing_predictions=[case.case for case in cases if case.prediction_missing],
        extra_predictions=sorted(set(pred_files) - set(gt_files)),
    )


# --- output formats ---------------------------------------------------------------------------


def _number(value: float) -> str:
    """Counts as integers, metrics with three decimals, inf spelled out."""
    if isinstance(value, int):
        return str(value)
    return "inf" if math.isinf(value) else f"{value:.3f}"


def _metric_names(cases: Sequence[CaseResult]) -> list[str]:
    """Metric names in their natural order (every label has the same ones)."""
    for case in cases:
        for label_metrics in case.metrics.values():
            return list(label_metrics)
    return []


def _case_rows(cases: Sequence[CaseResult]) -> list[list[str]]:
    """One row per case and label, missing predictions marked."""
    return [
        [case.case + (" (missing)" if case.prediction_missing else ""), name]
        + [_number(value) for value in label_metrics.values()]
        for case in cases
        for name, label_metrics in case.metrics.items()
    ]


def _summary_rows(summary: dict[str, dict[str, metrics.Aggregate]]) -> list[list[str]]:
    """One row per label and statistic."""
    return [
        [statistic, name] + [_number(getattr(aggregate, statistic)) for aggregate in per_metric.values()]
        for name, per_metric in summary.items()
        for statistic in SUMMARY_STATISTICS
    ]


def format_table(result: CaseResult | FolderResult) -> str:
    """Aligned text table with the metric definitions in its header."""
    cases = [result] if isinstance(result, CaseResult) else result.cases
    header = ["case", "label", *_metric_names(cases)]
    parts = [DEFINITIONS, text_table([header, *_case_rows(cases)])]
    if isinstance(result, FolderResult):
        parts.append(
            text_table([["statistic", "label", *_metric_names(cases)], *_summary_rows(result.summary)])
        )
        if result.missing_predictions:
            parts.append("missing predictions (scored as empty): " + ", ".join(result.missing_predictions))
        if result.extra_predictions:
            parts.append("predictions without truth (not scored): " + ", ".join(result.extra_predictions))
    return "\n\n".join(parts)


@overload
def json_safe(value: dict[str, Any]) -> dict[str, Any]: ...
@overload
def json_safe(value: object) -> object: ...
def json_safe(value: object) -> object:
    """Replace inf by the string "inf" in nested dicts and lists."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return value


def _case_dict(case: CaseResult) -> dict[str, object]:
    """A case as plain JSON-ready data."""
    return {
        "case": case.case,
        "pred": None if case.pred_path is None else str(case.pred_path),
        "gt": str(case.gt_path),
        "prediction_missing": case.prediction_missing,
        "metrics": case.metrics,
    }


def to_json(result: CaseResult | FolderResult) -> str:
    """JSON with the definitions; inf becomes the string "inf"."""
    if isinstance(result, CaseResult):
        document: dict[str, object] = {"definitions": DEFINITIONS, **_case_dict(result)}
    else:
        document = {
            "definitions": DEFINITIONS,
            "cases": [_case_dict(case) for case in result.cases],
            "summary": {
                name: {metric: vars(aggregate) for metric, aggregate in per_metric.items()}
                for name, per_metric in result.summary.items()
            },
            "missing_predictions": result.missing_predictions,
            "extra_predictions": result.extra_predictions,
        }
    return json.dumps(json_safe(document), indent=2)


def to_csv(result: CaseResult | FolderResult) -> str:
    """CSV, one row per case and label; a folder adds summary rows (case ``summary:<statistic>``)."""
    cases = [result] if isinstance(result, CaseResult) else result.cases
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["case", "label", *_metric_names(cases)])
    for case in cases:
        for name, label_metrics in case.metrics.items():
            writer.writerow([case.case, name, *label_metrics.values()])
    if isinstance(result, FolderResult):
        for name, per_metric in result.summary.items():
            for statistic in SUMMARY_STATISTICS:
                values = [getattr(aggregate, statistic) for aggregate in per_metric.values()]
                writer.writerow([f"summary:{statistic}", name, *values])
    return buffer.getvalue()
