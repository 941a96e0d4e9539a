"""GPU check: CUDA segmentation and training against the CPU, in one run of under 8 minutes.

Run on a machine with a CUDA GPU (from the repository root)::

    python bench/gpu_check.py                      # --device auto: the GPU, else exit status 2
    python bench/gpu_check.py --dry-run --device cpu   # small sizes, the whole path on the CPU (< 1 min)

It prints four numbered sections:

1. segmentation time (``lungs-ct-3d``, AMP: float16 autocast on CUDA, as ``segment`` does) of the
   512x512x154 LCTSC CT (``../shared/data``, skipped when absent) and of a synthetic 512x512x300
   CT (``bench_stages.synthetic_chest_ct``), on the device (first run and a warm second run) against
   the CPU in the same run, and the ratio;
2. peak GPU memory (``torch.cuda.max_memory_allocated``) of the warm run against the estimate of
   the plan the segmentation made (``memory.plan_execution``, recorded as it is called); on the
   CPU, the process's peak RSS against the plan's RAM estimate;
3. training throughput of our trainer against a plain MONAI loop on the device
   (``bench_training.ours`` / ``plain_monai``): iterations/s and the busy fraction (synchronised
   forward + backward + update time over wall time);
4. the device's labels against the CPU's: Dice per label, each must be >= 0.99.

Exit status: 0 all measured and equal; 1 a Dice below 0.99; 2 nothing measured: no CUDA without
``--dry-run``/``--device cpu`` (one line says so), or a dependency missing (one line says what to
install: the GPU machine has torch but not MONAI or SimpleITK, so whoever runs it there carries
the wheels and installs them first, e.g. ``pip install --no-index --find-links WHEELS monai SimpleITK``).
``--time-limit-s``: no new measurement starts past it (those left are printed as skipped).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import resource
import sys
import tempfile
import time
import tomllib
from dataclasses import replace
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
PATHS = [REPO / "bench", REPO / "LungLiverSeg", REPO / "Training"]
"""Where ``bench_stages``, ``bench_training`` and the packages are when they are not installed."""
MODEL = "lungs-ct-3d"
DICE_REQUIRED = 0.99
MIB = 1024**2


def missing_packages(requirements: list[str]) -> list[str]:
    """The requirements (``name`` + specifier, as in pyproject) whose distribution is not installed."""
    missing = []
    for requirement in requirements:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement)
        try:
            importlib.metadata.version(name.group(0) if name else requirement)
        except importlib.metadata.PackageNotFoundError:
            missing.append(requirement)
    return missing


def check_dependencies() -> None:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    missing = missing_packages([d for d in dependencies if not d.startswith("torch")])
    if missing:
        quoted = " ".join(f"'{requirement}'" for requirement in missing)
        stop(
            f"gpu_check: missing {', '.join(missing)}: install them first, e.g. `pip install {quoted}` "
            "(offline: pip install --no-index --find-links WHEELS_DIR ... with carried wheels)"
        )


def stop(message: str) -> None:
    """Exit status 2, nothing measured: the one line says why."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


def every_fourth_voxel_in_plane(path: Path) -> Path:
    """The dry run's CT: ``bench_stages``'s 512x512 synthetic CT at a quarter of its in-plane size."""
    from LungLiverSegLib.geometry import Image
    from LungLiverSegLib.imageio.images import read_image, write_image

    image = read_image(path)
    spacing = (image.spacing[0] * 4, image.spacing[1] * 4, image.spacing[2])
    return write_image(path, Image(image.array[:, ::4, ::4].copy(), spacing, image.origin), overwrite=True)


class Budget:
    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = seconds, time.perf_counter()

    def allows(self, what: str) -> bool:
        elapsed = time.perf_counter() - self.start
        if elapsed > self.seconds:
            print(f"  {what}: skipped (past --time-limit-s {self.seconds:g}: {elapsed:.0f} s elapsed)")
        return elapsed <= self.seconds


def timed_segmentation(loaded, image: Path, output: Path) -> tuple[float, object]:
    """Seconds of ``api.segment`` from file to file, and the plan the segmentation made."""
    import torch
    from LungLiverSegLib.api import segment
    from LungLiverSegLib.segmentation import segment as segment_module
    from LungLiverSegLib.segmentation.memory import plan_execution

    plans = []

    def recording(*args, **kwargs):
        plans.append(plan_execution(*args, **kwargs))
        return plans[-1]

    if loaded.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(loaded.device)
    start = time.perf_counter()
    with mock.patch.object(segment_module, "plan_execution", recording):
        segment(image, output, loaded, overwrite=True)
    if loaded.device.type == "cuda":
        torch.cuda.synchronize(loaded.device)
    return time.perf_counter() - start, plans[-1]


def segmentation(
    inputs: dict[str, Path], device, work: Path, budget: Budget, warm_run: bool
) -> dict[str, dict]:
    """Section 1, and the numbers of sections 2 and 4, per input (``warm_run``: the device's
    time is that of a second run)."""
    import torch
    from bench_stages import dice_per_label
    from LungLiverSegLib.segmentation.segment import load_model

    print(f"[1] segmentation time ({MODEL}, AMP {'on' if device.type == 'cuda' else 'off: CPU'})")
    models = {"cpu": load_model(MODEL, "cpu"), device.type: load_model(MODEL, device)}
    results = {}
    for name, image in inputs.items():
        if not budget.allows(name):
            continue
        on_cpu, on_device = work / f"{name}-cpu.nii.gz", work / f"{name}-{device.type}.nii.gz"
        first, plan = timed_segmentation(models[device.type], image, on_device)
        warm, plan = timed_segmentation(models[device.type], image, on_device) if warm_run else (first, plan)
        cpu, _ = timed_segmentation(models["cpu"], image, on_cpu)
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
        results[name] = {"plan": plan, "peak": peak, "dice": dice_per_label(str(on_device), str(on_cpu))}
        print(
            f"  {name}: {device.type} {warm:.2f} s{f' (first run {first:.2f} s)' if warm_run else ''}, "
            f"cpu {cpu:.2f} s: "
            f"cpu/{device.type} {cpu / warm:.2f}x"
        )
    return results


def memory_section(results: dict[str, dict]) -> None:
    print("[2] peak memory against the segmentation's plan (memory.plan_execution)")
    for name, result in results.items():
        plan = result["plan"]
        if result["peak"] is None:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            planned = plan.peak_ram_bytes
            print(f"  {name}: cpu, process peak RSS {rss:.0f} MiB, plan RAM {planned / MIB:.0f} MiB")
        else:
            peak, planned = result["peak"], plan.peak_vram_bytes
            print(
                f"  {name}: peak GPU memory {peak / MIB:.0f} MiB, plan {planned / MIB:.0f} MiB "
                f"(peak/plan {peak / max(planned, 1):.2f}; plan: {plan.device}, batch {plan.batch_size})"
            )


def training_section(device, dry_run: bool, budget: Budget) -> None:
    import bench_training

    iterations = 2 if dry_run else 10
    print(f"[3] training throughput ({MODEL}, {device.type}, {iterations} iterations after warm-up)")
    if not budget.allows("training"):
        return
    config = bench_training.bench_config(small=dry_run)
    if dry_run:  # one case of two patches a batch
        config = replace(config, batch_size=1, samples_per_case=2).validate()
    cases = bench_training.prepared_cases(config)
    loops = {"ours": bench_training.ours, "plain MONAI": bench_training.plain_monai}
    results = {name: loop(config, cases, device, iterations) for name, loop in loops.items()}
    for name, result in results.items():
        print(
            f"  {name:12} iterations/s {result['iterations/s']:.3f}  samples/s {result['samples/s']:.3f}  "
            f"busy fraction {result['step share']:.2f}"
        )
    ratio = results["ours"]["iterations/s"] / results["plain MONAI"]["iterations/s"]
    print(f"  ours / plain MONAI iterations/s {ratio:.2f}")


def dice_section(results: dict[str, dict], device) -> bool:
    print(f"[4] {device.type} labels against cpu labels: Dice per label >= {DICE_REQUIRED}")
    equal = True
    for name, result in results.items():
        lowest = min(result["dice"].values(), default=1.0)
        equal &= lowest >= DICE_REQUIRED
        print(f"  {name}: {result['dice']} min {lowest:.5f} {'ok' if lowest >= DICE_REQUIRED else 'DIFFERS'}")
    return equal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--dry-run", action="store_true", help="small sizes, a few iterations (CPU allowed)")
    parser.add_argument("--time-limit-s", type=float, default=360.0, help="no new measurement past it")
    args = parser.parse_args()
    sys.path += [str(path) for path in PATHS if str(path) not in sys.path]
    check_dependencies()
    import torch
    from bench_stages import INPUTS, synthetic_chest_ct

    cuda = torch.cuda.is_available()
    if not cuda and (args.device == "cuda" or (args.device == "auto" and not args.dry_run)):
        stop("gpu_check: no CUDA device here; nothing measured (for CPU numbers: --dry-run or --device cpu)")
    device = torch.device("cuda" if cuda and args.device != "cpu" else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    mode = "dry run" if args.dry_run else "full"
    print(f"gpu_check: {device} ({name}), torch {torch.__version__}, {mode}, limit {args.time_limit_s:g} s")
    budget = Budget(args.time_limit_s)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        synthetic = synthetic_chest_ct(64 if args.dry_run else 300, work / "synthetic_ct.nii.gz")
        if args.dry_run:
            inputs = {"synthetic-128x128x64": every_fourth_voxel_in_plane(synthetic)}
        else:
            inputs = {"synthetic-512x512x300": synthetic}
        lctsc = INPUTS["lctsc-512x512x154"][1]
        if not args.dry_run and lctsc.exists():
            inputs = {"lctsc-512x512x154": lctsc, **inputs}
        elif not args.dry_run:
            print(f"lctsc-512x512x154: skipped ({lctsc} is absent)")
        results = segmentation(inputs, device, work, budget, warm_run=not args.dry_run)
    memory_section(results)
    training_section(device, args.dry_run, budget)
    if not dice_section(results, device):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
