"""model.json <-> ``ModelBundle``, and loading a bundle folder (checksum verified).

A bundle (see docs/MODEL_BUNDLE.md) is the contract between Training and every front end. It is
validated completely on load, with messages that name the file and the field at fault, so that a
broken or hand-edited bundle fails with an actionable sentence instead of a wrong segmentation.
Weights are only ever safetensors (a pickle from a stranger runs code); their header is checked
to describe the file exactly and their sha256 against model.json before a single tensor is read.
Every field has bounds, so no model.json, however hostile, gets further than a ``BundleError``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from LungLiverSegLib.bundle.json_fields import JsonFields
from LungLiverSegLib.bundle.safetensors_header import read_header
from LungLiverSegLib.bundle.spec import (
    AXIS_LETTER_PAIRS,
    INTENSITY_TYPES,
    MAX_BATCH_SIZE,
    MAX_IN_CHANNELS,
    MAX_JSON_DEPTH,
    MAX_LABEL_VALUE,
    MAX_PATCH_SIZE,
    MAX_RESIZE,
    MODALITIES,
    MODEL_JSON,
    MODEL_JSON_MAX_BYTES,
    NAME_RULE,
    SCHEMA_VERSION,
    SEGMENT_NAME_RULE,
    SEMVER_RULE,
    SHA256_RULE,
    SUPPORTED_SCHEMA_VERSIONS,
    WEIGHTS_NAME_RULE,
    ArchitectureSpec,
    BodyCropSpec,
    DensityCheckSpec,
    HistogramRangeSpec,
    InferenceSpec,
    IntensitySpec,
    ModelBundle,
    PostprocessingSpec,
    PreprocessingSpec,
    check_architecture_name,
)
from LungLiverSegLib.errors import BundleError
from LungLiverSegLib.jsonio import read_json
from LungLiverSegLib.labels import ANATOMICAL_STRUCTURE, CodeTriple, LabelInfo, LabelMap

LABEL_KEY = re.compile(r"^[1-9][0-9]{0,2}$")
"""A label value as model.json writes it: ASCII digits, no sign or leading zero (``str.isdigit``
takes the superscript "²", which ``int`` refuses, and the full-width "1", which it reads as 1)."""

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
    resize = fields.sizes("resize_inplane", 2, maximum=MAX_RESIZE)
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
    return InferenceSpec(
        patch_size=fields.required_sizes(
            "patch_size", dims, maximum=MAX_PATCH_SIZE, why=f" for a {dims}D model"
        ),
        overlap=fields.number("overlap", minimum=0.0, below=1.0),
        batch_size=fields.integer("batch_size", minimum=1, maximum=MAX_BATCH_SIZE),
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
    low, high = (
        fields.required_numbers(key, bins, positive=False, why=" (one per bin)") for key in ("low", "high")
    )
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
        if not LABEL_KEY.match(key) or int(key) > MAX_LABEL_VALUE:
            fields.fail(
                key,
                f"label values must be integers 1..{MAX_LABEL_VALUE} in plain digits (0 is background "
                "and never listed; label maps are 8-bit)",
            )
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


def _field_path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def _check_nesting(data: object, source: str | Path) -> None:
    """Refuse a document nested deeper than ``MAX_JSON_DEPTH``, naming the field; iteratively, so
    that the check itself cannot run out of stack where printing or saving the document would."""
    pending: list[tuple[object, str, int]] = [(data, "", 0)]
    while pending:
        value, path, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            raise BundleError(f"{source}: {path}: nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(value, dict | list):
            items = value.items() if isinstance(value, dict) else enumerate(value)
            pending.extend((child, _field_path(path, key), depth + 1) for key, child in items)


def bundle_from_json(data: object, source: str | Path, *, with_weights: bool = True) -> ModelBundle:
    """Parse and validate a model.json document; ``source`` names it in error messages.

    ``with_weights=False`` reads a model without a ``weights`` section: a training config's
    bundle-to-be, whose weights do not exist yet. Its ``weights_sha256`` stays empty, which no
    file's checksum matches, so it cannot pass for a bundle with weights.
    """
    _check_nesting(data, source)
    top = JsonFields(data, source)
    top.schema_version(SUPPORTED_SCHEMA_VERSIONS)
    dims = top.choice("dims", (2, 3))
    labels = parse_labels(top.child("labels"))
    bundle = ModelBundle(
        name=top.text("name", NAME_RULE),
        version=top.text("version", SEMVER_RULE),
        title=top.text("title"),
        description=top.text("description", default=""),
        license=top.text("license"),
        modality=top.choice("modality", MODALITIES),
        dims=dims,
        in_channels=top.integer("in_channels", minimum=1, maximum=MAX_IN_CHANNELS),
        architecture=_parse_architecture(top.child("architecture")),
        preprocessing=_parse_preprocessing(top.child("preprocessing"), dims),
        inference=_parse_inference(top.child("inference"), dims),
        labels=labels,
        postprocessing=_parse_postprocessing(top.child("postprocessing"), labels),
        provenance=top.mapping("provenance"),
        validation=top.mapping("validation"),
    )
    if not with_weights:
        return bundle
    weights = top.child("weights")
    return replace(
        bundle,
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
    """Hex sha256 of a file, read in chunks (``hashlib.file_digest``), never whole into memory."""
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _checksum_error(bundle: ModelBundle, actual: str) -> BundleError:
    return BundleError(
        f"{bundle.stored_folder / MODEL_JSON}: weights.sha256: {bundle.weights_path} does not match "
        f"(expected {bundle.weights_sha256}, got {actual}); the file is corrupt or was altered, "
        "re-download or re-import the bundle"
    )


def read_model_json(path: str | Path) -> ModelBundle:
    """The validated model.json of the bundle in folder ``path`` (or ``path`` = its model.json),
    its weights not looked at: what an import reads to know which files belong to the bundle."""
    path = Path(path)
    json_path = path / MODEL_JSON if path.is_dir() else path
    if not json_path.is_file():
        raise BundleError(f"{path}: not a model bundle (no {MODEL_JSON} found)")
    data = read_json(json_path, BundleError, MODEL_JSON, max_bytes=MODEL_JSON_MAX_BYTES)
    return replace(bundle_from_json(data, json_path), folder=json_path.parent)


def load_bundle(path: str | Path, *, verify_checksum: bool = True) -> ModelBundle:
    """Load and validate the bundle in folder ``path`` (or ``path`` = its model.json): model.json,
    and the weights file's safetensors header (it must describe the file exactly; cheap, so even
    a listing finds a truncated or foreign file).

    ``verify_checksum=False`` skips hashing the weights, for cheap listings only: load_network
    always verifies them again before reading.
    """
    return check_weights(read_model_json(path), verify_checksum=verify_checksum)


def check_weights(bundle: ModelBundle, *, verify_checksum: bool = True) -> ModelBundle:
    """``load_bundle``'s second half, for a bundle whose model.json was just read: its weights file
    exists, its safetensors header describes the file, and (``verify_checksum``) its sha256."""
    json_path = bundle.stored_folder / MODEL_JSON
    if not bundle.weights_path.is_file():
        raise BundleError(f"{json_path}: weights.file: {bundle.weights_path} does not exist")
    read_header(bundle.weights_path)
    if verify_checksum:
        actual = sha256_of_file(bundle.weights_path)
        if actual != bundle.weights_sha256:
            raise _checksum_error(bundle, actual)
    return bundle
