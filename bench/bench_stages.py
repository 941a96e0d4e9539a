"""Where a segmentation's time goes: read, preprocess, network, back to grid, postprocess, write.

For each input, in its own process (so that peak RSS is that run's), with the model loaded once:
``api.segment`` from file to file ``--runs`` times (median per stage, the run's own
``stage_seconds``), then the network alone on the same windows in the same batches (recorded by a
hook during the first run, replayed on random data): the "network share" is that time over the
read-to-write total. The process is set up as ``lunglivseg segment`` sets up its own
(``reuse_freed_memory``).

With ``--baseline-commit SHA`` the same is measured, in the same invocation, for the package as it
was at that commit (a temporary ``git worktree``), and the outputs are compared: Dice per label of
today's output against the baseline's, which must stay >= 0.999.

    python bench/bench_stages.py --baseline-commit 00194e1

Inputs: ``lungs-ct-3d`` on the full-resolution LCTSC CT (512x512x154), ``liver-ct-2d`` on the
whole abdominal CT of ``ct_abdomen_totalseg_example``, ``lungs-ct-3d`` on a generated
512x512x600 chest CT. Needs ../shared/data for the first two.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
STAGE_NAMES = ("read", "preprocess", "network", "back to grid", "postprocess", "write")
INPUTS = {
    "lctsc-512x512x154": ("lungs-ct-3d", DATA / "ct_lung_lctsc_full" / "Case_000_ct.nii.gz"),
    "abdomen-ct-liver-2d": ("liver-ct-2d", DATA / "ct_abdomen_totalseg_example" / "example_ct.nii.gz"),
    "synthetic-512x512x600": ("lungs-ct-3d", None),
    "batch-cxr-montgomery": ("lungs-cxr-2d", DATA / "cxr_lung_montgomery" / "images"),
    "batch-ct-lctsc-2mm": ("lungs-ct-3d", DATA / "ct_lung_lctsc_2mm"),
}
"""A folder is the batch path: its first ``BATCH_CASES`` images, each once, with the model loaded
once (``lunglivseg segment FOLDER``'s loop); medians are then over cases."""
BATCH_CASES = 8
BATCH_IMAGE_ENDINGS = (".png", "_ct.nii.gz")
DICE_REQUIRED = 0.999
TOTALS = (("read to write", "total"), ("first run", "first_run"), ("network alone", "network_only"))


def synthetic_chest_ct(slices: int, path: Path) -> Path:
    """A chest-like CT (air, a body, two lungs in the upper 60% of the slices), written to ``path``."""
    from LungLiverSegLib.geometry import Image
    from LungLiverSegLib.imageio.images import write_image

    array = np.full((slices, 512, 512), -1000, np.int16)
    zz, yy, xx = np.ogrid[:slices, :512, :512]
    body = ((yy - 256) / 200.0) ** 2 + ((xx - 256) / 240.0) ** 2 <= 1.0
    array[:, body[0]] = 40
    lungs = (((yy - 230) / 120.0) ** 2 + ((np.abs(xx - 256) - 100) / 80.0) ** 2 <= 1.0) & (zz < 0.6 * slices)
    array[lungs] = -850
    return write_image(path, Image(array, (0.7, 0.7, 0.5), (0.0, 0.0, 0.0)), overwrite=True)


def measure(image: str, model: str, output: str, runs: int, threads: int) -> dict:
    """This process's stage medians, end-to-end median and network-only time (see the module)."""
    from LungLiverSegLib import progress
    from LungLiverSegLib.api import segment
    from LungLiverSegLib.segmentation import memory
    from LungLiverSegLib.segmentation.segment import load_model

    if hasattr(memory, "reuse_freed_memory"):  # what `lunglivseg segment` does (a baseline may not)
        memory.reuse_freed_memory()
    takes_clock = "clock" in inspect.signature(segment).parameters
    loaded = load_model(model, "cpu", threads)
    batches: list[tuple[int, ...]] = []
    hook = loaded.network.register_forward_pre_hook(lambda _, inputs: batches.append(tuple(inputs[0].shape)))
    cases = _cases(Path(image), Path(output), runs)
    stages, totals = [], []
    for number, (source, target) in enumerate(cases):
        clock = progress.StageClock()
        start = time.perf_counter()
        if takes_clock:
            segment(source, target, loaded, overwrite=True, clock=clock)
        else:  # a baseline from before the clock: 00194e1 kept the stages in the metadata
            clock.seconds = segment(source, target, loaded, overwrite=True).metadata.get("stage_seconds", {})
        totals.append(time.perf_counter() - start)
        stages.append(clock.seconds)
        if number == 0 and not Path(image).is_dir():
            hook.remove()  # one image run again: its windows once are what each run does
    per_run = len(cases) if Path(image).is_dir() else 1
    return {
        "stages": {name: statistics.median(run.get(name, 0.0) for run in stages) for name in stages[0]},
        "total": statistics.median(totals),
        "first_run": totals[0],
        "network_only": _network_alone(loaded.network, batches) / per_run,
        "windows": sum(shape[0] for shape in batches) / per_run,
        "forward_calls": len(batches) / per_run,
    }


def _cases(image: Path, output: Path, runs: int) -> list[tuple[Path, Path]]:
    """``runs`` times the one image, or each of a folder's first ``BATCH_CASES`` images once."""
    if not image.is_dir():
        return [(image, output)] * runs
    output.mkdir(exist_ok=True)
    sources = sorted(path for path in image.iterdir() if path.name.endswith(BATCH_IMAGE_ENDINGS))
    return [(source, output / f"{source.name.split('.')[0]}.nii.gz") for source in sources[:BATCH_CASES]]


def _network_alone(network, batches: list[tuple[int, ...]]) -> float:
    """Seconds of the network's forward passes on random data of the recorded batch shapes."""
    import torch

    generator = torch.Generator().manual_seed(0)
    inputs = [torch.rand(shape, generator=generator) for shape in batches]
    with torch.inference_mode():
        network(inputs[0])  # the first call of a shape sets up its kernels: the runs were warm too
        start = time.perf_counter()
        for batch in inputs:
            torch.softmax(network(batch), dim=1)
        return time.perf_counter() - start


def child(args: argparse.Namespace) -> None:
    result = measure(args.image, args.model, args.output, args.runs, args.threads)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def in_child(image: str, model: str, output: str, args: argparse.Namespace, package: Path | None) -> dict:
    """``measure`` in a fresh process, importing the package from ``package`` (default: this tree)."""
    command = [sys.executable, __file__, "--child", "--image", image, "--model", model, "--output", output]
    command += ["--runs", str(args.runs), "--threads", str(args.threads)]
    env = dict(os.environ)
    if package is not None:
        env["PYTHONPATH"] = str(package / "LungLiverSeg")
    completed = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if completed.returncode != 0:
        raise SystemExit(f"measurement failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def dice_per_label(path: str, reference: str) -> dict[int, float]:
    from LungLiverSegLib.evaluation.metrics import dice
    from LungLiverSegLib.imageio.images import read_image

    a, b = read_image(path).array, read_image(reference).array
    values = sorted((set(np.unique(a)) | set(np.unique(b))) - {0})
    return {int(v): round(float(dice(a == v, b == v)), 5) for v in values}


def print_breakdown(name: str, results: dict[str, dict]) -> None:
    print(f"\n{name}")
    print(_row("stage", list(results)))
    for stage in STAGE_NAMES:
        print(_row(stage, [_share(r["stages"].get(stage), r["total"]) for r in results.values()]))
    for label, key in TOTALS:
        print(_row(label, [f"{result[key]:.2f} s" for result in results.values()]))
    print(_row("network share", [f"{r['network_only'] / r['total']:.0%}" for r in results.values()]))
    print(_row("peak RSS", [f"{result['peak_rss_mb']:.0f} MB" for result in results.values()]))
    first = next(iter(results.values()))
    print(f"({first['windows']:g} windows or slices in {first['forward_calls']:g} forward passes per run)")


def _row(label: str, cells: list[str]) -> str:
    return f"{label:14}" + "".join(f"{cell:>22}" for cell in cells)


def _share(seconds: float | None, total: float) -> str:
    return "" if seconds is None else f"{seconds:.2f} s {seconds / total:4.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per input (medians)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--baseline-commit", help="also measure the package at this commit, and compare")
    parser.add_argument("--inputs", nargs="+", choices=list(INPUTS), default=list(INPUTS))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        baseline = _baseline_tree(args.baseline_commit, work) if args.baseline_commit else None
        try:
            for name in args.inputs:
                compare_on(name, work, args, baseline)
        finally:
            if baseline is not None:
                remove = ["git", "-C", str(REPO), "worktree", "remove", "--force", str(baseline)]
                subprocess.run(remove, check=True)


def compare_on(name: str, work: Path, args: argparse.Namespace, baseline: Path | None) -> None:
    model, image = INPUTS[name]
    if image is None:
        image = synthetic_chest_ct(600, work / "synthetic_ct.nii.gz")
    if not image.exists():
        print(f"\n{name}: skipped ({image} is absent)")
        return
    suffix = "" if image.is_dir() else ".nii.gz"
    today, before = work / f"{name}-today{suffix}", work / f"{name}-baseline{suffix}"
    results = {"today": in_child(str(image), model, str(today), args, None)}
    if baseline is not None:
        results[f"at {args.baseline_commit}"] = in_child(str(image), model, str(before), args, baseline)
    runs = f"{BATCH_CASES} cases, model loaded once" if image.is_dir() else f"{args.runs} runs"
    print_breakdown(f"{name} ({model}, {runs}, {args.threads} threads)", results)
    if baseline is not None:
        before_s, after_s = results[f"at {args.baseline_commit}"]["total"], results["today"]["total"]
        agreement = _agreement(today, before)
        equal = min(agreement.values(), default=1.0) >= DICE_REQUIRED
        verdict = "equal output" if equal else "OUTPUT DIFFERS"
        print(f"speed-up {before_s / after_s:.2f}x; Dice per label today vs baseline {agreement}: {verdict}")


def _agreement(today: Path, baseline: Path) -> dict[int, float]:
    """The lowest Dice per label over the outputs (one file, or a folder of them)."""
    outputs = sorted(today.iterdir()) if today.is_dir() else [today]
    pairs = [(path, baseline / path.name if today.is_dir() else baseline) for path in outputs]
    lowest: dict[int, float] = {}
    for path, reference in pairs:
        for value, overlap in dice_per_label(str(path), str(reference)).items():
            lowest[value] = min(overlap, lowest.get(value, 1.0))
    return lowest


def _baseline_tree(commit: str, work: Path) -> Path:
    tree = work / "baseline"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), commit], check=True)
    return tree


if __name__ == "__main__":
    main()
