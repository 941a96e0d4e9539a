"""A worklist run on real scans, with the expert's labels standing in for the person's corrections.

The LCTSC CTs of ../shared/data (2 mm) are treated as unlabeled: the worklist proposes them with
``lungs-ct-3d`` and ranks them; each "approved" case is its expert lung mask (what a person would
end with), exported with the model's proposal so the correction effort is measured as in the
front ends. After ``--retrain-every`` approvals the lung model is fine-tuned on the approved cases
(``lunglivseg train --init-from``), installed, and proposes the open cases again; the effort per
model, the advice and the effort curve (SVG) are printed and written to ``--out``.

    python Training/scripts/simulate_worklist.py --out /tmp/worklist-run [--epochs 20] [--cases 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from LungLiverSegLib.bundle.catalogue import find_model
from LungLiverSegLib.bundle.importing import import_model
from LungLiverSegLib.dataset.export import export_case
from LungLiverSegLib.imageio import read_image, read_segmentation
from LungLiverSegLib.paths import USER_MODELS_ENV
from LungLiverSegLib.worklist.effort import advice, by_generation, effort_svg, efforts
from LungLiverSegLib.worklist.propose import propose_all
from LungLiverSegLib.worklist.store import Worklist

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ct_lung_lctsc_2mm"
MODEL = "lungs-ct-3d"


def link_scans(images: Path, count: int) -> dict[str, Path]:
    """The CTs as a folder of unlabeled scans (links); their expert masks kept aside by case."""
    images.mkdir(parents=True, exist_ok=True)
    truths = {}
    for ct in sorted(DATA.glob("Case_*_ct.nii.gz"))[:count]:
        (images / ct.name).unlink(missing_ok=True)
        (images / ct.name).symlink_to(ct)
        truths[ct.name.removesuffix(".nii.gz")] = ct.with_name(ct.name.replace("_ct", "_lungs"))
    return truths


def approve_next(worklist: Worklist, truths: dict[str, Path]) -> str | None:
    """Next case: its proposal replaced by the expert mask, exported and approved."""
    case = worklist.claim_next("simulation")
    if case is None:
        return None
    settings = worklist.settings()
    proposal, label_map = read_segmentation(worklist.proposal_path(case.case_id))
    image = read_image(settings.images / case.source)
    approved = read_image(truths[case.case_id])
    name, _, version = (case.model or settings.model).partition("@")
    record = export_case(
        worklist.dataset,
        case.case_id,
        image,
        approved.with_array(approved.array.astype("uint8")),
        label_map,
        proposal=proposal,
        model={"name": name, "version": version},
        modality="CT",
    )
    worklist.approve(case.case_id, record)
    return case.case_id


def fine_tune(worklist: Worklist, out: Path, epochs: int) -> str:
    """Fine-tune the current model on the approved cases; install it; return its key."""
    run = out / f"run-{worklist.settings().generation + 1}"
    command = [sys.executable, "-m", "LungLiverSegTraining", "train", "--dataset", str(worklist.dataset)]
    command += ["--config", MODEL, "--out", str(run), "--epochs", str(epochs), "--progress", "none"]
    command += ["--init-from", str(find_model(worklist.settings().model).stored_folder)]
    started = time.monotonic()
    subprocess.run(command, check=True)
    bundle = next((run / "bundle").iterdir())
    entry = import_model(bundle, overwrite=True, replace=True).entry
    print(f"fine-tuned in {time.monotonic() - started:.0f} s: {entry.name}@{entry.version}", flush=True)
    return f"{entry.name}@{entry.version}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--retrain-every", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault(USER_MODELS_ENV, str(args.out / "models"))
    truths = link_scans(args.out / "images", args.cases)
    bundled = find_model(MODEL)
    worklist = Worklist.create(
        args.out / "dataset",
        args.out / "images",
        f"{bundled.name}@{bundled.version}",
        retrain_every=args.retrain_every,
    )
    while True:
        proposed = propose_all(worklist, threads=2)
        print(f"proposed {proposed} cases with {worklist.settings().model}", flush=True)
        for _ in range(args.retrain_every):
            if (case_id := approve_next(worklist, truths)) is None:
                break
            print(f"approved {case_id}", flush=True)
        if not any(case.state == "proposed" for case in worklist.cases()):
            break
        worklist.model_installed(fine_tune(worklist, args.out, args.epochs))
    points = efforts(worklist.cases())
    for case in points:
        changed = f"{case.changed_ml:7.1f} mL changed"
        print(f"{case.case_id:12} generation {case.generation}  {changed}  Dice {case.dice:.4f}")
    for mean in by_generation(points, worklist.models()):
        print(
            f"model {mean.model} (generation {mean.generation}): {mean.cases} cases, "
            f"{mean.changed_ml:.1f} mL changed, Dice {mean.dice:.4f}"
        )
    print(advice(points, worklist.models(), args.retrain_every))
    (args.out / "effort.svg").write_text(effort_svg(points))


if __name__ == "__main__":
    main()
