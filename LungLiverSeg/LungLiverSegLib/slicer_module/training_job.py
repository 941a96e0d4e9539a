"""A training run started from the module: its status text while it runs, and on success the
installation of its bundle into the user's models folder (replacing an installed model of the same
name and version only when the caller decides so: a second run of a preset trains the same name and
version).

Training itself runs in a child process (``lunglivseg train``, Training's package); this side
knows the command only through ``cli.train_request`` and the JSON lines it prints, and imports
nothing of Training. A cancelled run keeps its last checkpoint, which ``resume`` continues.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from LungLiverSegLib.bundle.catalogue import CatalogueEntry, find_model, installed_model
from LungLiverSegLib.bundle.importing import import_model
from LungLiverSegLib.bundle.model_json import load_bundle
from LungLiverSegLib.cli.train_request import LAST_CHECKPOINT
from LungLiverSegLib.slicer_module.process import (
    CaseDone,
    EpochValidated,
    Outcome,
    ProcessEvent,
    ProcessResult,
    ProgressUpdate,
    ProgressUpdateCallback,
    training_status,
)


@dataclass(frozen=True, kw_only=True)
class TrainingOutcome(Outcome):
    """How a training run ended: the installed model and its validation metrics (model.json's
    ``validation``: Dice and NSD per segment, mean Dice, best epoch), or why it did not.

    ``kept_installed``: the user kept the installed model of the same name and version, so the new
    one was not installed and stays in the run folder (``bundle_folder``).
    """

    model_name: str | None = None
    model_version: str | None = None
    bundle_folder: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    kept_installed: bool = False

    @property
    def model_key(self) -> str | None:
        """``name@version``: what the model combo stores and Segment runs (None when nothing was trained)."""
        return f"{self.model_name}@{self.model_version}" if self.model_name else None


TrainingFinishedCallback = Callable[[TrainingOutcome], None]
ReplaceDecision = Callable[[CatalogueEntry], bool]
"""Asked when the run ends and its model's name and version are installed already (a second run of
a preset): True replaces the installed copy (the entry). The widget asks the user."""


@dataclass
class TrainingJob:
    """One training run, and what its lines told so far (for the status text and the bundle)."""

    replace_installed: bool | ReplaceDecision
    on_progress: ProgressUpdateCallback | None
    on_finished: TrainingFinishedCallback | None
    mean_dice: float | None = None
    last_step: ProgressUpdate | None = None
    exported_bundle: str | None = None
    outcome: TrainingOutcome | None = None

    def handle(self, event: ProcessEvent) -> None:
        """A line of the child: remember the validation Dice and the bundle, report the steps, and
        report a validation again as the last step with its Dice (the epoch's last line)."""
        if isinstance(event, EpochValidated):
            self.mean_dice = event.mean_dice
            if self.last_step is not None:
                self._report(self.last_step, validated=True)
        elif isinstance(event, CaseDone):
            self.exported_bundle = event.output
        elif event.epoch is not None and event.loss is not None:
            self.last_step = event
            self._report(event)

    def _report(self, step: ProgressUpdate, *, validated: bool = False) -> None:
        """``validation_dice`` only on the report of a validation, so that a curve gets one point
        per validated epoch; the status line always names the last validation."""
        if self.on_progress is not None and step.epoch is not None and step.loss is not None:
            status = training_status(step.epoch, step.loss, step.epochs, self.mean_dice)
            dice = self.mean_dice if validated else None
            self.on_progress(dataclasses.replace(step, stage=status, validation_dice=dice))

    def finish(self, result: ProcessResult) -> None:
        installed = _installed(self, result)
        self.outcome = dataclasses.replace(installed, warnings=result.warnings + installed.warnings)
        if self.on_finished is not None:
            self.on_finished(self.outcome)


def model_folder(model: str) -> Path:
    """The folder of a catalogue model (``name`` or ``name@version``): what ``--init-from`` reads."""
    return find_model(model).stored_folder


def default_run_folder(dataset_dir: str | Path, config: str) -> Path:
    """``<dataset>-training/<config>`` beside the dataset: checkpoints, curves and the bundle."""
    dataset = Path(dataset_dir)
    return dataset.with_name(f"{dataset.name}-training") / Path(config).stem


def holds_training_run(run_folder: str | Path) -> bool:
    """True when the folder has a run's checkpoint: training there must resume (or go elsewhere)."""
    return (Path(run_folder) / LAST_CHECKPOINT).is_file()


def _installed(job: TrainingJob, result: ProcessResult) -> TrainingOutcome:
    """Install the exported bundle; any failure to do so is the run's error (the GUI waits for it)."""
    if not result.succeeded:
        return TrainingOutcome(cancelled=result.cancelled, error=result.error)
    if not job.exported_bundle:
        return TrainingOutcome(error="the training finished without reporting its bundle")
    try:
        trained = load_bundle(job.exported_bundle, verify_checksum=False)
        installed = installed_model(trained.name, trained.version)
        replace = installed is not None and _replaces(job.replace_installed, installed)
        if installed is not None and not replace:
            return TrainingOutcome(
                model_name=trained.name,
                model_version=trained.version,
                bundle_folder=trained.stored_folder,
                metrics=dict(trained.validation),
                kept_installed=True,
            )
        # replace: the user trained this model here; what its name now runs is said in the warnings
        imported = import_model(job.exported_bundle, overwrite=replace, replace=True)
        entry = imported.entry
        metrics = trained.validation  # the installed copy is these bytes, checked by the import
    except Exception as error:
        return TrainingOutcome(error=str(error))
    return TrainingOutcome(
        model_name=entry.name,
        model_version=entry.version,
        bundle_folder=entry.folder,
        metrics=dict(metrics),
        warnings=imported.notices,
    )


def _replaces(decision: bool | ReplaceDecision, installed: CatalogueEntry) -> bool:
    return decision(installed) if callable(decision) else decision
