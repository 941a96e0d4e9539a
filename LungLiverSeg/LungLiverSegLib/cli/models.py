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
        "--overwrite", action="store_true", help="replace your installed copy of the same name and version"
    )
    imp.add_argument(
        "--replace",
        action="store_true",
        help="let the import change what an existing model name runs (a newer version of a bundled or "
        "imported model, or your own copy of a bundled version)",
    )
    cmd.set_defaults(run=run)


def run(args: argparse.Namespace, cancel: CancelToken) -> int:
    from LungLiverSegLib.bundle import catalogue, importing

    if getattr(args, "models_command", None) == "import":
        result = importing.import_model(args.path, overwrite=args.overwrite, replace=args.replace)
        print(f"installed {result.entry.name} {result.entry.version} into {result.entry.folder}")
        for notice in result.notices:
            print(notice)
        return 0
    print(catalogue.format_models_table(catalogue.list_models()))
    return 0
