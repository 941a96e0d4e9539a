"""``lunglivseg train``: registered into the core's CLI through the ``lunglivseg.commands``
entry point (and by ``python -m LungLiverSegTraining`` where there is no package metadata).

The options are the core's ``TrainRequest`` (the Slicer module builds the same request). Torch
and the trainer are imported only when ``train`` runs: registering the command is part of every
``lunglivseg`` start, ``--help`` included.

Under ``torchrun`` the same command trains on several GPUs / nodes:
``torchrun --nproc_per_node 4 -m LungLiverSegTraining train ...``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from LungLiverSegLib.cli.train_request import TrainRequest
from LungLiverSegLib.progress import CancelToken

from LungLiverSegTraining.errors import MissingPackageError, TrainingConfigError

OWN_PACKAGES = ("LungLiverSegLib", "LungLiverSegTraining")


def add_train_command(commands: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command to the ``lunglivseg`` parser."""
    cmd = commands.add_parser("train", help="train a model on an MSD/nnU-Net or 2D image/mask dataset")
    TrainRequest.add_arguments(cmd)
    cmd.set_defaults(run=run_train)


def run_train(args: argparse.Namespace, cancel: CancelToken) -> int:
    with _installed_packages_needed():
        import torch

        from LungLiverSegTraining.config import load_config
        from LungLiverSegTraining.trainer import TrainOptions, train

    request = TrainRequest.from_args(args)
    if request.threads:
        torch.set_num_threads(request.threads)
    config = load_config(request.config) if request.config is not None else None
    if request.data_card is not None:
        if config is None:
            raise TrainingConfigError("--data-card needs --config (a resumed run keeps its own card)")
        config = replace(config, data_card=read_data_card(request.data_card))
    train(TrainOptions.from_request(request, config, cancel))
    return 0


@contextmanager
def _installed_packages_needed() -> Iterator[None]:
    """A package training imports that is not installed (matplotlib in a Slicer that has not run the
    module's install): one line that says which, not a traceback. Our own modules still raise."""
    try:
        yield
    except ModuleNotFoundError as error:
        package = (error.name or "").partition(".")[0]
        if not package or package in OWN_PACKAGES:
            raise
        raise MissingPackageError(
            f"training needs the Python package '{package}', which is not installed "
            "(in Slicer: Install dependencies in the LungLiverSeg module)"
        ) from error


def read_data_card(path: Path) -> str:
    """The data card's Markdown (UTF-8), with a one-line error when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise TrainingConfigError(f"--data-card {path}: cannot read it ({error})") from error
