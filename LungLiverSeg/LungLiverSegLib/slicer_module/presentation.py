"""What the module's widgets show: the model and device choices, the model tooltip, and the
status lines under the progress bars (the preset choices are ``cli.train_request.preset_names``).
Text only: no scene, no process.
"""

from __future__ import annotations

import importlib.util

from LungLiverSegLib.bundle.catalogue import CatalogueEntry, list_models
from LungLiverSegLib.slicer_module.process import ProgressUpdate
from LungLiverSegLib.slicer_module.training_job import TrainingOutcome


def available_models() -> list[CatalogueEntry]:
    """Catalogue entries that can run (broken user bundles are left out)."""
    return [entry for entry in list_models() if entry.error is None]


def model_tooltip(entry: CatalogueEntry) -> str:
    """What a user needs to choose a model: organs, 2D/3D, expected time and licence."""
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
    """The status line after a successful run: the installed model and its validation Dice."""
    text = f"Installed {outcome.model_name} {outcome.model_version}"
    metrics = outcome.metrics
    if "mean_dice" not in metrics:
        return text + "."
    per_segment = ", ".join(f"{name} {value:.3f}" for name, value in metrics.get("dice", {}).items())
    dice = f"validation Dice {metrics['mean_dice']:.3f} ({per_segment})"
    return f"{text}: {dice}, best epoch {metrics.get('epoch')}."


def device_choices() -> list[str]:
    """``auto``, ``cpu``, and ``cuda (<GPU>, <free> GiB free)`` when torch sees a GPU."""
    choices = ["auto", "cpu"]
    if importlib.util.find_spec("torch") is None:
        return choices
    import torch

    if torch.cuda.is_available():
        free_bytes, _ = torch.cuda.mem_get_info()
        choices.append(f"cuda ({torch.cuda.get_device_name()}, {free_bytes / 2**30:.1f} GiB free)")
    return choices


def device_argument(choice: str) -> str:
    """The CLI's ``--device`` value of a device choice (its first word)."""
    return choice.split()[0] if choice.strip() else "auto"
