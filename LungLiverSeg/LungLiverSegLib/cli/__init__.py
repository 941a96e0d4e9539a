"""The ``lunglivseg`` command: thin argument parsing over the library (as TotalSegmentator's ``bin/``).

May import every core layer, and ``slicer_module`` never (the Slicer side runs this command in
a child process, not the reverse). ``--help``, ``models`` and ``evaluate`` never import torch or
MONAI: each command imports its torch-heavy library code inside the function that runs it. Other
packages add commands through the ``lunglivseg.commands`` entry-point group (Training adds
``train``); the core never imports them.

One module per command (``segment``, ``evaluate``, ``models``, ``demo``, ``export``, ``worklist``), each with
``add_command`` and ``run``; ``options`` holds what every command shares and ``events`` the
JSON-lines progress protocol. A user error prints one line (``lunglivseg: error: ...``) and exits
with status 2; a cancelled run exits with 130 and leaves no partial output (every file is
written atomically).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TextIO

from LungLiverSegLib.cli import demo, evaluate, export, models, segment, worklist
from LungLiverSegLib.cli.events import CANCEL_FILE_ENV
from LungLiverSegLib.cli.options import EXIT_CANCELLED, EXIT_USER_ERROR
from LungLiverSegLib.errors import Cancelled, LungLiverSegError, LungLiverSegWarning
from LungLiverSegLib.files import describe_os_error
from LungLiverSegLib.progress import CancelToken

__all__ = ["PLUGIN_GROUP", "Registrar", "build_parser", "main"]

Registrar = Callable[[argparse._SubParsersAction], None]
"""Adds one sub-command to the parser (``commands.add_parser(...)``)."""

PLUGIN_GROUP = "lunglivseg.commands"
CANCEL_FILE_POLL_S = 0.2
DESCRIPTION = (
    "LungLiverSeg: segment, evaluate, models, demo, export, worklist (train and app, from their packages)."
)
CORE_COMMANDS: tuple[Registrar, ...] = (
    segment.add_command,
    evaluate.add_command,
    models.add_command,
    demo.add_command,
    export.add_command,
    worklist.add_command,
)


def main(argv: Sequence[str] | None = None, plugins: Mapping[str, Registrar] | None = None) -> int:
    """Run one command; returns the exit status (0, 2 for a user error, 130 when cancelled)."""
    parser = build_parser(plugins)
    args = parser.parse_args(argv)
    cancel = CancelToken()
    _cancel_on_signals(cancel)
    _cancel_on_file(cancel, os.environ.get(CANCEL_FILE_ENV))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", LungLiverSegWarning)
            warnings.showwarning = _show_warning
            return int(args.run(args, cancel) or 0)
    except Cancelled:
        print("lunglivseg: cancelled; nothing was written", file=sys.stderr)
        return EXIT_CANCELLED
    except (LungLiverSegError, FileExistsError) as error:
        print(f"lunglivseg: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as error:  # the environment (permissions, a full or read-only disk), not a bug
        where = f"{error.filename}: " if error.filename else ""
        print(f"lunglivseg: error: {where}{describe_os_error(error)}", file=sys.stderr)
        return EXIT_USER_ERROR


def build_parser(plugins: Mapping[str, Registrar] | None = None) -> argparse.ArgumentParser:
    """The ``lunglivseg`` parser: the core's commands, then those of installed plug-in packages.

    Plug-ins are the ``lunglivseg.commands`` entry points plus ``plugins`` (a composition root
    such as ``python -m LungLiverSegTraining`` passes its own, for a Slicer extension that has no
    package metadata). An import error inside a plug-in is raised, not hidden.
    """
    parser = argparse.ArgumentParser(prog="lunglivseg", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in (*CORE_COMMANDS, *{**_installed_plugins(), **(plugins or {})}.values()):
        register(commands)
    return parser


def _installed_plugins() -> dict[str, Registrar]:
    return {entry.name: entry.load() for entry in entry_points(group=PLUGIN_GROUP)}


def _cancel_on_signals(cancel: CancelToken) -> None:
    """Ctrl-C / SIGTERM (e.g. the Slicer module's Cancel) cancel cooperatively at the next step."""

    def handler(signum: int, frame: object) -> None:
        if cancel.cancelled:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        cancel.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)


def _cancel_on_file(cancel: CancelToken, path: str | None) -> None:
    """Cancel when the front end creates ``path`` (``cli.events.CANCEL_FILE_ENV``): the way that
    reaches the interpreter behind a launcher that forwards no signal, and on Windows."""
    if not path:
        return

    def watch() -> None:
        while not cancel.cancelled:
            if Path(path).exists():
                cancel.cancel()
            time.sleep(CANCEL_FILE_POLL_S)

    threading.Thread(target=watch, name="lunglivseg-cancel-file", daemon=True).start()


def _show_warning(  # noqa: PLR0913  (the signature of warnings.showwarning, which it replaces)
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Ours as one ``lunglivseg: warning:`` line (front ends show those to the user); other
    libraries' warnings in Python's own format, so that no front end takes them for ours."""
    if issubclass(category, LungLiverSegWarning):
        print(f"lunglivseg: warning: {message}", file=sys.stderr)
    else:
        print(warnings.formatwarning(message, category, filename, lineno, line), end="", file=sys.stderr)
