"""``lunglivseg demo``: the main job end to end on a generated CT phantom, with no network.

Generates a chest/abdomen phantom with known truth, segments it with bundled models, and writes
what a user would look at: one segmentation with every model's segments (``.seg.nrrd``, loads in
Slicer), an overlay PNG, a volume table, and the agreement with the phantom's truth.

The lungs come from ``lungs-ct-3d``, trained on real chest CT, which finds the phantom's lungs
(Dice about 0.98). The phantom's liver is a plain 60 HU organ, unlike the contrast-enhanced
livers ``liver-ct-2d`` was trained on (Dice about 0.5 there), so the liver comes from the
demo model ``phantom-ct-3d``; ``--model lungs-ct-3d liver-ct-2d`` shows the real liver model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from LungLiverSegLib.demo.phantom import make_phantom
from LungLiverSegLib.demo.report import label_volumes_ml, save_overlay_png, volumes_to_csv
from LungLiverSegLib.evaluation.metrics import NSD_KEY, NSD_TOLERANCE_MM, compute_label_metrics
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.imageio import write_image, write_segmentation
from LungLiverSegLib.labels import LabelMap
from LungLiverSegLib.progress import Progress
from LungLiverSegLib.segmentation.segment import load_model, segment_image

DEMO_SEED = 2026
DEMO_MODELS = ("lungs-ct-3d", "phantom-ct-3d")


@dataclass(frozen=True)
class ModelRun:
    """A model the demo ran, and where."""

    name: str
    version: str
    device: str

    def __str__(self) -> str:
        return f"{self.name} {self.version} on {self.device}"


@dataclass(frozen=True)
class Agreement:
    """One segment against the phantom's truth, and the run it came from."""

    dice: float
    nsd: float
    """Normalised surface Dice at ``NSD_TOLERANCE_MM``."""
    run: ModelRun


@dataclass(frozen=True)
class DemoResult:
    """What the demo wrote and measured; the CLI prints it."""

    runs: tuple[ModelRun, ...]
    ct: Path
    ct_size: tuple[int, ...]
    ct_spacing: tuple[float, ...]
    segmentation: Path
    overlay: Path
    volumes_csv: Path
    volumes_ml: dict[str, float]
    agreement: dict[str, Agreement]
    """Per segment of the merged segmentation."""


def run_demo(
    out: Path,
    *,
    models: Sequence[str] = DEMO_MODELS,
    device: str = "auto",
    threads: int | None = None,
    progress_for: Callable[[str], Progress] | None = None,
) -> DemoResult:
    """Run the demo into ``out`` (its own files there are replaced): the files and the scores.

    ``progress_for(model_name)`` gives the progress reporter of each model's run.
    """
    out.mkdir(parents=True, exist_ok=True)
    # No tumour: the models segment lungs and liver only, so the truth compares like with like.
    ct, truth, truth_map = make_phantom(seed=DEMO_SEED, tumour=False)
    ct_path = write_image(out / "phantom_ct.nii.gz", ct, overwrite=True)
    results, runs = [], []
    for name in models:
        loaded = load_model(name, device, threads)
        progress = progress_for(name) if progress_for else None
        results.append((segment_image(ct, loaded, progress=progress), loaded.bundle.labels))
        runs.append(ModelRun(loaded.bundle.name, loaded.bundle.version, str(loaded.device)))
    labels, label_map, sources = merge_by_name(results, truth_map)
    seg_path = write_segmentation(out / "phantom_segmentation.seg.nrrd", labels, label_map, overwrite=True)
    overlay = save_overlay_png(ct, labels, label_map, out / "overlay.png")
    volumes = label_volumes_ml(labels, label_map)
    csv_path = out / "volumes.csv"
    volumes_to_csv(volumes, csv_path)
    names = {value: info.name for value, info in label_map.items()}
    scores = compute_label_metrics(
        labels.array, truth.array, truth.spacing[::-1], names, tolerances_mm=(NSD_TOLERANCE_MM,)
    )
    agreement = {
        name: Agreement(row["dice"], row[NSD_KEY], runs[sources[name]]) for name, row in scores.items()
    }
    return DemoResult(
        tuple(runs), ct_path, ct.size, ct.spacing, seg_path, overlay, csv_path, volumes, agreement
    )


def merge_by_name(
    results: Sequence[tuple[Image, LabelMap]], reference: LabelMap
) -> tuple[Image, LabelMap, dict[str, int]]:
    """One label image from several models' results on one grid, and which result each segment
    came from (segment name -> index in ``results``).

    Each segment comes whole from the first model that has it (later models' segments of the
    same name are ignored) and takes the value its name has in ``reference`` (here the phantom's
    truth, so the two compare value by value), or the next free value; a voxel keeps the first
    segment that claims it.
    """
    values_by_name = {info.name: value for value, info in reference.items()}
    merged = np.zeros(results[0][0].array.shape, np.uint8)
    merged_map: LabelMap = {}
    sources: dict[str, int] = {}
    for index, (labels, label_map) in enumerate(results):
        for value, info in label_map.items():
            if info.name in sources:
                continue
            target = values_by_name.get(info.name) or max([*values_by_name.values(), *merged_map, 0]) + 1
            values_by_name[info.name], sources[info.name] = target, index
            merged_map[target] = replace(info, value=target)
            merged[(labels.array == value) & (merged == 0)] = target
    return results[0][0].with_array(merged), dict(sorted(merged_map.items())), sources
