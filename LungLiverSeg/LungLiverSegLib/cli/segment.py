"""``lunglivseg segment``: one image, a DICOM series folder, or every image in a folder."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from LungLiverSegLib.cli.events import SegmentationDone, SegmentationProgress
from LungLiverSegLib.cli.options import add_runtime_options, positive_int
from LungLiverSegLib.errors import LungLiverSegError
from LungLiverSegLib.progress import CancelToken, Progress, ProgressEvent
from LungLiverSegLib.tables import progress_bar

BAR_WIDTH = 30

CaseProgressPrinter = Callable[[ProgressEvent, str], None]
"""Shows one progress report of the case named by the second argument."""


def add_command(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser("segment", help="segment an image, a DICOM folder or a folder of images")
    cmd.add_argument("input", type=Path, help="image file, DICOM series folder, or folder of image files")
    cmd.add_argument("output", type=Path, help="output file (.nii.gz, .nrrd, .seg.nrrd) or folder")
    cmd.add_argument("--model", default="lungs-ct-3d", help="model name (see `lunglivseg models`) or path")
    add_runtime_options(cmd)
    cmd.add_argument("--overlap", type=float, default=None, help="sliding-window overlap 0..0.9")
    cmd.add_argument(
        "--batch-size", type=positive_int, default=None, help="windows or slices per forward pass"
    )
    cmd.add_argument("--series-uid", default=None, help="DICOM SeriesInstanceUID when a folder has several")
    cmd.add_argument(
        "--format", default=".nii.gz", help="output suffix for folder input (.nii.gz, .seg.nrrd)"
    )
    cmd.add_argument("--overwrite", action="store_true", help="replace existing output files")
    cmd.set_defaults(run=run)


def run(args: argparse.Namespace, cancel: CancelToken) -> int:
    from LungLiverSegLib.api import segment
    from LungLiverSegLib.imageio import check_output_path
    from LungLiverSegLib.segmentation.memory import reuse_freed_memory
    from LungLiverSegLib.segmentation.segment import STAGES, load_model

    if args.overlap is not None and not 0.0 <= args.overlap < 1.0:
        raise LungLiverSegError(f"--overlap must be in [0, 1), got {args.overlap}")
    cases = segmentation_cases(args.input, args.output, args.format)
    for _, target in cases:  # every output, before the model loads and the first case runs
        check_output_path(target, overwrite=args.overwrite)
    reuse_freed_memory()
    loaded = load_model(args.model, args.device, args.threads)
    report = progress_printer(args.progress)
    for number, (source, target) in enumerate(cases, start=1):
        label = f"{number}/{len(cases)} {source.name}" if len(cases) > 1 else source.name
        progress = case_progress(report, label, cancel, STAGES)
        segment(
            source,
            target,
            loaded,
            overlap=args.overlap,
            batch_size=args.batch_size,
            series_uid=args.series_uid,
            overwrite=args.overwrite,
            progress=progress,
        )
        print_done(args.progress, source, target)
    return 0


def segmentation_cases(source: Path, target: Path, suffix: str) -> list[tuple[Path, Path]]:
    """One (input, output) pair, or one per image file when ``source`` is a folder of images."""
    if not source.exists():
        raise LungLiverSegError(f"{source}: no such file or folder")
    images = _image_stems(source) if source.is_dir() else {}
    if not images:
        return [(source, target)]
    if target.exists() and not target.is_dir():
        raise LungLiverSegError(f"{target}: the input is a folder, so the output must be a folder")
    target.mkdir(parents=True, exist_ok=True)
    return [(image, target / (stem + suffix)) for image, stem in images.items()]


def _image_stems(folder: Path) -> dict[Path, str]:
    """The image files in ``folder``, sorted, with their names' stems (a ``.seg.nrrd`` is a
    segmentation, not an input; a hidden file, such as a half-written temporary one, is no one's
    input)."""
    from LungLiverSegLib.files import is_hidden
    from LungLiverSegLib.imageio import SEGMENTATION_SUFFIX, split_image_name

    stems = {}
    for path in sorted(folder.iterdir()):
        stem, kind = split_image_name(path)
        if kind not in ("", SEGMENTATION_SUFFIX) and path.is_file() and not is_hidden(path):
            stems[path] = stem
    return stems


def progress_printer(mode: str) -> CaseProgressPrinter:
    """``--progress``: JSON lines on stdout (for programs), a bar on stderr, or nothing."""
    if mode == "json":
        return lambda event, case: print(SegmentationProgress.of(event, case).to_json(), flush=True)
    if mode == "bar":
        return print_bar
    return lambda event, case: None


def case_progress(
    report: CaseProgressPrinter, case: str, cancel: CancelToken, stages: dict[str, float]
) -> Progress:
    """The ``Progress`` of one case, whose reports ``report`` shows under the case's name."""
    return Progress(lambda event: report(event, case), cancel, stages)


def print_bar(event: ProgressEvent, case: str) -> None:
    """One line on stderr, redrawn in place, ended once the case is done."""
    eta = "--" if event.eta_s is None else f"{event.eta_s:4.0f}s"
    line = f"\r{case[:30]:30} {progress_bar(event.fraction, BAR_WIDTH)} {event.stage:11} ETA {eta}"
    end = "\n" if event.fraction >= 1.0 else ""
    print(line, end=end, file=sys.stderr, flush=True)


def print_done(mode: str, source: Path, target: Path) -> None:
    """The ``done`` event in JSON mode, else ``wrote OUTPUT`` on stderr."""
    if mode == "json":
        print(SegmentationDone(input=str(source), output=str(target)).to_json(), flush=True)
    else:
        print(f"wrote {target}", file=sys.stderr)
