"""The ``lunglivseg`` command: segment, evaluate, models, demo (and train/export from their packages).

Command names and options are fixed: other tools script against them. A user error prints one
line (``lunglivseg: error: ...``) and exits with status 2; a cancelled run exits with 130 and
leaves no partial output (every file is written atomically).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path

from LungLiverSegLib.cli.options import EXIT_CANCELLED, EXIT_USER_ERROR, add_runtime_options
from LungLiverSegLib.dataset.export import add_export_command
from LungLiverSegLib.errors import Cancelled, LungLiverSegError
from LungLiverSegLib.progress import CancelToken, Progress, ProgressEvent

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".jpg", ".jpeg")


def main(argv: Sequence[str] | None = None, plugins: Mapping[str, Registrar] | None = None) -> int:
    """Run one command; returns the exit status (0, 2 for a user error, 130 when cancelled)."""
    parser = build_parser(plugins)
    args = parser.parse_args(argv)
    cancel = CancelToken()
    _cancel_on_signals(cancel)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = _show_warning
            return int(args.run(args, cancel) or 0)
    except Cancelled:
        print("lunglivseg: cancelled; nothing was written", file=sys.stderr)
        return EXIT_CANCELLED
    except (LungLiverSegError, FileExistsError) as error:
        print(f"lunglivseg: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR


Registrar = Callable[[argparse._SubParsersAction], None]
"""Adds one sub-command to the parser (``commands.add_parser(...)``)."""

PLUGIN_GROUP = "lunglivseg.commands"


def build_parser(plugins: Mapping[str, Registrar] | None = None) -> argparse.ArgumentParser:
    """The ``lunglivseg`` parser: the core's commands, then those of installed plug-in packages.

    Plug-ins are the ``lunglivseg.commands`` entry points plus ``plugins`` (a composition root
    such as ``python -m LungLiverSegTraining`` passes its own, for a Slicer extension that has no
    package metadata). An import error inside a plug-in is raised, not hidden.
    """
    parser = argparse.ArgumentParser(prog="lunglivseg", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_segment(commands)
    _add_evaluate(commands)
    _add_models(commands)
    _add_demo(commands)
    add_export_command(commands)
    for register in {**_installed_plugins(), **(plugins or {})}.values():
        register(commands)
    return parser


def _installed_plugins() -> dict[str, Registrar]:
    return {entry.name: entry.load() for entry in entry_points(group=PLUGIN_GROUP)}


# --- segment -------------------------------------------------------------------------------


def _add_segment(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser("segment", help="segment an image, a DICOM folder or a folder of images")
    cmd.add_argument("input", type=Path, help="image file, DICOM series folder, or folder of image files")
    cmd.add_argument("output", type=Path, help="output file (.nii.gz, .nrrd, .seg.nrrd) or folder")
    cmd.add_argument("--model", default="lungs-ct-3d", help="model name (see `lunglivseg models`) or path")
    add_runtime_options(cmd)
    cmd.add_argument("--overlap", type=float, default=None, help="sliding-window overlap 0..0.9")
    cmd.add_argument("--batch-size", type=int, default=None, help="windows or slices per forward pass")
    cmd.add_argument("--series-uid", default=None, help="DICOM SeriesInstanceUID when a folder has several")
    cmd.add_argument(
        "--format", default=".nii.gz", help="output suffix for folder input (.nii.gz, .seg.nrrd)"
    )
    cmd.add_argument("--overwrite", action="store_true", help="replace existing output files")
    cmd.set_defaults(run=run_segment)


def run_segment(args: argparse.Namespace, cancel: CancelToken) -> int:
    from LungLiverSegLib.api import segment
    from LungLiverSegLib.segmentation.segment import STAGES, load_model

    if args.overlap is not None and not 0.0 <= args.overlap < 1.0:
        raise LungLiverSegError(f"--overlap must be in [0, 1), got {args.overlap}")
    cases = _segmentation_cases(args.input, args.output, args.format)
    loaded = load_model(args.model, args.device, args.threads)
    report = _progress_printer(args.progress)
    for number, (source, target) in enumerate(cases, start=1):
        label = f"{number}/{len(cases)} {source.name}" if len(cases) > 1 else source.name
        progress = Progress(lambda event, label=label: report(event, label), cancel, STAGES)
        segment(
            source,
            target,
            loaded,
            overlap=args.overlap,
            series_uid=args.series_uid,
            overwrite=args.overwrite,
            progress=progress,
        )
        _emit_done(args.progress, source, target)
    return 0


def _segmentation_cases(source: Path, target: Path, suffix: str) -> list[tuple[Path, Path]]:
    """One (input, output) pair, or one per image file when ``source`` is a folder of images."""
    if not source.exists():
        raise LungLiverSegError(f"{source}: no such file or folder")
    images = sorted(p for p in source.iterdir() if _is_image_file(p)) if source.is_dir() else []
    if not images:
        return [(source, target)]
    if target.exists() and not target.is_dir():
        raise LungLiverSegError(f"{target}: the input is a folder, so the output must be a folder")
    target.mkdir(parents=True, exist_ok=True)
    return [(image, target / (_stem(image) + suffix)) for image in images]


def _is_image_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _progress_printer(mode: str) -> Callable[[ProgressEvent, str], None]:
    if mode == "json":
        return lambda event, label: print(
            json.dumps(
                {
                    "event": "progress",
                    "case": label,
                    "fraction": round(event.fraction, 4),
                    "stage": event.stage,
                    "elapsed_s": round(event.elapsed_s, 2),
                    "eta_s": None if event.eta_s is None else round(event.eta_s, 1),
                }
            ),
            flush=True,
        )
    if mode == "bar":
        return _print_bar
    return lambda event, label: None


def _print_bar(event: ProgressEvent, label: str) -> None:
    width = 30
    filled = int(round(event.fraction * width))
    eta = "--" if event.eta_s is None else f"{event.eta_s:4.0f}s"
    bar = "#" * filled + "." * (width - filled)
    line = f"\r{label[:30]:30} [{bar}] {event.fraction:4.0%} {event.stage:11} ETA {eta}"
    end = "\n" if event.fraction >= 1.0 else ""
    print(line, end=end, file=sys.stderr, flush=True)


def _emit_done(mode: str, source: Path, target: Path) -> None:
    if mode == "json":
        print(json.dumps({"event": "done", "input": str(source), "output": str(target)}), flush=True)
    else:
        print(f"wrote {target}", file=sys.stderr)


# --- evaluate ------------------------------------------------------------------------------


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser("evaluate", help="Dice, Jaccard, NSD, ASD, HD95, HD of predictions vs truth")
    cmd.add_argument("pred", type=Path, help="predicted label image, or a folder of them")
    cmd.add_argument("gt", type=Path, help="ground-truth label image, or a folder of them")
    cmd.add_argument(
        "--labels",
        nargs="+",
        default=None,
        help="label values to score, optionally named: 1 2 or 1=lungs 2=liver (default: all present)",
    )
    cmd.add_argument("--tolerance-mm", nargs="+", type=float, default=[1.0, 2.0], help="NSD tolerances in mm")
    fmt = cmd.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON")
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    cmd.set_defaults(run=run_evaluate)


def run_evaluate(args: argparse.Namespace, cancel: CancelToken) -> int:
    from LungLiverSegLib.evaluation import evaluate

    labels = parse_label_arguments(args.labels)
    tolerances = tuple(args.tolerance_mm)
    if args.pred.is_dir() and args.gt.is_dir():
        result = evaluate.evaluate_folders(args.pred, args.gt, labels=labels, tolerances_mm=tolerances)
    else:
        result = evaluate.evaluate_pair(args.pred, args.gt, labels=labels, tolerances_mm=tolerances)
    if args.json:
        print(evaluate.to_json(result))
    elif args.csv:
        print(evaluate.to_csv(result), end="")
    else:
        print(evaluate.format_table(result))
    return 0


def parse_label_arguments(values: Sequence[str] | None) -> dict[int, str] | None:
    """``["1", "2=liver"]`` -> ``{1: "label_1", 2: "liver"}``; clear error on anything else."""
    if not values:
        return None
    labels: dict[int, str] = {}
    for value in values:
        number, _, name = value.partition("=")
        if not number.strip().isdigit() or int(number) == 0:
            raise LungLiverSegError(f"--labels: {value!r} is not a positive label value (e.g. 1 or 1=lungs)")
        labels[int(number)] = name.strip() or f"label_{int(number)}"
    return labels


# --- models --------------------------------------------------------------------------------


def _add_models(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser("models", help="list the available models, or import one")
    sub = cmd.add_subparsers(dest="models_command", metavar="import")
    imp = sub.add_parser("import", help="install a model bundle (folder or .zip) into your models folder")
    imp.add_argument("path", type=Path)
    imp.add_argument(
        "--overwrite", action="store_true", help="replace an installed bundle of the same version"
    )
    cmd.set_defaults(run=run_models)


def run_models(args: argparse.Namespace, cancel: CancelToken) -> int:
    from LungLiverSegLib.bundle import catalogue

    if getattr(args, "models_command", None) == "import":
        entry = catalogue.import_model(args.path, overwrite=args.overwrite)
        print(f"installed {entry.name} {entry.version} into {entry.folder}")
        return 0
    print(catalogue.format_models_table(catalogue.list_models()))
    return 0


# --- demo ----------------------------------------------------------------------------------


def _add_demo(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser("demo", help="segment a generated CT phantom end to end (no network needed)")
    cmd.add_argument("--out", type=Path, default=Path("lunglivseg-demo"), help="output folder")
    cmd.add_argument(
        "--model",
        nargs="+",
        help="models to run on the phantom; each segment comes from the first model that has it "
        "(default: lungs-ct-3d, then phantom-ct-3d for the liver)",
    )
    add_runtime_options(cmd)
    cmd.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace, cancel: CancelToken) -> int:
    from LungLiverSegLib.demo.run import DEMO_MODELS
    from LungLiverSegLib.demo.run import run_demo as demo
    from LungLiverSegLib.segmentation.segment import STAGES

    report = _progress_printer(args.progress)

    def progress_for(model: str) -> Progress:
        return Progress(lambda event: report(event, f"phantom ({model})"), cancel, STAGES)

    options = {"device": args.device, "threads": args.threads, "progress_for": progress_for}
    summary = demo(args.out, models=args.model or DEMO_MODELS, **options)
    print(summary)
    return 0


# --- helpers -------------------------------------------------------------------------------


def _cancel_on_signals(cancel: CancelToken) -> None:
    """Ctrl-C / SIGTERM (e.g. the Slicer module's Cancel) cancel cooperatively at the next step."""

    def handler(signum: int, frame: object) -> None:
        if cancel.cancelled:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        cancel.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    print(f"lunglivseg: warning: {message}", file=sys.stderr)
