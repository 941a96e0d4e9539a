"""``lunglivseg demo``: the main job end to end on a generated CT phantom, with no network.

Generates a chest/abdomen phantom with known truth, segments it with a bundled model, and
writes what a user would look at: the segmentation (``.seg.nrrd``, loads in Slicer), an overlay
PNG, a volume table, and the agreement with the phantom's truth.
"""

from __future__ import annotations

from pathlib import Path

from .api import save_labels
from .imageio import write_image
from .inference import load_model, segment_image
from .metrics import compute_label_metrics, nsd_key
from .phantom import make_phantom
from .progress import Progress
from .report import format_volume_table, label_volumes_ml, save_overlay_png, volumes_to_csv

DEMO_SEED = 2026


def run_demo(
    out: Path,
    *,
    model: str = "phantom-ct-3d",
    device: str = "auto",
    threads: int | None = None,
    progress: Progress | None = None,
) -> str:
    """Run the demo into ``out`` (its own files there are replaced) and return a printable summary."""
    out.mkdir(parents=True, exist_ok=True)
    # No tumour: the demo model segments lungs and liver only, so the truth compares like with like.
    ct, truth, _ = make_phantom(seed=DEMO_SEED, tumour=False)
    ct_path = write_image(out / "phantom_ct.nii.gz", ct, overwrite=True)
    loaded = load_model(model, device, threads)
    labels = segment_image(ct, loaded, progress=progress)
    seg_path = save_labels(out / "phantom_segmentation.seg.nrrd", labels, loaded, overwrite=True)
    label_map = loaded.bundle.labels
    overlay = save_overlay_png(ct, labels, label_map, out / "overlay.png")
    volumes = label_volumes_ml(labels, label_map)
    csv_path = out / "volumes.csv"
    volumes_to_csv(volumes, csv_path)
    names = {value: info.name for value, info in label_map.items()}
    scores = compute_label_metrics(
        labels.array, truth.array, truth.spacing[::-1], names, tolerances_mm=(2.0,)
    )
    agreement = "\n".join(
        f"  {name:12} Dice {row['dice']:.3f}  NSD@2mm {row[nsd_key(2.0)]:.3f}" for name, row in scores.items()
    )
    return (
        f"model: {loaded.bundle.name} {loaded.bundle.version} on {loaded.device}\n"
        f"input: {ct_path} (generated phantom, size {ct.size}, spacing {ct.spacing} mm)\n"
        f"segmentation: {seg_path}\noverlay: {overlay}\nvolumes: {csv_path}\n"
        f"{format_volume_table(volumes)}\nagreement with the phantom's truth:\n{agreement}"
    )
