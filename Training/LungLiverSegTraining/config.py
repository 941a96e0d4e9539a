"""Training configurations: named presets and JSON files with the same fields.

A config holds the bundle's own sections (architecture, preprocessing, inference, labels,
postprocessing) in exactly their model.json form, so ``bundle_template`` can let the core's
``bundle_from_json`` validate them: a config that trains is a config whose bundle loads. The
remaining fields are training hyper-parameters, which never reach the bundle except as provenance.

A preset is such a JSON file in ``presets/`` (package data), named ``<preset>.json`` and listing
only what differs from ``TrainingConfig``'s defaults. The Slicer module lists that folder
without importing this package, so the folder is the one list of presets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from LungLiverSegLib import paths
from LungLiverSegLib.bundle.model_json import bundle_from_json
from LungLiverSegLib.bundle.spec import ModelBundle
from LungLiverSegLib.cli.train_request import preset_names
from LungLiverSegLib.errors import BundleError
from LungLiverSegLib.jsonio import read_json

from LungLiverSegTraining.errors import TrainingConfigError

PRESETS_FOLDER = paths.presets_dir()
PRESETS = tuple(preset_names())
"""The preset names, sorted: the JSON files in ``presets/``, listed by the core (the Slicer module
shows the same list without importing Training)."""


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
        """The bundle this config trains, without weights (they do not exist yet, so
        ``weights_sha256`` is empty), validated by the core's own parser."""
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
        }
        try:
            return bundle_from_json(document, source, with_weights=False)
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
        preset = PRESETS_FOLDER / f"{name_or_path}.json"
        return config_from_json(
            read_json(preset, TrainingConfigError, "the preset"), f"preset {name_or_path}"
        )
    path = Path(name_or_path)
    if not path.is_file():
        raise TrainingConfigError(
            f"--config {name_or_path!r}: neither a preset ({', '.join(PRESETS)}) nor a JSON file"
        )
    return config_from_json(read_json(path, TrainingConfigError, "the config"), str(path))
