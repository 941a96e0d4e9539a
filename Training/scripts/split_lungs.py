"""Split the LCTSC merged lung masks into right lung (1) and left lung (2) and draw them for a check by eye.

For every ``Case_XXX`` in ../shared/data/ct_lung_lctsc_2mm it runs ``lung_split.split_lungs`` on
``Case_XXX_lungs.nii.gz``, writes ``Case_XXX_lungs_lr.nii.gz`` and ``Case_XXX_split.png`` (an axial
and a coronal slice through the junction, right lung red, left lung blue, radiological view) to
``--out`` (outside the repository: the data's licence), and prints the volume of each lung and the
erosion steps needed:

    python Training/scripts/split_lungs.py --out runs/lctsc-lungs-lr [--data ../shared/data/ct_lung_lctsc_2mm]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from LungLiverSegLib.geometry import Image, reorient, same_grid
from LungLiverSegLib.imageio.images import read_image, write_image
from LungLiverSegTraining.lung_split import LEFT_LUNG, RIGHT_LUNG, LungSplit, split_lungs
from scipy import ndimage as ndi

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ct_lung_lctsc_2mm"


def main(argv: list[str] | None = None) -> None:
    """Split every case, write labels and overlays, print one line per case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the labels and PNGs")
    parser.add_argument("--data", type=Path, default=DATA, help="folder of Case_XXX_ct/_lungs.nii.gz")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print("case      right_mL  left_mL  erosion_steps")
    for case in _cases(args.data):
        ct = read_image(args.data / f"{case}_ct.nii.gz")
        mask = read_image(args.data / f"{case}_lungs.nii.gz")
        if not same_grid(ct, mask):
            raise SystemExit(f"{case}: the lung mask is not on the CT's grid")
        split = split_lungs(mask)
        write_image(args.out / f"{case}_lungs_lr.nii.gz", split.labels, overwrite=True)
        draw_overlay(ct, split, args.out / f"{case}_split.png")
        right, left = split.volume_ml(RIGHT_LUNG), split.volume_ml(LEFT_LUNG)
        print(f"{case}  {right:8.0f} {left:8.0f}  {split.erosion_steps:13d}")
    print(f"labels and overlays in {args.out.resolve()}")


def _cases(folder: Path) -> list[str]:
    """``Case_XXX`` names that have both a CT and a lung mask."""
    names = (re.match(r"(Case_\d+)_ct\.nii\.gz$", p.name) for p in folder.glob("Case_*_ct.nii.gz"))
    cases = sorted(m.group(1) for m in names if m and (folder / f"{m.group(1)}_lungs.nii.gz").exists())
    if not cases:
        raise SystemExit(f"{folder}: no Case_XXX_ct.nii.gz with a Case_XXX_lungs.nii.gz")
    return cases


def draw_overlay(ct: Image, split: LungSplit, path: Path) -> None:
    """Axial and coronal slice through the junction (or the largest lung section), in LPS order."""
    ct_lps, labels = reorient(ct, "LPS"), reorient(split.labels, "LPS").array
    k, j = _junction_slices(labels)
    sx, sy, sz = ct_lps.spacing
    fig, axes = plt.subplots(1, 2, figsize=(12, 6))
    views = (
        (ct_lps.array[k], labels[k], sy / sx, f"axial k={k}"),
        (ct_lps.array[::-1, j], labels[::-1, j], sz / sx, f"coronal j={j}"),
    )
    for ax, (gray, lab, aspect, title) in zip(axes, views, strict=True):
        ax.imshow(gray, cmap="gray", vmin=-1000, vmax=400, aspect=aspect)
        colour = np.zeros((*lab.shape, 4))
        colour[lab == RIGHT_LUNG] = (1.0, 0.0, 0.0, 0.4)
        colour[lab == LEFT_LUNG] = (0.0, 0.3, 1.0, 0.4)
        ax.imshow(colour, aspect=aspect)
        ax.set_title(f"{title}: red right lung, blue left (radiological)")
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _junction_slices(labels: np.ndarray) -> tuple[int, int]:
    """Axial (k) and coronal (j) index with the most right-lung voxels touching left-lung voxels."""
    touching = (labels == RIGHT_LUNG) & ndi.binary_dilation(labels == LEFT_LUNG)
    where = touching if touching.any() else labels > 0
    return int(where.sum(axis=(1, 2)).argmax()), int(where.sum(axis=(0, 2)).argmax())


if __name__ == "__main__":
    main()
