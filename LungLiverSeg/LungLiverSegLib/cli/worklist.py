"""``lunglivseg worklist IMAGES --model M --dataset OUT``: propose every case of a folder of
unlabeled scans (model loaded once; resumable), then print the ranked list and the advice.

The worklist lives beside ``OUT`` (``OUT.worklist/``); the Slicer module and the browser app work
through it case by case and export approved cases into ``OUT``. Given another model than the one
that proposed so far (a retrain), the cases not worked on yet are proposed again by it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from LungLiverSegLib.cli.events import SegmentationDone
from LungLiverSegLib.cli.options import add_runtime_options, positive_int
from LungLiverSegLib.cli.segment import case_progress, progress_printer
from LungLiverSegLib.errors import LungLiverSegError
from LungLiverSegLib.progress import CancelToken, Progress
from LungLiverSegLib.tables import text_table

if TYPE_CHECKING:
    from LungLiverSegLib.worklist.store import Case, Worklist


def add_command(commands: argparse._SubParsersAction) -> None:
    from LungLiverSegLib.worklist.store import STRATEGIES, UNCERTAINTY

    cmd = commands.add_parser(
        "worklist", help="propose every scan of a folder and rank them for correction (most uncertain first)"
    )
    cmd.add_argument("images", type=Path, help="folder of unlabeled images and DICOM series folders")
    cmd.add_argument("--model", required=True, help="model that proposes (a new one re-proposes open cases)")
    cmd.add_argument("--dataset", type=Path, required=True, help="dataset the approved cases go to")
    cmd.add_argument("--ranking", choices=STRATEGIES, default=UNCERTAINTY, help="order of the cases")
    cmd.add_argument("--seed", type=int, default=0, help="seed of the random ranking")
    cmd.add_argument(
        "--retrain-every", type=positive_int, default=4, help="approvals after which a retrain is suggested"
    )
    add_runtime_options(cmd)
    cmd.set_defaults(run=run)


def run(args: argparse.Namespace, cancel: CancelToken) -> int:
    from LungLiverSegLib.bundle.catalogue import find_model
    from LungLiverSegLib.segmentation.memory import reuse_freed_memory
    from LungLiverSegLib.segmentation.segment import STAGES
    from LungLiverSegLib.worklist.propose import propose_all
    from LungLiverSegLib.worklist.store import Worklist

    if not args.images.is_dir():
        raise LungLiverSegError(f"{args.images}: not a folder of images")
    bundle = find_model(args.model)
    model = f"{bundle.name}@{bundle.version}"
    worklist = Worklist.create(
        args.dataset,
        args.images,
        model,
        strategy=args.ranking,
        seed=args.seed,
        retrain_every=args.retrain_every,
    )
    if worklist.settings().model != model:
        worklist.model_installed(model)
    reuse_freed_memory()
    report = progress_printer(args.progress)

    def progress(case: Case, number: int, count: int) -> Progress:
        return case_progress(report, f"{number}/{count} {case.case_id}", cancel, STAGES)

    def proposed(case: Case) -> None:
        if args.progress == "json":
            output = str(worklist.proposal_path(case.case_id))
            print(SegmentationDone(input=case.source, output=output).to_json(), flush=True)

    propose_all(
        worklist,
        device=args.device,
        threads=args.threads,
        cancel=cancel,
        progress=progress,
        on_proposed=proposed,
        bundle=bundle,  # also a bundle folder given by its path, not in the catalogue
    )
    if args.progress != "json":
        print(describe(worklist))
    return 0


def describe(worklist: Worklist) -> str:
    """The ranked cases as a table, then the effort advice."""
    from LungLiverSegLib.worklist.effort import advice, case_effort, efforts

    cases = worklist.cases()
    rows = [["case", "state", "unsure", "changed mL", "model"]]
    for case in cases:
        unsure = "" if case.unsure_ratio is None else f"{case.unsure_ratio:.4f}"
        effort = case_effort(case)
        changed = "" if effort is None else f"{effort[0]:.1f}"
        rows.append([case.case_id, case.state, unsure, changed, case.model or ""])
    settings = worklist.settings()
    return (
        text_table(rows, "llrrl") + "\n" + advice(efforts(cases), worklist.models(), settings.retrain_every)
    )
