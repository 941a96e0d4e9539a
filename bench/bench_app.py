"""The browser app's own cost: start to a ready page, Segment click to segments shown, against the
same segmentation through the command line in the same run, and the server's peak memory.

    python bench/bench_app.py [--image CT] [--model lungs-ct-3d] [--repeats 3]

Needs the app extra and Debian's chromium (as the browser tests). Both sides start a fresh child
that imports torch and loads the model (the app runs every Segment in one, as Slicer does), so the
ratio is the app's overhead: writing the scene's volume for the child, and turning its labels back
into segments. Prints medians; never a pass/fail on a time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing"))

from app_driver import App, chromium, missing, open_page, wait_for_message  # noqa: E402

DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "ct_lung_lctsc_full" / "Case_000_ct.nii.gz"


def cli_seconds(image: Path, model: str, folder: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    command = [sys.executable, "-m", "LungLiverSegLib.cli", "segment", str(image), str(folder / "cli.nii.gz")]
    subprocess.run([*command, "--model", model, "--overwrite"], check=True, capture_output=True, env=env)
    return time.perf_counter() - started


def app_seconds(page: object, repeats: int) -> list[float]:
    """Segment clicked ``repeats`` times on the open image: click to the result's message."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        page.get_by_test_id("segment").click()  # type: ignore[attr-defined]
        wait_for_message(page, "^Segmenting with", 60_000)  # the last run's message is gone
        wait_for_message(page, "^Segmented with")
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--model", default="lungs-ct-3d")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if (reason := missing()) is not None:
        raise SystemExit(f"bench_app: {reason}")
    with tempfile.TemporaryDirectory() as tmp, chromium() as browser:
        folder = Path(tmp)
        env = {**os.environ, "LUNGLIVSEG_MODELS": str(folder / "models")}
        started = time.perf_counter()
        app = App(args.image.parent, folder / "work", folder / "models")
        announced = time.perf_counter() - started
        page = open_page(browser, app.url)
        page.get_by_test_id("segment").wait_for(timeout=60_000)
        ready = time.perf_counter() - started
        page.get_by_test_id(f"file-{args.image.name}").click()
        wait_for_message(page, "^Opened", 120_000)
        page.get_by_test_id("model").click()
        page.get_by_role("option", name=args.model + " ").first.click()
        in_app = app_seconds(page, args.repeats)
        by_cli = [cli_seconds(args.image, args.model, folder, env) for _ in range(args.repeats)]
        peak = app.peak_rss_mb()
        app.stop()
    app_median, cli_median = statistics.median(in_app), statistics.median(by_cli)
    print(f"image {args.image.name}, model {args.model}, medians of {args.repeats}")
    print(f"start to address printed   {announced:6.2f} s")
    print(f"start to ready page        {ready:6.2f} s")
    print(f"Segment click to segments  {app_median:6.2f} s  ({', '.join(f'{t:.2f}' for t in in_app)})")
    print(f"same through the CLI       {cli_median:6.2f} s  ({', '.join(f'{t:.2f}' for t in by_cli)})")
    print(f"app / CLI                  {app_median / cli_median:6.2f}x")
    print(f"server peak RSS            {peak:6.0f} MB (the segmenting child not included)")


if __name__ == "__main__":
    main()
