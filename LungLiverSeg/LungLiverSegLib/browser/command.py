"""``lunglivseg app``: the browser app, registered into the core's CLI through the
``lunglivseg.commands`` entry point (the core never imports this package).

trame and trame-slicer are the ``app`` extra: they are imported only when the command runs, and a
missing one is one line saying what to install. The server binds 127.0.0.1 unless told otherwise
and always requires its access token; it prints the address with the token, as Jupyter does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from LungLiverSegLib import paths
from LungLiverSegLib.browser.security import (
    DEFAULT_MAX_UPLOAD_MB,
    checked_token,
)
from LungLiverSegLib.browser.settings import Settings
from LungLiverSegLib.errors import LungLiverSegError
from LungLiverSegLib.progress import CancelToken

APP_EXTRA_HINT = 'the browser app needs its extra: pip install "lunglivseg[app]"'


def add_app_command(commands: argparse._SubParsersAction) -> None:
    """Add the ``app`` sub-command to the ``lunglivseg`` parser."""
    cmd = commands.add_parser(
        "app", help="the browser app: open, segment, correct, export and train in a page"
    )
    cmd.add_argument(
        "--data", type=Path, default=Path("."), help="folder of images the page may open (default: .)"
    )
    cmd.add_argument(
        "--work",
        type=Path,
        default=paths.DEFAULT_APP_WORK,
        help=f"folder for exported datasets and training runs (default: {paths.DEFAULT_APP_WORK})",
    )
    cmd.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    cmd.add_argument("--port", type=int, default=0, help="port (default 0: a free one, printed)")
    cmd.add_argument("--token", default=None, help="access token (default: a random one, printed)")
    cmd.add_argument(
        "--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, help="largest upload accepted (MB)"
    )
    cmd.add_argument("--device", default="auto", help="where models run: auto (default), cpu or cuda")
    cmd.set_defaults(run=run_app)


def run_app(args: argparse.Namespace, cancel: CancelToken) -> int:
    settings = checked_settings(args)
    token = checked_token(args.token)
    try:
        from trame.app import get_server

        from LungLiverSegLib.browser.app import LungLiverSegApp
    except ModuleNotFoundError as error:
        raise LungLiverSegError(f"{APP_EXTRA_HINT} ({error.name} is missing)") from None
    server = get_server("lunglivseg", client_type="vue3")
    LungLiverSegApp(server, settings)

    def announce(**_: object) -> None:
        print(f"LungLiverSeg app: http://{_url_host(args.host)}:{server.port}/?secret={token}", flush=True)

    server.controller.on_server_ready.add(announce)
    server.cli.set_defaults(authKey=token)
    sys.argv = sys.argv[:1]  # trame parses the command line again: only our options count
    server.start(host=args.host, port=args.port, open_browser=False, show_connection_info=False)
    return 0


def checked_settings(args: argparse.Namespace) -> Settings:
    """The folders and limits, refused in one line before the server starts."""
    data = args.data.expanduser()
    if not data.is_dir():
        raise LungLiverSegError(f"--data {data}: not a folder")
    if args.max_upload_mb <= 0:
        raise LungLiverSegError("--max-upload-mb must be positive")
    work = args.work.expanduser()
    work.mkdir(parents=True, exist_ok=True)
    return Settings(
        data=data.resolve(), work=work.resolve(), max_upload_mb=args.max_upload_mb, device=args.device
    )


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
