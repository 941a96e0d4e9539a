"""``lunglivseg train``: registered into the core's CLI through the ``lunglivseg.commands``
entry point (and by ``python -m LungLiverSegTraining`` where there is no package metadata).

Under ``torchrun`` the same command trains on several GPUs / nodes:
``torchrun --nproc_per_node 4 -m LungLiverSegTraining train ...``.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import replace
from pathlib import Path

import torch
from LungLiverSegLib.cli.options import add_runtime_options
from LungLiverSegLib.progress import CancelToken

from LungLiverSegTraining.config import PRESETS, load_config
from LungLiverSegTraining.errors import TrainingConfigError
from LungLiverSegTraining.trainer import TrainOptions, train


def add_train_command(commands: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command to the ``lunglivseg`` parser."""
    cmd = commands.add_parser("train", help="train a model on an MSD/nnU-Net or 2D image/mask dataset")
    cmd.add_argument(
        "--dataset",
        type=Path,
        required=True,
        help="dataset folder: dataset.json + imagesTr/ + labelsTr/, or images/ + masks/",
    )
    cmd.add_argument(
        "--config",
        default=None,
        help=f"preset ({', '.join(PRESETS)}) or a JSON config file (not needed with --resume)",
    )
    cmd.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, split, curves, bundle")
    cmd.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    cmd.add_argument("--init-from", type=Path, default=None, help="fine-tune from this model bundle")
    cmd.add_argument("--epochs", type=int, default=None, help="override the config's number of epochs")
    cmd.add_argument("--seed", type=int, default=None, help="override the config's seed")
    cmd.add_argument(
        "--data-card",
        type=Path,
        default=None,
        help="Markdown file on the training data (sources, licences, attribution, limits) for the model card",
    )
    add_runtime_options(cmd)
    cmd.set_defaults(run=run_train)


def run_train(args: argparse.Namespace, cancel: CancelToken) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(args.config) if args.config is not None else None
    if args.data_card is not None:
        if config is None:
            raise TrainingConfigError("--data-card needs --config (a resumed run keeps its own card)")
        config = replace(config, data_card=read_data_card(args.data_card))
    options = TrainOptions(
        dataset=args.dataset,
        out=args.out,
        config=config,
        resume=args.resume,
        init_from=args.init_from,
        device=args.device,
        epochs=args.epochs,
        seed=args.seed,
        progress=args.progress,
        cancel=cancel,
        command=command_line(args),
    )
    train(options)
    return 0


def read_data_card(path: Path) -> str:
    """The data card's Markdown (UTF-8), with a one-line error when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise TrainingConfigError(f"--data-card {path}: cannot read it ({error})") from error


def command_line(args: argparse.Namespace) -> str:
    """The command as it could be re-typed (rebuilt from the parsed options, not from sys.argv,
    which is the host program's under the Python API or tests)."""
    words = ["lunglivseg", "train", "--dataset", str(args.dataset), "--out", str(args.out)]
    for option in ("config", "init_from", "device", "epochs", "seed", "data_card", "threads"):
        value = getattr(args, option)
        if value is not None:
            words += [f"--{option.replace('_', '-')}", str(value)]
    return shlex.join(words + (["--resume"] if args.resume else []))
