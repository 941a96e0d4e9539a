"""What the module's widgets show: the model and device choices, the model tooltip, and the
status lines under the progress bars (the preset choices are ``cli.train_request.preset_names``).
Text only: no scene, no process.
"""

from __future__ import annotations

from dataclasses import dataclass

from LungLiverSegLib.bundle.catalogue import USER, CatalogueEntry, list_models
from LungLiverSegLib.bundle.spec import semver_key
from LungLiverSegLib.slicer_module.process import ProgressUpdate
from LungLiverSegLib.slicer_module.training_job import TrainingOutcome


def available_models() -> list[CatalogueEntry]:
    """Catalogue entries that can run (broken user bundles are left out)."""
    return [entry for entry in list_models() if entry.error is None]


@dataclass(frozen=True)
class ModelChoice:
    """One item of the model combo box: the text shown, and the ``name@version`` key stored in the
    parameter node and given to the child as ``--model`` (a name alone runs the newest version)."""

    key: str
    text: str
    tooltip: str


def model_key(entry: CatalogueEntry) -> str:
    return f"{entry.name}@{entry.version}"


def model_choices() -> list[ModelChoice]:
    """One item per runnable name and version, describing the copy that its key runs (a user's copy
    of a bundled version wins, as in ``find_model``), so the item a user picks is what runs."""
    chosen: dict[str, CatalogueEntry] = {}
    for entry in available_models():
        key = model_key(entry)
        if key not in chosen or entry.source == USER:
            chosen[key] = entry
    return [
        ModelChoice(
            key,
            f"{entry.name} {entry.version}" + (" (yours)" if entry.source == USER else ""),
            model_tooltip(entry),
        )
        for key, entry in chosen.items()
    ]


def shown_key(stored: str, keys: list[str]) -> str | None:
    """The item key that shows the stored model: the key itself, or for a bare name (a scene saved
    before the items had versions) its newest version's, which is what that name runs. None when
    no item runs it."""
    if stored in keys:
        return stored
    versions = [key.partition("@")[2] for key in keys if key.partition("@")[0] == stored]
    return f"{stored}@{max(versions, key=semver_key)}" if versions else None


def model_tooltip(entry: CatalogueEntry) -> str:
    """What a user needs to choose a model: organs, 2D/3D, expected time, licence, and whether it
    came with LungLiverSeg or is the user's own (trained or imported)."""
    times = ", ".join(
        f"{device} ~{seconds:.0f} s"
        for device, seconds in (("CPU", entry.cpu_time_s), ("GPU", entry.gpu_time_s))
        if seconds is not None
    )
    lines = [
        f"{entry.title} ({entry.name} {entry.version})",
        f"Segments: {', '.join(entry.segments)}",
        f"{entry.dims}D {entry.modality} model" + (f"; {times} per image" if times else ""),
        f"Licence: {entry.license}",
        f"Yours (trained or imported): {entry.folder}" if entry.source == USER else "Comes with LungLiverSeg",
    ]
    return "\n".join(lines)


def describe_progress(update: ProgressUpdate) -> str:
    """The status line under the progress bar: stage, percent, time left and, in a batch, the case."""
    text = f"{update.stage} {update.fraction:.0%}"
    if update.eta_s is not None:
        minutes, seconds = divmod(round(update.eta_s), 60)
        text += f", about {minutes} min {seconds} s left" if minutes else f", about {seconds} s left"
    return f"{text} ({update.case})" if update.case else text


def describe_training(outcome: TrainingOutcome) -> str:
    """The status line after a successful run: the installed (or kept aside) model and its
    validation Dice."""
    model = f"{outcome.model_name} {outcome.model_version}"
    text = (
        f"Trained {model}, kept in {outcome.bundle_folder} (your installed {model} was not replaced)"
        if outcome.kept_installed
        else f"Installed {model}"
    )
    metrics = outcome.metrics
    if "mean_dice" not in metrics:
        return text + "."
    per_segment = ", ".join(f"{name} {value:.3f}" for name, value in metrics.get("dice", {}).items())
    dice = f"validation Dice {metrics['mean_dice']:.3f} ({per_segment})"
    return f"{text}: {dice}, best epoch {metrics.get('epoch')}."
