"""What a model bundle is: the dataclasses of model.json and the rules for its text fields.

No torch here: the catalogue, the front ends and the Slicer module read bundles before (or
without) any network being built.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from LungLiverSegLib.errors import BundleError
from LungLiverSegLib.labels import LabelMap

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
MODEL_JSON = "model.json"
WEIGHTS_FILE = "model.safetensors"
MODEL_CARD = "README.md"


class TextRule(NamedTuple):
    """What a string field must look like, and how to say so in an error message."""

    pattern: re.Pattern[str]
    expected: str


# Names and versions become folder names (<name>-v<version>): at most 64 characters each.
NAME_RULE = TextRule(
    re.compile(r"^[a-z0-9-]{1,64}$"), "up to 64 lower-case letters, digits and '-' (like lungs-ct-3d)"
)
SEMVER_RULE = TextRule(
    re.compile(r"^(?=.{1,64}$)(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"),
    "a semantic version like 1.2.0 (at most 64 characters)",
)
SHA256_RULE = TextRule(re.compile(r"^[0-9a-f]{64}$"), "64 lower-case hexadecimal digits")
# A plain file name inside the bundle folder: no separators, no "..", so it cannot point elsewhere.
WEIGHTS_NAME_RULE = TextRule(
    re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*\.safetensors$"),
    "a .safetensors file name in the bundle folder",
)
SEGMENT_NAME_RULE = TextRule(re.compile(r"\S"), "a non-empty segment name")
MODALITIES = ("CT", "CXR", "MR")
INTENSITY_TYPES = ("window", "zscore", "minmax")
AXIS_LETTER_PAIRS = ("LR", "PA", "IS")
MAX_KEYS_IN_MESSAGE = 5


def listed(names: Iterable[str]) -> str:
    """Sorted ``names`` for a one-line message: the first few, and how many more."""
    ordered = sorted(names)
    shown = ordered[:MAX_KEYS_IN_MESSAGE]
    more = len(ordered) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


MAX_LABEL_VALUE = 255
"""Label maps are uint8 all the way: the network's argmax (``segmentation.preprocess``), the label
image written or put in the Slicer scene, and the datasets Training reads (``dataset.export``). A
larger value would wrap around, so model.json may not name one."""
MAX_IN_CHANNELS = 16
MAX_PATCH_SIZE = 1024
MAX_BATCH_SIZE = 1024
MAX_RESIZE = 8192
"""Far above any real model, low enough that no field of model.json can ask for an allocation
that fails (or takes the machine down) before the network has even run."""
MAX_JSON_DEPTH = 32
"""model.json's deepest field (a layer's arguments, a label's codes) is 5 levels down; the free-form
``provenance`` and ``validation`` get room to spare, but no nesting that recursion chokes on."""
MODEL_JSON_MAX_BYTES = 1 << 20
MODEL_CARD_MAX_BYTES = 1 << 20
WEIGHTS_MAX_BYTES = 4 << 30


@dataclass(frozen=True)
class IntensitySpec:
    """How intensities are normalised: ``window`` clips to [min, max] and scales to [0, 1];
    ``zscore`` and ``minmax`` are per image and have no min/max."""

    type: str
    min: float | None = None
    max: float | None = None

    @property
    def window(self) -> tuple[float, float]:
        """``(min, max)`` of a ``window`` normalisation."""
        if self.min is None or self.max is None:
            raise BundleError(f"intensity {self.type!r}: a window needs min and max")
        return self.min, self.max


@dataclass(frozen=True)
class BodyCropSpec:
    """Crop to the bounding box of voxels above ``threshold`` (HU), grown by ``margin_mm``."""

    threshold: float
    margin_mm: float


@dataclass(frozen=True)
class PreprocessingSpec:
    """What the image must look like when it reaches the network, exactly as in training."""

    orientation: str | None
    spacing: tuple[float, ...] | None
    intensity: IntensitySpec
    resize_inplane: tuple[int, int] | None = None
    body_crop: BodyCropSpec | None = None


@dataclass(frozen=True)
class HistogramRangeSpec:
    """The training images' intensity fingerprint: per bin of the network input's histogram
    (``transforms.intensity_histogram``), the lowest and highest fraction of voxels any training
    image had there. An input far outside this box is unlike every training image."""

    low: tuple[float, ...]
    high: tuple[float, ...]


@dataclass(frozen=True)
class InferenceSpec:
    """Sliding-window (3D) or slice-batch (2D) settings."""

    patch_size: tuple[int, ...]
    overlap: float
    batch_size: int
    unsure_ratio_limit: float | None = None
    """Above this ``inference.unsure_ratio`` a result comes with a warning; training sets it to
    twice the 95th percentile over the validation images. None: the core's default."""
    input_histogram: HistogramRangeSpec | None = None
    """Training sets it; None: no intensity fingerprint check."""


@dataclass(frozen=True)
class DensityCheckSpec:
    """Small components of an aerated organ must look aerated (see ``postprocess.density_check``).

    A component of ``labels`` smaller than ``below_ml`` is dropped when its mean intensity is
    above ``max_mean`` (soft tissue, not lung) or when more than ``max_air_fraction`` of it is
    below ``air_below`` (pure gas, as in bowel or stomach, where lung has vessels and walls).
    """

    labels: tuple[int, ...]
    below_ml: float
    max_mean: float
    air_below: float
    max_air_fraction: float


@dataclass(frozen=True)
class PostprocessingSpec:
    """Clean-up applied to the label map; label values refer to the bundle's labels."""

    largest_component: tuple[int, ...] = ()
    fill_holes: tuple[int, ...] = ()
    min_volume_ml: float = 0.0
    density_check: DensityCheckSpec | None = None


@dataclass(frozen=True)
class ModelBundle:
    """Everything in model.json, plus ``folder``: where the bundle was loaded from (None in memory)."""

    name: str
    version: str
    title: str
    description: str
    license: str
    modality: str
    dims: int
    in_channels: int
    architecture: ArchitectureSpec
    preprocessing: PreprocessingSpec
    inference: InferenceSpec
    labels: LabelMap
    postprocessing: PostprocessingSpec
    provenance: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    weights_file: str = WEIGHTS_FILE
    weights_sha256: str = ""
    folder: Path | None = None

    @property
    def out_channels(self) -> int:
        """Network output channels: background plus one per label value up to the largest."""
        return max(self.labels) + 1

    @property
    def stored_folder(self) -> Path:
        """The folder of a bundle that lives in one (loaded or saved)."""
        if self.folder is None:
            raise BundleError(f"model {self.name!r} has no folder: save it with save_bundle first")
        return self.folder

    @property
    def weights_path(self) -> Path:
        """The weights file of a bundle that lives in a folder."""
        return self.stored_folder / self.weights_file

    @property
    def segment_names(self) -> tuple[str, ...]:
        """Segment names in label-value order."""
        return tuple(self.labels[value].name for value in sorted(self.labels))


def semver_key(version: str) -> tuple[int, int, int, int, str]:
    """Sort key for semver strings: numeric parts, and a pre-release sorts before its release."""
    match = SEMVER_RULE.pattern.match(version)
    if match is None:
        raise BundleError(f"version: {version!r} is not a semantic version like 1.2.0")
    major, minor, patch, prerelease = match.groups()
    return int(major), int(minor), int(patch), int(prerelease is None), prerelease or ""


ARCHITECTURE_NAMES = ("UNet", "BasicUNet")
"""Architectures ``bundle.networks.build_network`` can construct (it checks it has one class each)."""


@dataclass(frozen=True)
class ArchitectureSpec:
    """Which network class (``name``) and the keyword arguments of its constructor (``params``)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


def check_architecture_name(name: str) -> None:
    """Raise ``BundleError`` naming ``architecture.name`` unless ``name`` can be built."""
    if name not in ARCHITECTURE_NAMES:
        known = ", ".join(sorted(ARCHITECTURE_NAMES))
        raise BundleError(f"architecture.name: unknown architecture {name!r}; known: {known}")
