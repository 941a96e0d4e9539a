"""Start-up cost of the ``lunglivseg`` command: cold runs against ``python -c pass``, in one run.

Times, each as the median of ``--runs`` fresh processes (default 5), printed in seconds and as a
ratio to ``python -c pass`` measured in the same run:

* ``python -c pass``: the interpreter alone, the floor;
* ``lunglivseg --help`` (target on a 2-core machine: under 0.5 s) and ``lunglivseg models``,
  which import no torch or MONAI;
* ``lunglivseg segment`` of one chest X-ray with ``lungs-cxr-2d``, end to end: start, imports,
  model load, inference, writing (target: under 2.5 s). The X-ray is ``--xray``, by default the
  Montgomery image MCUCXR_0002_0 in ../shared/data (docs: /work/shared/data/MANIFEST.md); without the
  data, a generated 512x512 chest-like image, so that the bench still runs.

Then one more X-ray run under ``python -X importtime`` gives the share of its time spent
importing torch and MONAI. A benchmark, not a test: it never fails on a missed target.

    python bench/bench_startup.py [--runs 5] [--xray PATH] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
MONTGOMERY_XRAY = SHARED_DATA / "cxr_lung_montgomery" / "images" / "MCUCXR_0002_0.png"
XRAY_MODEL = "lungs-cxr-2d"
TARGETS_S = {"lunglivseg --help": 0.5, "lunglivseg segment (X-ray)": 2.5}
HEAVY_PACKAGES = ("torch", "monai")
IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def default_xray() -> Path | None:
    """The Montgomery X-ray that ``bench_segment.py`` also uses, else the first chest X-ray of
    the shared data sets; None when they are absent."""
    if MONTGOMERY_XRAY.is_file():
        return MONTGOMERY_XRAY
    for folder in sorted(SHARED_DATA.glob("cxr_*/images")):
        images = sorted(folder.glob("*.png"))
        if images:
            return images[0]
    return None


def generated_xray(folder: Path) -> Path:
    """A 512x512 8-bit image with two dark lung fields in a brighter chest: the model's input
    format, so that the timing covers the same work as a real X-ray."""
    import numpy as np
    from LungLiverSegLib.geometry import Image
    from LungLiverSegLib.imageio import write_image

    y, x = np.mgrid[:512, :512] / 512.0
    chest = 170 - 60 * ((x - 0.5) ** 2 + (y - 0.55) ** 2)
    lungs = sum(((x - cx) / 0.16) ** 2 + ((y - 0.48) / 0.3) ** 2 <= 1 for cx in (0.3, 0.7))
    pixels = np.clip(chest - 110 * lungs + np.random.default_rng(0).normal(0, 6, (512, 512)), 0, 255)
    return write_image(folder / "generated_xray.png", Image(pixels.astype(np.uint8), (0.7, 0.7), (0.0, 0.0)))


def median_wall_time(command: list[str], runs: int) -> float:
    """Median seconds of ``runs`` fresh processes; a failing command stops the bench."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        if completed.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{completed.stderr[-3000:]}")
    return statistics.median(times)


def import_seconds(command: list[str]) -> tuple[float, dict[str, float]]:
    """The run's wall time and the seconds spent importing torch and MONAI, MONAI's without the
    torch it imports (``-X importtime`` lists a package once, where it is first imported, with its
    imports indented before it)."""
    start = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", *command], capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - start
    entries = [
        (len(indent), name, int(cumulative) / 1e6)
        for _, cumulative, indent, name in (
            match.groups() for match in map(IMPORT_LINE.match, completed.stderr.splitlines()) if match
        )
    ]
    where = {name: index for index, (_, name, _) in enumerate(entries) if name in HEAVY_PACKAGES}
    seconds = {name: entries[index][2] for name, index in where.items()}
    if where.keys() == {"torch", "monai"} and _imported_by(entries, where["torch"], where["monai"]):
        seconds["monai without torch"] = seconds.pop("monai") - seconds["torch"]
    return wall, seconds


def _imported_by(entries: list[tuple[int, str, float]], child: int, parent: int) -> bool:
    """Whether entry ``child`` lies in ``parent``'s import tree (between its siblings and it)."""
    depth = entries[parent][0]
    return child < parent and all(entry[0] > depth for entry in entries[child:parent])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per command (median)")
    parser.add_argument("--xray", type=Path, default=None, help="chest X-ray (default: the shared data's)")
    parser.add_argument("--device", default=None, help="--device for segment (default: the command's)")
    args = parser.parse_args()
    lunglivseg = str(Path(sys.executable).with_name("lunglivseg"))
    with tempfile.TemporaryDirectory() as folder:
        real_xray = args.xray or default_xray()
        xray = real_xray or generated_xray(Path(folder))
        segment = [lunglivseg, "segment", str(xray), f"{folder}/xray.nii.gz", "--model", XRAY_MODEL]
        segment += ["--overwrite", "--progress", "none"] + (["--device", args.device] if args.device else [])
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "lunglivseg --help": [lunglivseg, "--help"],
            "lunglivseg models": [lunglivseg, "models"],
            "lunglivseg segment (X-ray)": segment,
        }
        medians = {name: median_wall_time(command, args.runs) for name, command in commands.items()}
        wall, imports = import_seconds(["-m", "LungLiverSegLib.cli", *segment[1:]])
    floor = medians["python -c pass"]
    source = real_xray or "a generated 512x512 image (no shared data)"
    print(f"cold start, median of {args.runs} runs, {os.cpu_count()} CPUs; X-ray: {source}")
    for name, seconds in medians.items():
        target = TARGETS_S.get(name)
        verdict = (
            "" if target is None else f"   target < {target} s: {'met' if seconds < target else 'MISSED'}"
        )
        print(f"{name:28s} {seconds:6.2f} s  {seconds / floor:6.1f}x python -c pass{verdict}")
    shares = ", ".join(f"{name} {seconds:.2f} s ({seconds / wall:.0%})" for name, seconds in imports.items())
    print(
        f"imports in one X-ray run under -X importtime ({wall:.2f} s): {shares or 'neither torch nor MONAI'}"
    )


if __name__ == "__main__":
    main()
