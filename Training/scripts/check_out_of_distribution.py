"""How the bundled models behave on images like and unlike their training data.

For each model it segments a few in-distribution images and several that are not (an
abdomen-only CT for the lung model, an MR, a chest X-ray given to a CT model, a CT slice or a
picture that is not medical given to the X-ray model) and prints, per image, the volume or area
found per segment, the ``unsure_ratio`` and ``histogram_distance`` that ``segment_image``
computes, and whether an ``InputWarning`` was raised. Reads ../shared/data; nothing is written.

    python Training/scripts/check_out_of_distribution.py [--models lungs-ct-3d liver-ct-2d lungs-cxr-2d]
"""

from __future__ import annotations

import argparse
import io
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.imageio.images import read_image
from LungLiverSegLib.segmentation.input_checks import InputWarning
from LungLiverSegLib.segmentation.segment import load_model, segment_image

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ABDOMEN = DATA / "ct_abdomen_totalseg_example"
LOWEST_LUNG_SLICE = 101
"""First axial slice of example_ct.nii.gz with lung in TotalSegmentator's labels (10-14, bases)."""


def abdomen_below_the_lungs() -> Image:
    """example_ct.nii.gz without any slice that holds lung (per TotalSegmentator), 5 slices of margin."""
    ct = read_image(ABDOMEN / "example_ct.nii.gz")
    lungs = np.isin(read_image(ABDOMEN / "example_seg_fast_force_split.nii.gz").array, range(10, 15))
    assert np.flatnonzero(lungs.any(axis=(1, 2)))[0] == LOWEST_LUNG_SLICE
    return ct.with_array(ct.array[: LOWEST_LUNG_SLICE - 5])


def not_medical_picture() -> Image:
    """A 512 x 512 grey picture of a chart with text: clearly not an X-ray."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.12, 5.12), dpi=100)
    x = np.linspace(0, 10, 200)
    axes.plot(x, np.sin(x), x, np.cos(x) * 2, linewidth=4)
    axes.bar(range(10), np.arange(10) % 4, alpha=0.5)
    axes.set_title("quarterly sales")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="rgba", dpi=100)
    plt.close(figure)
    rgba = np.frombuffer(buffer.getvalue(), np.uint8).reshape(512, 512, 4)
    return Image(rgba[..., :3].mean(-1).astype(np.uint8), (1.0, 1.0), (0.0, 0.0))


def first(folder: Path, count: int, pattern: str = "*.png") -> list[Path]:
    return sorted(folder.glob(pattern))[:count]


CASES: dict[str, list[tuple[str, Callable[[], Image]]]] = {
    "lungs-ct-3d": [
        ("LCTSC Case_008 (validation)", lambda: read_image(DATA / "ct_lung_lctsc_2mm/Case_008_ct.nii.gz")),
        ("LCTSC Case_009 (validation)", lambda: read_image(DATA / "ct_lung_lctsc_2mm/Case_009_ct.nii.gz")),
        ("COPDGene CT 64^3 (other scanner)", lambda: read_image(DATA / "ct_lung_cip_64/ct-64.nrrd")),
        ("abdomen CT below the lungs", abdomen_below_the_lungs),
        ("abdomen MR", lambda: read_image(ABDOMEN / "example_mr_sm.nii.gz")),
    ],
    "liver-ct-2d": [
        ("abdomen CT with liver", lambda: read_image(ABDOMEN / "example_ct.nii.gz")),
        ("chest CT (LCTSC Case_000)", lambda: read_image(DATA / "ct_lung_lctsc_full/Case_000_ct.nii.gz")),
        ("abdomen MR", lambda: read_image(ABDOMEN / "example_mr_sm.nii.gz")),
        *[
            (f"liver slice {p.stem}", lambda p=p: read_image(p))
            for p in first(DATA / "ct_liver_msd_2d/images", 3)
        ],
        ("chest X-ray", lambda: read_image(first(DATA / "cxr_lung_shenzhen/images", 1)[0])),
        ("picture of a chart (not medical)", not_medical_picture),
    ],
    "lungs-cxr-2d": [
        *[
            (f"chest X-ray {p.stem}", lambda p=p: read_image(p))
            for p in first(DATA / "cxr_lung_shenzhen/images", 3, "*_1.png")
        ],
        ("CT liver slice", lambda: read_image(first(DATA / "ct_liver_msd_2d/images", 1)[0])),
        ("picture of a chart (not medical)", not_medical_picture),
    ],
}


def check(model_name: str) -> None:
    model = load_model(model_name, "cpu")
    names = {value: info.name for value, info in model.bundle.labels.items()}
    print(f"\n{model_name}")
    for title, make in CASES[model_name]:
        image = make()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            labels = segment_image(image, model)
        unit_size = float(np.prod(image.spacing)) / (1000.0 if image.ndim == 3 else 100.0)
        found = ", ".join(
            f"{name} {np.count_nonzero(labels.array == value) * unit_size:.1f}"
            for value, name in names.items()
        )
        warned = any(issubclass(w.category, InputWarning) for w in caught)
        unit = "mL" if image.ndim == 3 else "cm2 (at 1 mm/pixel)"
        print(
            f"  {title:36s} {found} {unit}; unsure_ratio {labels.metadata['unsure_ratio']:.2f}; "
            f"histogram_distance {labels.metadata['histogram_distance']:.2f}; "
            f"{'WARNING' if warned else 'no warning'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    for name in parser.parse_args().models:
        check(name)


if __name__ == "__main__":
    main()
