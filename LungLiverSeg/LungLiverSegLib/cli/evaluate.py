"""``lunglivseg evaluate``: Dice, Jaccard, NSD, ASD, HD95, HD of predictions against the truth."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from LungLiverSegLib.errors import LungLiverSegError
from LungLiverSegLib.labels import default_label_name
from LungLiverSegLib.progress import CancelToken


def add_command(commands: argparse._SubParsersAction) -> None:
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
    cmd.set_defaults(run=run)


def run(args: argparse.Namespace, cancel: CancelToken) -> int:
    from LungLiverSegLib.evaluation import evaluate

    labels = parse_label_arguments(args.labels)
    tolerances = tuple(args.tolerance_mm)
    result: evaluate.CaseResult | evaluate.FolderResult
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
        labels[int(number)] = name.strip() or default_label_name(int(number))
    return labels
