"""What tests build: tiny model bundles with random weights, and paths of the real data.

One place for both, so that no test imports another test module or conftest.
"""

from __future__ import annotations

from pathlib import Path

import pytest
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
from LungLiverSegLib.labels import LabelInfo

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def require_file(path: Path) -> Path:
    """Skip the calling test with a clear reason when one real-data file is missing."""
    if not path.exists():
        pytest.skip(f"real data file missing: {path}")
    return path


LUNG_TYPE = ("SCT", "39607008", "Lung")
RIGHT = ("SCT", "24028007", "Right")


def make_bundle(dims: int = 3, name: str = "tiny-lungs", version: str = "1.0.0") -> ModelBundle:
    """A valid in-memory bundle with a tiny UNet (two labels, so out_channels is 3)."""
    return ModelBundle(
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
            input_histogram=HistogramRangeSpec((0.0, 0.5), (0.5, 1.0)),
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


def random_state_dict(bundle: ModelBundle, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    network = build_network(bundle.architecture, bundle.dims, bundle.in_channels, bundle.out_channels)
    return network.state_dict()


def save_tiny_bundle(folder: Path, bundle: ModelBundle | None = None) -> Path:
    bundle = bundle or make_bundle()
    return save_bundle(folder, bundle, random_state_dict(bundle))
