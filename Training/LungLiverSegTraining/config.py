"""Training configurations: named presets and JSON files with the same fields.

A config holds the bundle's own sections (architecture, preprocessing, inference, labels,
postprocessing) in exactly their model.json form, so ``bundle_template`` can let the core's
``bundle_from_json`` validate them: a config that trains is a config whose bundle loads. The
remaining fields are training hyper-parameters, which never reach the bundle except as provenance.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from LungLiverSegLib import labels
from LungLiverSegLib.bundle.model_json import bundle_from_json
from LungLiverSegLib.bundle.spec import ModelBundle
from LungLiverSegLib.errors import BundleError

from LungLiverSegTraining.errors import TrainingConfigError

PLACEHOLDER_SHA256 = "0" * 64
LUNG, LIVER, RIGHT, LEFT = (list(code) for code in (labels.LUNG, labels.LIVER, labels.RIGHT, labels.LEFT))


def label_entry(name: str, color: list[float], code: list[str], modifier: list[str] | None = None) -> dict:
    """One ``labels`` entry in model.json form."""
    category = list(labels.ANATOMICAL_STRUCTURE)
    return {
        "name": name,
        "color": color,
        "terminology": {"category": category, "type": code, "modifier": modifier},
    }


@dataclass
class TrainingConfig:
    """Bundle sections (model.json form) plus training hyper-parameters; see docs/TRAINING.md."""

    name: str
    title: str
    modality: str
    dims: int
    architecture: dict[str, Any]
    preprocessing: dict[str, Any]
    inference: dict[str, Any]
    labels: dict[str, dict[str, Any]]
    postprocessing: dict[str, Any]
    version: str = "0.1.0"
    description: str = ""
    license: str = "see the model card"
    in_channels: int = 1
    label_sources: dict[str, list[str]] = field(default_factory=dict)
    masks_folder: str = "masks"
    card_notes: str = ""
    data_card: str = ""
    """Markdown on the training data (``--data-card``): the card's "Data, licence" section."""
    epochs: int = 100
    batch_size: int = 2
    samples_per_case: int = 2
    foreground_ratio: float = 0.67
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    warmup_epochs: int = 2
    validate_every: int = 5
    val_fraction: float = 0.2
    seed: int = 0
    num_workers: int = 0
    flip_axes: list[int] = field(default_factory=list)
    rotate90_prob: float = 0.0
    affine_prob: float = 0.0
    rotate_deg: float = 10.0
    scale_fraction: float = 0.1
    intensity_scale: float = 0.1
    intensity_shift: float = 0.1
    average_last_epochs: int = 0

    @property
    def patch_size_kji(self) -> tuple[int, ...]:
        """Training/inference patch in array order (the bundle stores it as (i, j[, k]))."""
        return tuple(int(n) for n in self.inference["patch_size"][::-1])

    @property
    def label_names(self) -> dict[int, str]:
        """Output label value -> segment name."""
        return {int(value): entry["name"] for value, entry in self.labels.items()}

    def bundle_template(self, source: str = "training config") -> ModelBundle:
        """The bundle this config trains (no weights yet), validated by the core's own parser."""
        document = {
            "schema_version": 1,
            **{
                key: getattr(self, key)
                for key in (
                    "name",
                    "version",
                    "title",
                    "description",
                    "license",
                    "modality",
                    "dims",
                    "in_channels",
                    "architecture",
                    "preprocessing",
                    "inference",
                    "labels",
                    "postprocessing",
                )
            },
            "weights": {"file": "model.safetensors", "sha256": PLACEHOLDER_SHA256},
        }
        try:
            return bundle_from_json(document, source)
        except BundleError as error:
            raise TrainingConfigError(str(error)) from error

    def validate(self, source: str = "training config") -> TrainingConfig:
        """Check the bundle sections and the hyper-parameters; return self for chaining."""
        self.bundle_template(source)
        _check_positive(self, source, "epochs", "batch_size", "samples_per_case", "validate_every")
        if self.average_last_epochs < 0:
            raise TrainingConfigError(
                f"{source}: average_last_epochs: expected >= 0, got {self.average_last_epochs!r}"
            )
        _check_fraction(
            self, source, "foreground_ratio", "val_fraction", "rotate90_prob", "affine_prob", "scale_fraction"
        )
        if self.affine_prob > 0 and self.dims != 2:
            raise TrainingConfigError(f"{source}: affine_prob: in-plane rotation and scaling are 2D only")
        if not 0.0 <= self.rotate_deg <= 180.0:
            raise TrainingConfigError(f"{source}: rotate_deg: expected 0..180, got {self.rotate_deg!r}")
        if self.learning_rate <= 0 or self.warmup_epochs < 0 or self.num_workers < 0:
            raise TrainingConfigError(
                f"{source}: learning_rate must be > 0, warmup_epochs and num_workers >= 0"
            )
        if any(axis not in range(self.dims) for axis in self.flip_axes):
            raise TrainingConfigError(
                f"{source}: flip_axes: expected array axes in 0..{self.dims - 1} "
                f"(k, j, i order), got {self.flip_axes}"
            )
        height, width = self.patch_size_kji[-2:]
        if self.rotate90_prob > 0 and height != width:
            raise TrainingConfigError(
                f"{source}: rotate90_prob needs a square in-plane patch, "
                f"got {list(self.inference['patch_size'])}"
            )
        return self


def _check_positive(config: TrainingConfig, source: str, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise TrainingConfigError(f"{source}: {name}: expected an integer >= 1, got {value!r}")


def _check_fraction(config: TrainingConfig, source: str, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise TrainingConfigError(f"{source}: {name}: expected a number in 0..1, got {value!r}")


def config_to_json(config: TrainingConfig) -> dict[str, Any]:
    """The config as a JSON-able dict (what ``config_from_json`` reads back)."""
    return asdict(config)


def config_from_json(data: object, source: str = "training config") -> TrainingConfig:
    """Build and validate a config from a JSON object; unknown or missing fields are named."""
    if not isinstance(data, dict):
        raise TrainingConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
    known = {f.name for f in fields(TrainingConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise TrainingConfigError(f"{source}: unknown fields: {', '.join(unknown)}")
    try:
        config = TrainingConfig(**data)
    except TypeError as error:
        raise TrainingConfigError(f"{source}: {error}") from error
    return config.validate(source)


def load_config(name_or_path: str) -> TrainingConfig:
    """A preset by name, or a JSON file with the fields of ``TrainingConfig``."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]().validate(f"preset {name_or_path}")
    path = Path(name_or_path)
    if not path.is_file():
        raise TrainingConfigError(
            f"--config {name_or_path!r}: neither a preset ({', '.join(PRESETS)}) nor a JSON file"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TrainingConfigError(f"{path}: cannot read the config: {error}") from error
    return config_from_json(data, str(path))


# ------------------------------------------------------------------------------------------
# Presets
# ------------------------------------------------------------------------------------------


def _unet(channels: list[int], res_units: int) -> dict[str, Any]:
    strides = [2] * (len(channels) - 1)
    return {
        "name": "UNet",
        "params": {"channels": channels, "strides": strides, "num_res_units": res_units, "norm": "instance"},
    }


def lungs_ct_3d() -> TrainingConfig:
    """Both lungs in chest CT, 3D, at about 2 x 2 x 3 mm (the LCTSC grid)."""
    return TrainingConfig(
        name="lungs-ct-3d",
        title="Lungs in chest CT (3D U-Net)",
        modality="CT",
        dims=3,
        description="Segments both lungs (one label) in chest CT.",
        architecture=_unet([16, 32, 64, 128, 256], 2),
        preprocessing={
            "orientation": "RAS",
            "spacing": [2.0, 2.0, 3.0],
            "resize_inplane": None,
            "intensity": {"type": "window", "min": -1000.0, "max": 500.0},
            "body_crop": {"threshold": -500.0, "margin_mm": 10.0},
        },
        inference={"patch_size": [96, 96, 64], "overlap": 0.25, "batch_size": 2},
        labels={"1": label_entry("lungs", [0.85, 0.62, 0.55], LUNG)},
        postprocessing={
            "largest_component": [],
            "fill_holes": [1],
            "min_volume_ml": 5.0,
            "density_check": {
                "labels": [1],
                "below_ml": 500.0,
                "max_mean": -500.0,
                "air_below": -950.0,
                "max_air_fraction": 0.35,
            },
        },
        epochs=300,
        flip_axes=[2],
        validate_every=10,
    )


def liver_ct_2d() -> TrainingConfig:
    """Liver in axial CT slices stored as 8-bit images (HU clipped to 0..255), 2D."""
    return TrainingConfig(
        name="liver-ct-2d",
        title="Liver in axial CT slices (2D U-Net)",
        modality="CT",
        dims=2,
        description="Segments the liver in axial CT slices whose pixels are HU clipped to 0..255.",
        architecture=_unet([16, 32, 64, 128, 256], 2),
        preprocessing={
            "orientation": "LPS",
            "spacing": None,
            "resize_inplane": [256, 256],
            "intensity": {"type": "window", "min": 0.0, "max": 255.0},
            "body_crop": None,
        },
        inference={"patch_size": [256, 256], "overlap": 0.0, "batch_size": 16},
        labels={"1": label_entry("liver", [0.87, 0.47, 0.35], LIVER)},
        postprocessing={"largest_component": [1], "fill_holes": [1], "min_volume_ml": 0.0},
        version="0.2.0",
        batch_size=8,
        samples_per_case=1,
        epochs=60,
        rotate90_prob=0.0,
        affine_prob=0.5,
        rotate_deg=15.0,
        scale_fraction=0.3,
        intensity_scale=0.25,
    )


def lungs_cxr_2d() -> TrainingConfig:
    """Right and left lung in chest radiographs (PA view), 2D; masks_lr: 1 = image-left = right lung."""
    return TrainingConfig(
        name="lungs-cxr-2d",
        title="Right and left lung in chest X-ray (2D U-Net)",
        modality="CXR",
        dims=2,
        description="Segments the right and the left lung in PA chest radiographs.",
        architecture=_unet([16, 32, 64, 128, 256], 2),
        preprocessing={
            "orientation": None,
            "spacing": None,
            "resize_inplane": [256, 256],
            "intensity": {"type": "minmax"},
            "body_crop": None,
        },
        inference={"patch_size": [256, 256], "overlap": 0.0, "batch_size": 16},
        labels={
            "1": label_entry("right lung", [0.85, 0.62, 0.55], LUNG, RIGHT),
            "2": label_entry("left lung", [0.55, 0.62, 0.85], LUNG, LEFT),
        },
        postprocessing={"largest_component": [1, 2], "fill_holes": [1, 2], "min_volume_ml": 0.0},
        masks_folder="masks_lr",
        batch_size=8,
        samples_per_case=1,
        epochs=50,
    )


def phantom_ct_3d() -> TrainingConfig:
    """Lungs and liver of the synthetic phantom: a tiny 3D net that trains on a CPU in minutes."""
    return TrainingConfig(
        name="phantom-ct-3d",
        title="Lungs and liver in the synthetic CT phantom (demo)",
        modality="CT",
        dims=3,
        license="Apache-2.0 (weights trained on generated data)",
        description="Demo model for `lunglivseg demo`: trained on synthetic phantoms only, "
        "not for clinical images.",
        architecture=_unet([8, 16, 32, 64], 1),
        preprocessing={
            "orientation": "LPS",
            "spacing": [4.0, 4.0, 6.0],
            "resize_inplane": None,
            "intensity": {"type": "window", "min": -1000.0, "max": 500.0},
            "body_crop": {"threshold": -500.0, "margin_mm": 8.0},
        },
        inference={"patch_size": [48, 48, 32], "overlap": 0.25, "batch_size": 2},
        labels={
            "1": label_entry("lungs", [0.85, 0.62, 0.55], LUNG),
            "2": label_entry("liver", [0.87, 0.47, 0.35], LIVER),
        },
        label_sources={"liver": ["liver", "liver_tumour"]},
        postprocessing={"largest_component": [2], "fill_holes": [1, 2], "min_volume_ml": 1.0},
        card_notes=(
            "Trained on synthetic phantoms only (LungLiverSegLib.demo.phantom): not for clinical images."
        ),
        epochs=100,
        batch_size=2,
        samples_per_case=2,
        learning_rate=3e-3,
        warmup_epochs=2,
        validate_every=10,
    )


PRESETS = {
    "lungs-ct-3d": lungs_ct_3d,
    "liver-ct-2d": liver_ct_2d,
    "lungs-cxr-2d": lungs_cxr_2d,
    "phantom-ct-3d": phantom_ct_3d,
}
