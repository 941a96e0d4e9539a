"""The ``train`` command's contract, in the core so that both sides of it see one spelling.

Training parses its command line into a ``TrainRequest`` (``add_arguments``, ``from_args``); the
Slicer module builds one and turns it into the child's command line (``to_argv``). The core only
describes the command: Training registers and runs it, and the core never imports Training (it
finds the preset names in ``paths.presets_dir()``, one JSON file each).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from pathlib import Path

from LungLiverSegLib import paths
from LungLiverSegLib.cli.options import add_runtime_options

LAST_CHECKPOINT = "checkpoint_last.pt"
"""The file in a run folder (``--out``) that ``--resume`` continues: its presence makes a run."""


def preset_names() -> list[str]:
    """The training presets, sorted (none where Training is not beside the core)."""
    folder = paths.presets_dir()
    return sorted(path.stem for path in folder.glob("*.json")) if folder.is_dir() else []


@dataclass(frozen=True)
class TrainRequest:
    """One ``lunglivseg train`` command: a field per option, named like it (``init_from`` is
    ``--init-from``), in the order its command line is written."""

    dataset: Path
    out: Path
    config: str | None = None
    init_from: Path | None = None
    device: str = "auto"
    epochs: int | None = None
    seed: int | None = None
    data_card: Path | None = None
    threads: int | None = None
    resume: bool = False
    progress: str = "bar"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """The command's options (their ``dest`` names are the fields)."""
        parser.add_argument(
            "--dataset",
            type=Path,
            required=True,
            help="dataset folder: dataset.json + imagesTr/ + labelsTr/, or images/ + masks/",
        )
        parser.add_argument(
            "--config",
            default=None,
            help=f"preset ({', '.join(preset_names())}) or a JSON config file (not needed with --resume)",
        )
        parser.add_argument(
            "--out", type=Path, required=True, help="run folder: checkpoints, split, curves, bundle"
        )
        parser.add_argument(
            "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
        )
        parser.add_argument("--init-from", type=Path, default=None, help="fine-tune from this model bundle")
        parser.add_argument("--epochs", type=int, default=None, help="override the config's number of epochs")
        parser.add_argument("--seed", type=int, default=None, help="override the config's seed")
        parser.add_argument(
            "--data-card",
            type=Path,
            default=None,
            help="Markdown file on the training data (sources, licences, attribution, limits) "
            "for the model card",
        )
        add_runtime_options(parser)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainRequest:
        return cls(**{field.name: getattr(args, field.name) for field in fields(cls)})

    def to_argv(self) -> list[str]:
        """The options that differ from their defaults, as ``add_arguments`` parses them back."""
        argv: list[str] = []
        for field in fields(self):
            value, option = getattr(self, field.name), "--" + field.name.replace("_", "-")
            if value is None or value == field.default:
                continue
            argv += [option] if value is True else [option, str(value)]
        return argv
