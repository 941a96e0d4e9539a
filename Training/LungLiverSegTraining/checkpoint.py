"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint holds the model, optimiser, scheduler and GradScaler state, the RNG states of
torch (CPU and CUDA), numpy and Python, the epoch and the history. It is written through
``LungLiverSegLib.files.atomic_output`` (a temporary file, then a rename), so a crash mid-write
never destroys the previous checkpoint.
Everything in it is a tensor or a plain Python value, so it loads with ``weights_only=True``:
no pickle is ever executed, even for our own files.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from LungLiverSegLib.cli.train_request import LAST_CHECKPOINT
from LungLiverSegLib.evaluation.metrics import NSD_KEY
from LungLiverSegLib.files import atomic_output

from LungLiverSegTraining.errors import TrainingConfigError

LAST = LAST_CHECKPOINT  # the core names it: the Slicer module looks for it without importing Training
BEST = "checkpoint_best.pt"
LEGACY_METRIC_NAMES = {"nsd_2mm": NSD_KEY}
"""Metric names in the history of checkpoints written before the NSD key had one spelling."""


def rng_states() -> dict[str, Any]:
    """RNG states in a ``weights_only``-loadable form (numpy's key array becomes a tensor)."""
    state = np.random.get_state(legacy=True)
    assert isinstance(state, tuple)  # the global RandomState is an MT19937: the legacy tuple form
    kind, keys, position, has_gauss, cached = state
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "python": random.getstate(),
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    """Put back the RNG states that ``rng_states`` took (CUDA's only where CUDA is available)."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically, replacing the previous checkpoint of the same name."""
    with atomic_output(path) as temporary:
        torch.save(state, temporary)


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint`` (tensors only, no pickle)."""
    if not path.is_file():
        raise TrainingConfigError(f"{path}: no checkpoint to resume from (train without --resume first)")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:  # torch's message suggests weights_only=False: never
        raise TrainingConfigError(
            f"{path}: cannot read the checkpoint: not one that lunglivseg train wrote, or damaged"
        ) from error
    except (RuntimeError, EOFError, OSError) as error:
        raise TrainingConfigError(f"{path}: cannot read the checkpoint: {error}") from error


def current_history(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A checkpoint's per-epoch history with today's metric names, so a run started by an older
    version resumes (its curves and its bundle's validation section use the current keys)."""
    return [
        {**record, "val": {LEGACY_METRIC_NAMES.get(key, key): value for key, value in record["val"].items()}}
        if record.get("val")
        else record
        for record in history
    ]
