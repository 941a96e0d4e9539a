"""What every command shares: the runtime options and the exit statuses.

A leaf module (argparse only), so that plug-in packages such as Training import it without
loading the core CLI.
"""

from __future__ import annotations

import argparse

EXIT_USER_ERROR = 2
EXIT_CANCELLED = 130


def add_runtime_options(cmd: argparse.ArgumentParser) -> None:
    """--device, --threads and --progress, the same for every long-running command."""
    cmd.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    cmd.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")
    cmd.add_argument(
        "--progress",
        choices=("bar", "json", "none"),
        default="bar",
        help="progress display: a bar on stderr, JSON lines on stdout (for programs), none",
    )


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (argparse turns the error into one line)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
