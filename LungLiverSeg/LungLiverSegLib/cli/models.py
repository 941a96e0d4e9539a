"""``lunglivseg models``: list the available models, or import a model bundle."""

from __future__ import annotations

import argparse
from pathlib import Path

from LungLiverSegLib.progress import CancelToken


def add_command(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser("models", help="list the available models, or import one")
    sub = cmd.add_subparsers(dest="models_command", metavar="import")
    imp = sub.add_parser("import", help="install a model bundle (folder or .zip) into your models folder")
    imp.add_argument("path", type=Path)
    imp.add_argument(
        "--overwrite", action="store_true", help="replace an installed bundle of the same version"
    )
    cmd.set_defaults(run=run)


def run(args: argparse.Namespace, cancel: CancelToken) -> int:
    from LungLiverSegLib.bundle import catalogue

    if getattr(args, "models_command", None) == "import":
        entry = catalogue.import_model(args.path, overwrite=args.overwrite)
        print(f"installed {entry.name} {entry.version} into {entry.folder}")
        return 0
    print(catalogue.format_models_table(catalogue.list_models()))
    return 0
