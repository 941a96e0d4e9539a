"""The end product of training: a complete model bundle with provenance and a model card.

The bundle is written by the core's ``save_bundle`` (the only writer of the format), so
``lunglivseg segment --model <out>/bundle/<name>-v<version>`` uses it as is.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from LungLiverSegLib.bundle.card import model_card
from LungLiverSegLib.bundle.spec import ModelBundle
from LungLiverSegLib.bundle.weights import save_bundle

from LungLiverSegTraining.config import TrainingConfig, config_to_json
from LungLiverSegTraining.dataset_reader import Split
from LungLiverSegTraining.distributed import DistributedContext
from LungLiverSegTraining.validation import unsure_ratio_limit

GIT_TIMEOUT_S = 5


def git_revision() -> str:
    """The commit of the training code (``git rev-parse HEAD``), or "unknown" outside a checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def hardware_description(device: torch.device, context: DistributedContext) -> str:
    """CPU, GPU (when used) and process count, for the model card's "hardware and time"."""
    cpu = f"{platform.machine()} {os.cpu_count()} CPU cores"
    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return f"{cpu}{gpu}, {context.world_size} training process(es), torch {torch.__version__}"


@dataclass(frozen=True)
class Provenance:
    """How a bundle was trained: its model.json ``provenance`` (the card's "Provenance")."""

    dataset: Path
    split: Split
    config: TrainingConfig
    command: str
    hardware: str
    training_time_s: float
    best_epoch: int
    weights: str

    def to_json(self) -> dict[str, Any]:
        split = self.split
        return {
            "dataset": str(self.dataset.resolve()),
            "split": f"{len(split.train)} training / {len(split.val)} validation cases, {split.source}; "
            f"validation cases: {', '.join(split.val)}",
            "epochs": self.config.epochs,
            "best_epoch": self.best_epoch,
            "weights": self.weights,
            "seed": self.config.seed,
            "git_revision": git_revision(),
            "command": self.command,
            "hardware": self.hardware,
            "training_time_s": round(self.training_time_s, 1),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }


def export_bundle(
    out: Path, bundle: ModelBundle, state_dict: Mapping[str, torch.Tensor], config: TrainingConfig
) -> Path:
    """Write ``<out>/bundle/<name>-v<version>/`` (replacing an earlier export of this run), with
    the unsure-ratio warning limit calibrated on the bundle's validation."""
    inference = replace(bundle.inference, unsure_ratio_limit=unsure_ratio_limit(bundle.validation))
    bundle = replace(bundle, inference=inference)
    folder = out / "bundle" / f"{bundle.name}-v{bundle.version}"
    return save_bundle(folder, bundle, state_dict, training_card(bundle, config), overwrite=True)


DATA_SECTION = "## Data, licence and how it was made"
SECTION_AFTER_DATA = "## Intended use"


def training_card(bundle: ModelBundle, config: TrainingConfig) -> str:
    """The generated model card plus what only training knows: the data card (``--data-card``),
    notes and the full configuration (the data card is left out of the JSON: it is above)."""
    notes = f"{config.card_notes}\n\n" if config.card_notes else ""
    configuration = json.dumps({**config_to_json(config), "data_card": "(above)"}, indent=2)
    card = (
        f"{model_card(bundle)}\n## Training\n\n{notes}Reproduce with the command under Provenance; "
        f"the training configuration was:\n\n```json\n{configuration}\n```\n"
    )
    return with_data_section(card, f"{DATA_SECTION}\n\n{config.data_card}") if config.data_card else card


def with_data_section(card: str, section: str) -> str:
    """``card`` with ``section`` (a "Data, licence" section, heading included) before the intended use."""
    if SECTION_AFTER_DATA not in card:
        return f"{card.rstrip()}\n\n{section.strip()}\n"
    return card.replace(SECTION_AFTER_DATA, f"{section.strip()}\n\n{SECTION_AFTER_DATA}", 1)


def data_section_of(card: str) -> str | None:
    """The "Data, licence" section of an existing card (heading included), or None."""
    if DATA_SECTION not in card:
        return None
    start = card.index(DATA_SECTION)
    end = card.find(SECTION_AFTER_DATA, start)
    return card[start : end if end >= 0 else len(card)].rstrip()
