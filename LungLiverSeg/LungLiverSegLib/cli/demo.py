"""``lunglivseg demo``: segment a generated CT phantom end to end and print what it wrote and scored."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from LungLiverSegLib.cli.options import add_runtime_options
from LungLiverSegLib.cli.segment import case_progress, progress_printer
from LungLiverSegLib.progress import CancelToken, Progress

if TYPE_CHECKING:
    from LungLiverSegLib.demo.run import DemoResult


def add_command(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser("demo", help="segment a generated CT phantom end to end (no network needed)")
    cmd.add_argument("--out", type=Path, default=Path("lunglivseg-demo"), help="output folder")
    cmd.add_argument(
        "--model",
        nargs="+",
        help="models to run on the phantom; each segment comes from the first model that has it "
        "(default: lungs-ct-3d, then phantom-ct-3d for the liver)",
    )
    add_runtime_options(cmd)
    cmd.set_defaults(run=run)


def run(args: argparse.Namespace, cancel: CancelToken) -> int:
    from LungLiverSegLib.demo.run import DEMO_MODELS, run_demo
    from LungLiverSegLib.segmentation.segment import STAGES

    report = progress_printer(args.progress)

    def progress_for(model: str) -> Progress:
        return case_progress(report, f"phantom ({model})", cancel, STAGES)

    options = {"device": args.device, "threads": args.threads, "progress_for": progress_for}
    print(format_summary(run_demo(args.out, models=args.model or DEMO_MODELS, **options)))
    return 0


def format_summary(result: DemoResult) -> str:
    """The models, the files, the volume table and each segment's agreement with the truth."""
    from LungLiverSegLib.demo.report import format_volume_table
    from LungLiverSegLib.demo.run import NSD_TOLERANCE_MM

    agreement = "\n".join(
        f"  {name:12} Dice {score.dice:.3f}  NSD@{NSD_TOLERANCE_MM:g}mm {score.nsd:.3f}  (from {score.run})"
        for name, score in result.agreement.items()
    )
    return (
        f"models: {'; '.join(map(str, result.runs))}\n"
        f"input: {result.ct} (generated phantom, size {result.ct_size}, spacing {result.ct_spacing} mm)\n"
        f"segmentation: {result.segmentation}\noverlay: {result.overlay}\nvolumes: {result.volumes_csv}\n"
        f"{format_volume_table(result.volumes_ml)}\nagreement with the phantom's truth:\n{agreement}"
    )
