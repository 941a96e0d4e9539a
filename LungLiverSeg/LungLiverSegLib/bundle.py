"""The model bundle: the only code that reads or writes ``model.json``, the weights and the model card.

A bundle (see docs/MODEL_BUNDLE.md) is the contract between Training and every front end. It is
validated completely on load, with messages that name the file and the field at fault, so that a
broken or hand-edited bundle fails with an actionable sentence instead of a wrong segmentation.
Weights are only ever safetensors (a pickle from a stranger runs code), and their sha256 is
checked against model.json before a single tensor is read.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save_file
from torch import nn

from .errors import BundleError
from .labels import ANATOMICAL_STRUCTURE, CodeTriple, LabelInfo, LabelMap
from .networks import ArchitectureSpec, build_network, check_architecture_name

__all__ = [
    "ArchitectureSpec",
    "BodyCropSpec",
    "DensityCheckSpec",
    "InferenceSpec",
    "IntensitySpec",
    "JsonFields",
    "ModelBundle",
    "PostprocessingSpec",
    "PreprocessingSpec",
    "TextRule",
    "bundle_from_json",
    "bundle_to_json",
    "load_bundle",
    "label_to_json",
    "load_network",
    "model_card",
    "move_into_place",
    "parse_labels",
    "save_bundle",
    "semver_key",
    "sha256_of_file",
]

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
MODEL_JSON = "model.json"
WEIGHTS_FILE = "model.safetensors"
MODEL_CARD = "README.md"


class TextRule(NamedTuple):
    """What a string field must look like, and how to say so in an error message."""

    pattern: re.Pattern[str]
    expected: str


NAME_RULE = TextRule(re.compile(r"^[a-z0-9-]+$"), "lower-case letters, digits and '-' (like lungs-ct-3d)")
SEMVER_RULE = TextRule(
    re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"),
    "a semantic version like 1.2.0",
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
HASH_CHUNK_BYTES = 1 << 20
MAX_KEYS_IN_MESSAGE = 5


@dataclass(frozen=True)
class IntensitySpec:
    """How intensities are normalised: ``window`` clips to [min, max] and scales to [0, 1];
    ``zscore`` and ``minmax`` are per image and have no min/max."""

    type: str
    min: float | None = None
    max: float | None = None


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
    def weights_path(self) -> Path:
        """The weights file of a bundle that lives in a folder."""
        if self.folder is None:
            raise BundleError(f"model {self.name!r} has no folder: save it with save_bundle first")
        return self.folder / self.weights_file

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


# --------------------------------------------------------------------------------------------
# Reading JSON with errors that name the field
# --------------------------------------------------------------------------------------------

_MISSING = object()


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class JsonFields:
    """Typed access to one JSON object; every error names the source file and the dotted field."""

    def __init__(self, data: object, source: str | Path, path: str = "") -> None:
        self.source = str(source)
        self.path = path
        if not isinstance(data, dict):
            self.fail(None, f"expected a JSON object, got {type(data).__name__}")
        self.data: dict[str, Any] = data

    def field_name(self, key: str | None) -> str:
        """Dotted name of ``key`` inside this object (the object itself when ``key`` is None)."""
        if key is None:
            return self.path or "(top level)"
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str | None, message: str) -> NoReturn:
        raise BundleError(f"{self.source}: {self.field_name(key)}: {message}")

    def get(self, key: str, default: object = _MISSING) -> Any:
        """The raw value of ``key``; a missing key is an error unless a default is given."""
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            self.fail(key, "missing")
        return default

    def child(self, key: str) -> JsonFields:
        """The object at ``key``."""
        return JsonFields(self.get(key), self.source, self.field_name(key))

    def optional_child(self, key: str) -> JsonFields | None:
        """The object at ``key``, or None when the key is absent or null."""
        return None if self.get(key, None) is None else self.child(key)

    def mapping(self, key: str) -> dict[str, Any]:
        """A free-form object (provenance, validation); absent means empty."""
        value = self.get(key, {})
        if not isinstance(value, dict):
            self.fail(key, f"expected a JSON object, got {type(value).__name__}")
        return value

    def text(self, key: str, rule: TextRule | None = None, *, default: object = _MISSING) -> str:
        value = self.get(key, default)
        if not isinstance(value, str):
            self.fail(key, f"expected a string, got {value!r}")
        if rule is not None and not rule.pattern.match(value):
            self.fail(key, f"expected {rule.expected}, got {value!r}")
        return value

    def schema_version(self, supported: tuple[int, ...]) -> int:
        """The document's schema_version; a newer one means this LungLiverSeg is too old to read it."""
        value = self.get("schema_version")
        if not _is_int(value) or value not in supported:
            readable = ", ".join(map(str, supported))
            self.fail("schema_version", f"{value!r} is not supported (this LungLiverSeg reads {readable})")
        return value

    def choice(self, key: str, choices: tuple[object, ...]) -> Any:
        value = self.get(key)
        if value not in choices or isinstance(value, bool):
            self.fail(key, f"expected one of {', '.join(map(repr, choices))}; got {value!r}")
        return value

    def number(self, key: str, *, minimum: float | None = None, below: float | None = None) -> float:
        """A finite number in [minimum, below)."""
        value = self.get(key)
        if not _is_number(value):
            self.fail(key, f"expected a number, got {value!r}")
        if minimum is not None and value < minimum:
            self.fail(key, f"expected a number >= {minimum}, got {value!r}")
        if below is not None and value >= below:
            self.fail(key, f"expected a number below {below}, got {value!r}")
        return float(value)

    def optional_number(self, key: str) -> float | None:
        """A non-negative number, or None when null or absent."""
        return None if self.get(key, None) is None else self.number(key, minimum=0.0)

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.get(key)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.fail(key, f"expected a list of strings, got {value!r}")
        return tuple(value)

    def integer(self, key: str, *, minimum: int) -> int:
        value = self.get(key)
        if not _is_int(value) or value < minimum:
            self.fail(key, f"expected an integer >= {minimum}, got {value!r}")
        return value

    def numbers(
        self, key: str, length: int, *, integers: bool = False, positive: bool = True, why: str = ""
    ) -> tuple[Any, ...] | None:
        """A list of ``length`` numbers (or integers), positive unless told otherwise, or None when
        null or absent."""
        value = self.get(key, None)
        if value is None:
            return None
        kind = "integers" if integers else "numbers"
        if not isinstance(value, list) or len(value) != length:
            count = len(value) if isinstance(value, list) else repr(value)
            self.fail(key, f"expected {length} {kind}{why}, got {count}")
        valid = _is_int if integers else _is_number
        if not all(valid(item) and (item > 0 or not positive) for item in value):
            self.fail(key, f"expected {'positive ' if positive else ''}{kind}, got {value!r}")
        return tuple(int(item) if integers else float(item) for item in value)

    def label_values(self, key: str, known: LabelMap) -> tuple[int, ...]:
        """A list of label values that all exist in ``known``."""
        value = self.get(key, [])
        if not isinstance(value, list) or not all(_is_int(item) for item in value):
            self.fail(key, f"expected a list of label values, got {value!r}")
        for item in value:
            if item not in known:
                self.fail(key, f"label {item} is not in labels ({sorted(known)})")
        return tuple(value)


# --------------------------------------------------------------------------------------------
# model.json -> ModelBundle
# --------------------------------------------------------------------------------------------


def _axis_of(letter: str) -> str:
    """The letter pair ("LR", "PA" or "IS") an axis code letter belongs to, or "" for none."""
    return next((pair for pair in AXIS_LETTER_PAIRS if letter in pair), "")


def _parse_orientation(fields: JsonFields) -> str | None:
    value = fields.get("orientation", None)
    if value is None:
        return None
    if not isinstance(value, str) or sorted(_axis_of(letter) for letter in value) != sorted(
        AXIS_LETTER_PAIRS
    ):
        fields.fail(
            "orientation", f"expected axis codes like 'RAS' (one of L/R, P/A, I/S each), got {value!r}"
        )
    return value


def _parse_intensity(fields: JsonFields) -> IntensitySpec:
    kind = fields.choice("type", INTENSITY_TYPES)
    if kind != "window":
        return IntensitySpec(kind)
    lowest, highest = fields.number("min"), fields.number("max")
    if lowest >= highest:
        fields.fail("max", f"must be greater than min ({lowest}), got {highest}")
    return IntensitySpec(kind, lowest, highest)


def _parse_body_crop(fields: JsonFields | None) -> BodyCropSpec | None:
    if fields is None:
        return None
    return BodyCropSpec(
        threshold=fields.number("threshold"), margin_mm=fields.number("margin_mm", minimum=0.0)
    )


def _parse_preprocessing(fields: JsonFields, dims: int) -> PreprocessingSpec:
    resize = fields.numbers("resize_inplane", 2, integers=True)
    if resize is not None and dims != 2:
        fields.fail("resize_inplane", "only 2D models resize slices; use null for a 3D model")
    return PreprocessingSpec(
        orientation=_parse_orientation(fields),
        spacing=fields.numbers("spacing", dims, why=f" for a {dims}D model"),
        intensity=_parse_intensity(fields.child("intensity")),
        resize_inplane=resize,
        body_crop=_parse_body_crop(fields.optional_child("body_crop")),
    )


def _parse_inference(fields: JsonFields, dims: int) -> InferenceSpec:
    patch_size = fields.numbers("patch_size", dims, integers=True, why=f" for a {dims}D model")
    if patch_size is None:
        fields.fail("patch_size", "missing")
    return InferenceSpec(
        patch_size=patch_size,
        overlap=fields.number("overlap", minimum=0.0, below=1.0),
        batch_size=fields.integer("batch_size", minimum=1),
        unsure_ratio_limit=fields.optional_number("unsure_ratio_limit"),
        input_histogram=_parse_histogram_range(fields.optional_child("input_histogram")),
    )


def _parse_histogram_range(fields: JsonFields | None) -> HistogramRangeSpec | None:
    if fields is None:
        return None
    low = fields.get("low")
    bins = len(low) if isinstance(low, list) else 0
    if bins < 2:
        fields.fail("low", f"expected a list of at least 2 fractions, got {low!r}")
    low, high = (fields.numbers(key, bins, positive=False, why=" (one per bin)") for key in ("low", "high"))
    if not all(0.0 <= a <= b <= 1.0 for a, b in zip(low, high, strict=True)):
        fields.fail(None, f"expected 0 <= low <= high <= 1 in every bin, got low {low}, high {high}")
    return HistogramRangeSpec(low, high)


def _parse_code(fields: JsonFields, key: str) -> CodeTriple | None:
    value = fields.get(key, None)
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(isinstance(part, str) and part for part in value)
    ):
        fields.fail(key, f"expected [scheme, code, meaning] (3 non-empty strings), got {value!r}")
    return (value[0], value[1], value[2])


def _parse_color(fields: JsonFields) -> tuple[float, float, float]:
    color = fields.numbers("color", 3, positive=False, why=" (RGB)")
    if color is None or not all(0.0 <= part <= 1.0 for part in color):
        fields.fail("color", f"expected 3 numbers in 0..1 (RGB), got {fields.get('color', None)!r}")
    return (color[0], color[1], color[2])


def _parse_label(fields: JsonFields, value: int) -> LabelInfo:
    name = fields.text("name", SEGMENT_NAME_RULE)
    color = _parse_color(fields)
    terminology = fields.optional_child("terminology")
    if terminology is None:
        return LabelInfo(value=value, name=name, color=color)
    return LabelInfo(
        value=value,
        name=name,
        color=color,
        category=_parse_code(terminology, "category") or ANATOMICAL_STRUCTURE,
        type=_parse_code(terminology, "type"),
        modifier=_parse_code(terminology, "modifier"),
    )


def parse_labels(fields: JsonFields) -> LabelMap:
    if not fields.data:
        fields.fail(None, "expected at least one label")
    labels: LabelMap = {}
    for key in fields.data:
        if not key.isdigit() or int(key) < 1:
            fields.fail(key, "label values must be positive integers (0 is background and never listed)")
        labels[int(key)] = _parse_label(fields.child(key), int(key))
    names = [label.name for label in labels.values()]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        fields.fail(None, f"segment names must be unique; repeated: {', '.join(duplicates)}")
    return dict(sorted(labels.items()))


def _parse_postprocessing(fields: JsonFields, labels: LabelMap) -> PostprocessingSpec:
    check = fields.optional_child("density_check")
    return PostprocessingSpec(
        largest_component=fields.label_values("largest_component", labels),
        fill_holes=fields.label_values("fill_holes", labels),
        min_volume_ml=fields.number("min_volume_ml", minimum=0.0),
        density_check=None if check is None else _parse_density_check(check, labels),
    )


def _parse_density_check(fields: JsonFields, labels: LabelMap) -> DensityCheckSpec:
    return DensityCheckSpec(
        labels=fields.label_values("labels", labels),
        below_ml=fields.number("below_ml", minimum=0.0),
        max_mean=fields.number("max_mean"),
        air_below=fields.number("air_below"),
        max_air_fraction=fields.number("max_air_fraction", minimum=0.0, below=1.0 + 1e-9),
    )


def _parse_architecture(fields: JsonFields) -> ArchitectureSpec:
    name = fields.text("name")
    try:
        check_architecture_name(name)
    except BundleError as error:
        raise BundleError(f"{fields.source}: {error}") from error
    return ArchitectureSpec(name=name, params=fields.mapping("params"))


def bundle_from_json(data: object, source: str | Path) -> ModelBundle:
    """Parse and validate a model.json document; ``source`` names it in error messages."""
    top = JsonFields(data, source)
    top.schema_version(SUPPORTED_SCHEMA_VERSIONS)
    dims = top.choice("dims", (2, 3))
    labels = parse_labels(top.child("labels"))
    weights = top.child("weights")
    return ModelBundle(
        name=top.text("name", NAME_RULE),
        version=top.text("version", SEMVER_RULE),
        title=top.text("title"),
        description=top.text("description", default=""),
        license=top.text("license"),
        modality=top.choice("modality", MODALITIES),
        dims=dims,
        in_channels=top.integer("in_channels", minimum=1),
        architecture=_parse_architecture(top.child("architecture")),
        preprocessing=_parse_preprocessing(top.child("preprocessing"), dims),
        inference=_parse_inference(top.child("inference"), dims),
        labels=labels,
        postprocessing=_parse_postprocessing(top.child("postprocessing"), labels),
        provenance=top.mapping("provenance"),
        validation=top.mapping("validation"),
        weights_file=weights.text("file", WEIGHTS_NAME_RULE),
        weights_sha256=weights.text("sha256", SHA256_RULE),
    )


# --------------------------------------------------------------------------------------------
# ModelBundle -> model.json
# --------------------------------------------------------------------------------------------


def _optional_list(values: tuple[Any, ...] | None) -> list[Any] | None:
    return None if values is None else list(values)


def _intensity_to_json(intensity: IntensitySpec) -> dict[str, Any]:
    if intensity.type != "window":
        return {"type": intensity.type}
    return {"type": intensity.type, "min": intensity.min, "max": intensity.max}


def label_to_json(label: LabelInfo) -> dict[str, Any]:
    return {
        "name": label.name,
        "color": list(label.color),
        "terminology": {
            "category": list(label.category),
            "type": _optional_list(label.type),
            "modifier": _optional_list(label.modifier),
        },
    }


def _preprocessing_to_json(preprocessing: PreprocessingSpec) -> dict[str, Any]:
    crop = preprocessing.body_crop
    return {
        "orientation": preprocessing.orientation,
        "spacing": _optional_list(preprocessing.spacing),
        "resize_inplane": _optional_list(preprocessing.resize_inplane),
        "intensity": _intensity_to_json(preprocessing.intensity),
        "body_crop": None if crop is None else {"threshold": crop.threshold, "margin_mm": crop.margin_mm},
    }


def _density_check_to_json(check: DensityCheckSpec | None) -> dict[str, Any] | None:
    if check is None:
        return None
    return {
        "labels": list(check.labels),
        "below_ml": check.below_ml,
        "max_mean": check.max_mean,
        "air_below": check.air_below,
        "max_air_fraction": check.max_air_fraction,
    }


def bundle_to_json(bundle: ModelBundle) -> dict[str, Any]:
    """The model.json document of ``bundle`` (``folder`` is not part of it)."""
    inference, post = bundle.inference, bundle.postprocessing
    return {
        "schema_version": SCHEMA_VERSION,
        "name": bundle.name,
        "version": bundle.version,
        "title": bundle.title,
        "description": bundle.description,
        "license": bundle.license,
        "modality": bundle.modality,
        "dims": bundle.dims,
        "in_channels": bundle.in_channels,
        "architecture": {"name": bundle.architecture.name, "params": dict(bundle.architecture.params)},
        "preprocessing": _preprocessing_to_json(bundle.preprocessing),
        "inference": {
            "patch_size": list(inference.patch_size),
            "overlap": inference.overlap,
            "batch_size": inference.batch_size,
            "unsure_ratio_limit": inference.unsure_ratio_limit,
            "input_histogram": None
            if inference.input_histogram is None
            else {"low": list(inference.input_histogram.low), "high": list(inference.input_histogram.high)},
        },
        "labels": {str(value): label_to_json(label) for value, label in sorted(bundle.labels.items())},
        "postprocessing": {
            "largest_component": list(post.largest_component),
            "fill_holes": list(post.fill_holes),
            "min_volume_ml": post.min_volume_ml,
            "density_check": _density_check_to_json(post.density_check),
        },
        "provenance": dict(bundle.provenance),
        "validation": dict(bundle.validation),
        "weights": {"file": bundle.weights_file, "sha256": bundle.weights_sha256},
    }


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def sha256_of_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so large weights never sit in memory twice."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _checksum_error(bundle: ModelBundle, actual: str) -> BundleError:
    return BundleError(
        f"{bundle.folder / MODEL_JSON}: weights.sha256: {bundle.weights_path} does not match "
        f"(expected {bundle.weights_sha256}, got {actual}); the file is corrupt or was altered, "
        "re-download or re-import the bundle"
    )


def _read_model_json(json_path: Path) -> object:
    try:
        return json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(f"{json_path}: cannot read model.json: {error}") from error


def load_bundle(path: str | Path, *, verify_checksum: bool = True) -> ModelBundle:
    """Load and validate the bundle in folder ``path`` (or ``path`` = its model.json).

    ``verify_checksum=False`` skips hashing the weights, for cheap listings only: load_network
    always verifies them again before reading.
    """
    path = Path(path)
    json_path = path / MODEL_JSON if path.is_dir() else path
    if not json_path.is_file():
        raise BundleError(f"{path}: not a model bundle (no {MODEL_JSON} found)")
    bundle = replace(bundle_from_json(_read_model_json(json_path), json_path), folder=json_path.parent)
    if not bundle.weights_path.is_file():
        raise BundleError(f"{json_path}: weights.file: {bundle.weights_path} does not exist")
    if verify_checksum:
        actual = sha256_of_file(bundle.weights_path)
        if actual != bundle.weights_sha256:
            raise _checksum_error(bundle, actual)
    return bundle


def _key_list(keys: set[str]) -> str:
    shown = sorted(keys)[:MAX_KEYS_IN_MESSAGE]
    more = len(keys) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def _check_state_dict(network: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Fail, naming the keys, unless ``state_dict`` fits ``network`` exactly."""
    expected = network.state_dict()
    missing, unexpected = set(expected) - set(state_dict), set(state_dict) - set(expected)
    if missing:
        raise BundleError(
            f"{source}: weights lack {len(missing)} tensors of the network: {_key_list(missing)}"
        )
    if unexpected:
        raise BundleError(
            f"{source}: weights have {len(unexpected)} tensors the network lacks: {_key_list(unexpected)}"
        )
    wrong_shapes = {
        f"{key} {tuple(state_dict[key].shape)} != {tuple(tensor.shape)}"
        for key, tensor in expected.items()
        if state_dict[key].shape != tensor.shape
    }
    if wrong_shapes:
        raise BundleError(f"{source}: weight shapes do not fit the network: {_key_list(wrong_shapes)}")


def _build_bundle_network(bundle: ModelBundle, source: str) -> nn.Module:
    try:
        return build_network(bundle.architecture, bundle.dims, bundle.in_channels, bundle.out_channels)
    except BundleError as error:
        raise BundleError(f"{source}: {error}") from error


def load_network(bundle: ModelBundle, device: str | torch.device = "cpu") -> nn.Module:
    """Build the bundle's network and load its verified weights, in eval mode on ``device``.

    The weights are read once into memory, hashed, and parsed from those same bytes, so the
    file cannot change between the checksum and the parse.
    """
    source = str(bundle.weights_path)
    weights = bundle.weights_path.read_bytes()
    actual = hashlib.sha256(weights).hexdigest()
    if actual != bundle.weights_sha256:
        raise _checksum_error(bundle, actual)
    network = _build_bundle_network(bundle, source)
    try:
        state_dict = load_safetensors_bytes(weights)
    except SafetensorError as error:
        raise BundleError(f"{source}: not a valid safetensors file: {error}") from error
    _check_state_dict(network, state_dict, source)
    network.load_state_dict(state_dict, strict=True)
    return network.to(device).eval()


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------


def move_into_place(staging: Path, destination: Path, *, overwrite: bool) -> None:
    """Rename a finished ``staging`` folder to ``destination`` (same file system), so readers see
    either the old bundle or the complete new one, never a half-written folder."""
    if not destination.exists():
        staging.rename(destination)
        return
    if not overwrite:
        raise BundleError(f"{destination} already exists; use overwrite to replace it")
    backup = destination.with_name(f".{destination.name}.old-{uuid.uuid4().hex[:8]}")
    destination.rename(backup)
    try:
        staging.rename(destination)
    except OSError:
        backup.rename(destination)
        raise
    shutil.rmtree(backup)


def _markdown_table(rows: list[tuple[str, ...]]) -> list[str]:
    header, *body = rows
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in body]


def _metric_rows(validation: Mapping[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("metric", "segment", "value")]
    for metric, value in validation.items():
        per_segment = value if isinstance(value, dict) else {"": value}
        rows += [(metric, segment, str(score)) for segment, score in per_segment.items()]
    return rows


def _card_labels(bundle: ModelBundle) -> list[str]:
    rows = [("value", "segment", "SNOMED-CT type")]
    rows += [
        (str(value), label.name, " / ".join(label.type or ("-",))) for value, label in bundle.labels.items()
    ]
    return _markdown_table(rows)


def _card_preprocessing(bundle: ModelBundle) -> list[str]:
    pre, post = bundle.preprocessing, bundle.postprocessing
    return [
        f"- orientation: {pre.orientation or 'as stored'}",
        f"- spacing (mm): {_optional_list(pre.spacing) or 'as stored'}",
        f"- intensity: {_intensity_to_json(pre.intensity)}; body crop: {pre.body_crop or 'none'}",
        f"- patch {list(bundle.inference.patch_size)}, overlap {bundle.inference.overlap}; "
        f"warns above an unsure ratio of {bundle.inference.unsure_ratio_limit or 'the default'}"
        f"{' and on intensities unlike every training image' if bundle.inference.input_histogram else ''}",
        f"- post-processing: largest component {list(post.largest_component)}, "
        f"fill holes {list(post.fill_holes)}, minimum volume {post.min_volume_ml} ml; "
        f"density check: {post.density_check or 'none'}",
    ]


def model_card(bundle: ModelBundle) -> str:
    """A README.md generated from the bundle's fields, for bundles written without a hand-made card."""
    provenance = [f"- {key}: {value}" for key, value in bundle.provenance.items()] or ["- not recorded"]
    metrics = _markdown_table(_metric_rows(bundle.validation)) if bundle.validation else ["Not validated."]
    lines = [
        f"# {bundle.title}",
        "",
        f"`{bundle.name}` version {bundle.version}. Licence: {bundle.license}.",
        "",
        bundle.description,
        "",
        "## Intended use",
        "",
        f"Research segmentation of {bundle.modality} images ({bundle.dims}D network, "
        f"{bundle.in_channels} input channel(s)). Not a medical device: review every result.",
        "",
        "## Labels",
        "",
        *_card_labels(bundle),
        "",
        "## Preprocessing and post-processing",
        "",
        *_card_preprocessing(bundle),
        "",
        "## Provenance",
        "",
        *provenance,
        "",
        "## Validation",
        "",
        *metrics,
        "",
        "## Limits",
        "",
        f"Validated only on the data named above. Images from other scanners, protocols, modalities than "
        f"{bundle.modality}, or with pathology unlike the training data may be segmented wrongly.",
        "",
    ]
    return "\n".join(lines)


def _write_bundle_files(
    staging: Path,
    bundle: ModelBundle,
    state_dict: Mapping[str, torch.Tensor],
    card_markdown: str | None,
    source: str,
) -> None:
    """Write weights, then the validated model.json that records their checksum, then the card."""
    tensors = {key: tensor.detach().cpu().contiguous() for key, tensor in state_dict.items()}
    weights_path = staging / WEIGHTS_FILE
    save_file(tensors, str(weights_path))
    saved = replace(
        bundle, weights_file=WEIGHTS_FILE, weights_sha256=sha256_of_file(weights_path), folder=None
    )
    document = bundle_to_json(saved)
    bundle_from_json(document, source)
    (staging / MODEL_JSON).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    (staging / MODEL_CARD).write_text(card_markdown or model_card(saved), encoding="utf-8")


def save_bundle(
    folder: str | Path,
    bundle: ModelBundle,
    state_dict: Mapping[str, torch.Tensor],
    card_markdown: str | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``bundle`` with weights ``state_dict`` as the folder ``folder``, atomically.

    The state dict is checked against the network the bundle describes before anything is
    written, so Training cannot produce a bundle that fails to load. Returns ``folder``.
    """
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise BundleError(f"{folder} already exists; use overwrite to replace it")
    source = str(folder / MODEL_JSON)
    _check_state_dict(_build_bundle_network(bundle, source), state_dict, source)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        _write_bundle_files(staging, bundle, state_dict, card_markdown, source)
        move_into_place(staging, folder, overwrite=overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
