"""What tests build: tiny model bundles with random weights, small image files, grids and crops
of images, and paths of the real data.

One place for them, so that no test imports another test module or conftest.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from LungLiverSegLib.bundle.networks import build_network
from LungLiverSegLib.bundle.spec import (
    ArchitectureSpec,
    BodyCropSpec,
    DensityCheckSpec,
    HistogramRangeSpec,
    InferenceSpec,
    IntensitySpec,
    ModelBundle,
    PostprocessingSpec,
    PreprocessingSpec,
)
from LungLiverSegLib.bundle.weights import save_bundle
from LungLiverSegLib.geometry import Geometry, Grid, Image, from_sitk, grid_of, physical_point, to_sitk
from LungLiverSegLib.labels import LabelInfo
from LungLiverSegLib.segmentation.segment import LoadedModel

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def require_file(path: Path) -> Path:
    """Skip the calling test with a clear reason when one real-data file is missing."""
    if not path.exists():
        pytest.skip(f"real data file missing: {path}")
    return path


LUNG_TYPE = ("SCT", "39607008", "Lung")
RIGHT = ("SCT", "24028007", "Right")


def make_bundle(dims: int = 3, name: str = "tiny-lungs", version: str = "1.0.0", **changes) -> ModelBundle:
    """A valid in-memory bundle with a tiny UNet (two labels, so out_channels is 3); ``changes``
    replace whole fields (``inference=...``)."""
    bundle = ModelBundle(
        name=name,
        version=version,
        title=f"Tiny {dims}D test model",
        description="Random weights, for tests only.",
        license="Apache-2.0",
        modality="CT",
        dims=dims,
        in_channels=1,
        architecture=ArchitectureSpec("UNet", {"channels": [4, 8], "strides": [2], "num_res_units": 0}),
        preprocessing=PreprocessingSpec(
            orientation="RAS",
            spacing=(2.0,) * dims,
            intensity=IntensitySpec("window", -1000.0, 500.0),
            body_crop=BodyCropSpec(threshold=-500.0, margin_mm=10.0) if dims == 3 else None,
        ),
        inference=InferenceSpec(
            patch_size=(16,) * dims,
            overlap=0.25,
            batch_size=2,
            unsure_ratio_limit=0.5,
            input_histogram=HistogramRangeSpec((0.0,) * 8, (0.5,) * 8),  # 8 bins, as the core computes
        ),
        labels={
            1: LabelInfo(1, "right lung", (0.8, 0.6, 0.0), type=LUNG_TYPE, modifier=RIGHT),
            2: LabelInfo(2, "left lung", (0.5, 0.6, 0.8), type=LUNG_TYPE),
        },
        postprocessing=PostprocessingSpec(
            largest_component=(1, 2),
            fill_holes=(1,),
            min_volume_ml=1.0,
            density_check=DensityCheckSpec((1, 2), 500.0, -500.0, -950.0, 0.35),
        ),
        provenance={"dataset": "none", "seed": 0},
        validation={"dice": {"right lung": 0.5, "left lung": 0.25}, "cases": 2, "cpu_time_s": 3.0},
    )
    return replace(bundle, **changes)


def random_state_dict(bundle: ModelBundle, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    network = build_network(bundle.architecture, bundle.dims, bundle.in_channels, bundle.out_channels)
    return network.state_dict()


def save_tiny_bundle(folder: Path, bundle: ModelBundle | None = None) -> Path:
    bundle = bundle or make_bundle()
    return save_bundle(folder, bundle, random_state_dict(bundle))


def zip_bundle(folder: Path, zip_path: Path) -> Path:
    """A .zip of a bundle folder as one is downloaded: its files in a folder of the same name."""
    with zipfile.ZipFile(zip_path, "w") as archive:
        for file in folder.iterdir():
            archive.write(file, f"{folder.name}/{file.name}")
    return zip_path


def forge_weights(folder: Path, weights: bytes) -> Path:
    """Give the bundle at ``folder`` the weights file ``weights`` and record its sha256 in
    model.json, as the bundle's author can: the checksum then holds, whatever the bytes are."""
    (folder / "model.safetensors").write_bytes(weights)
    document = json.loads((folder / "model.json").read_text())
    document["weights"]["sha256"] = hashlib.sha256(weights).hexdigest()
    (folder / "model.json").write_text(json.dumps(document))
    return folder


def save_bundled_models(folder: Path, *bundles: ModelBundle) -> Path:
    """A bundled models folder as the extension ships it: each bundle, and the Models.json listing
    them (point ``paths.BUNDLED_MODELS_ENV`` at it)."""
    entries = []
    for bundle in bundles:
        save_tiny_bundle(folder / f"{bundle.name}-v{bundle.version}", bundle)
        entries.append(
            {
                "name": bundle.name,
                "version": bundle.version,
                "folder": f"{bundle.name}-v{bundle.version}",
                "title": bundle.title,
                "modality": bundle.modality,
                "dims": bundle.dims,
                "segments": list(bundle.segment_names),
                "license": bundle.license,
            }
        )
    (folder / "Models.json").write_text(json.dumps({"schema_version": 1, "models": entries}))
    return folder


# --- a network with known behaviour, so the pipeline's output is known without trusting it ----

BRIGHT_HU = 200.0


class ThresholdNet(torch.nn.Module):
    """Label 1 where the normalised intensity is above 0.5 (about -250 HU in the -1000..500 window)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        foreground = 40.0 * (x - 0.5)
        return torch.cat([-foreground, foreground], dim=1)


class CoinFlipNet(torch.nn.Module):
    """Equal scores for every class everywhere: a network that knows nothing about its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], 2, *x.shape[2:])


def threshold_bundle(dims: int = 3, **preprocessing) -> ModelBundle:
    """A bundle for ``ThresholdNet``: one label, body crop, 2x2x3 mm (3D) or the input's pixels
    (2D), no postprocessing, no histogram fingerprint; ``preprocessing`` replaces its fields."""
    base = make_bundle(dims, name="threshold-test")
    spec = replace(
        base.preprocessing,
        spacing=(2.0, 2.0, 3.0) if dims == 3 else None,
        body_crop=BodyCropSpec(-500.0, 10.0),
    )
    return replace(
        base,
        preprocessing=replace(spec, **preprocessing),
        inference=InferenceSpec(
            patch_size=(32, 32, 16) if dims == 3 else (64, 64), overlap=0.25, batch_size=2
        ),
        labels={1: LabelInfo(1, "bright", (1.0, 0.0, 0.0))},
        postprocessing=PostprocessingSpec(),
    )


def threshold_model(dims: int = 3, **preprocessing) -> LoadedModel:
    return LoadedModel(threshold_bundle(dims, **preprocessing), ThresholdNet(), torch.device("cpu"))


def ellipsoid_ct(
    size=(60, 50, 24), spacing=(0.9, 0.7, 2.5), direction=None, origin=(-20.0, 35.0, 10.0)
) -> Image:
    """Air with a bright ellipsoid off centre, defined in physical space (any grid sees the same object)."""
    direction = np.eye(3) if direction is None else direction
    template = Image(np.zeros(size[::-1], np.int16), spacing, origin, direction)
    k, j, i = np.meshgrid(*[np.arange(n) for n in template.array.shape], indexing="ij")
    ijk = np.stack([i, j, k], axis=-1).astype(float)
    points = np.asarray(origin) + (ijk * np.asarray(spacing)) @ direction.T
    centre = np.asarray(origin) + direction @ (
        np.asarray(spacing) * np.asarray(size) * np.array([0.4, 0.55, 0.5])
    )
    inside = (((points - centre) / np.array([14.0, 10.0, 18.0])) ** 2).sum(-1) <= 1.0
    return template.with_array(np.where(inside, BRIGHT_HU, -1000.0).astype(np.int16))


def write_png(path: Path, array: np.ndarray) -> Path:
    """An 8-bit PNG of ``array`` (an image or mask of a 2D dataset); its folder is made as needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array.astype(np.uint8)), str(path))
    return path


# --- geometry the pipeline never needs, but tests use to build and check grids ---------------


def resampled_grid(
    image: Geometry, spacing: tuple[float, ...] | None = None, size: tuple[int, ...] | None = None
) -> Grid:
    """Grid covering the same field of view (outer voxel edges) with another spacing or size.

    These are the semantics of ``torch.nn.functional.interpolate(..., align_corners=False)``, so a
    tensor resized by torch can be put back on a physical grid. Give ``spacing`` or ``size`` (i, j, k).
    When ``spacing`` is given, the size is rounded and the spacing then adjusted to keep the field
    of view exact.
    """
    grid = grid_of(image)
    if (spacing is None) == (size is None):
        raise ValueError("give exactly one of spacing or size")
    old_spacing, old_size = np.asarray(grid.spacing), np.asarray(grid.size)
    if size is None:
        size = tuple(max(1, round(n)) for n in old_size * old_spacing / np.asarray(spacing, dtype=float))
    new_spacing = old_spacing * old_size / np.asarray(size, dtype=float)
    origin = np.asarray(grid.origin) + grid.direction @ ((new_spacing - old_spacing) / 2)
    return Grid(
        tuple(int(n) for n in size), tuple(new_spacing.tolist()), tuple(origin.tolist()), grid.direction
    )


def resample_to_grid(
    image: Image, grid: Geometry, *, interpolator: str = "linear", default: float = 0
) -> Image:
    """Resample onto any grid (any direction) with SimpleITK; ``"nearest"`` for label maps."""
    methods = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}
    if interpolator not in methods:
        raise ValueError(f"interpolator must be one of {sorted(methods)}, got {interpolator!r}")
    target = grid_of(grid)
    resampled = sitk.Resample(
        to_sitk(image),
        target.size,
        sitk.Transform(),
        methods[interpolator],
        target.origin,
        target.spacing,
        target.direction.ravel().tolist(),
        float(default),
    )
    return from_sitk(resampled)


def crop(image: Image, box: tuple[slice, ...]) -> Image:
    """Sub-image ``image.array[box]`` (slices in array order ``[k, j, i]``, step 1), voxels kept in place."""
    if len(box) != image.ndim:
        raise ValueError(f"crop box needs {image.ndim} slices, got {len(box)}")
    ranges = [
        piece.indices(length) for piece, length in zip(box, image.array.shape[: image.ndim], strict=True)
    ]
    if any(step != 1 for _, _, step in ranges):
        raise ValueError(f"crop box slices must have step 1, got {box}")
    start_ijk = [start for start, _, _ in ranges][::-1]
    cropped = image.array[tuple(slice(start, stop) for start, stop, _ in ranges)].copy()
    return Image(cropped, image.spacing, tuple(physical_point(image, start_ijk)), image.direction.copy())


DICOM_STUDY_UID = "1.2.826.0.1.3680043.2.1125.7"


def write_dicom_series(
    folder: Path, uid: str, slices: int = 4, description: str = "", prefix: str | None = None
) -> list[Path]:
    """``slices`` axial CT slices of one series as a scanner writes them, one file each: 4 x 5
    voxels of 0.8 mm, 2.5 mm apart from (10, -20, 100), slice k holding 10 k - 1000 HU. Files are
    named ``<prefix>-<k>.dcm`` (``prefix``: the UID's last number), so series can share a folder."""
    folder.mkdir(parents=True, exist_ok=True)
    prefix = prefix if prefix is not None else uid.rsplit(".", 1)[-1]
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    paths = []
    for k in range(slices):
        plane = sitk.GetImageFromArray(np.full((4, 5), k * 10 - 1000, np.int16))
        plane.SetSpacing((0.8, 0.8))
        tags = {
            "0008|0060": "CT",
            "0008|103e": description,
            "0020|000d": DICOM_STUDY_UID,
            "0020|000e": uid,
            "0008|0018": f"{uid}.{k + 1}",
            "0020|0013": str(k + 1),
            "0020|0032": f"10\\-20\\{100 + 2.5 * k}",
            "0020|0037": "1\\0\\0\\0\\1\\0",
        }
        for tag, value in tags.items():
            plane.SetMetaData(tag, value)
        paths.append(folder / f"{prefix}-{k:02d}.dcm")
        writer.SetFileName(str(paths[-1]))
        writer.Execute(plane)
    return paths
