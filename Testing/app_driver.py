"""Driving the browser app from a test or a benchmark: the app server in a child process, Debian's
Chromium with the flags it needs here, and the waits on the page's own controls (``data-testid``).

Imports Playwright lazily: this module is imported to find out whether the browser tests can run.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "test-token-0123456789abcdef"
START_TIMEOUT_S = 120
JOB_TIMEOUT_MS = 300_000


def missing() -> str | None:
    """Why the browser cannot be driven here, or None."""
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} not installed (apt-get install -y chromium libosmesa6)"
    for module in ("playwright", "trame_slicer"):
        if importlib.util.find_spec(module) is None:
            return f"{module} not installed (pip install -e '.[app]')"
    return None


class App:
    """A ``lunglivseg app`` server in a child process, with its own models and work folders."""

    def __init__(self, data: Path, work: Path, models: Path) -> None:
        env = {**os.environ, "LUNGLIVSEG_MODELS": str(models)}
        command = [
            sys.executable,
            "-m",
            "LungLiverSegLib.cli",
            "app",
            "--data",
            str(data),
            "--work",
            str(work),
        ]
        self.work = work
        self.process = subprocess.Popen(
            [*command, "--token", TOKEN, "--device", "cpu"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.url = self._announced_url()

    def _announced_url(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line and self.process.poll() is not None:
                raise RuntimeError(f"the app exited with status {self.process.returncode}")
            if match := re.search(r"(http://\S+)", line):
                return match.group(1)
        raise RuntimeError("the app did not print its address")

    def peak_rss_mb(self) -> float:
        """The server's peak resident memory so far (Linux ``VmHWM``; its children not included)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def open_page(browser: Any, url: str) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(url)
    return page


def message(page: Any) -> str:
    return page.get_by_test_id("message").inner_text()


def wait_for_message(page: Any, pattern: str, timeout_ms: int = JOB_TIMEOUT_MS) -> str:
    from playwright.sync_api import expect

    expect(page.get_by_test_id("message")).to_contain_text(re.compile(pattern), timeout=timeout_ms)
    return message(page)


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def drag(page: Any, start: tuple[float, float], end: tuple[float, float], steps: int = 12) -> None:
    """A mouse stroke as a user makes it: press, move in small steps, release."""
    page.mouse.move(*start)
    page.mouse.down()
    for step in range(1, steps + 1):
        page.mouse.move(*(a + (b - a) * step / steps for a, b in zip(start, end, strict=True)))
        time.sleep(0.03)
    page.mouse.up()


def axial_view_centre(page: Any) -> tuple[float, float]:
    """The centre of the largest view (the axial slice in trame-slicer's default layout), once the
    views are on the page."""
    page.locator("img, canvas").first.wait_for(timeout=30_000)
    boxes = [box for box in (view.bounding_box() for view in page.locator("img, canvas").all()) if box]
    largest = max(boxes, key=lambda box: box["width"] * box["height"])
    return largest["x"] + largest["width"] / 2, largest["y"] + largest["height"] / 2


def open_data_path(page: Any, path: str) -> None:
    """Click through the data folder's listing to ``path`` (folders, then the file, if any), from
    its top: the listing is the server's, so another page may have left it in a subfolder."""
    page.get_by_test_id("segment").wait_for(timeout=30_000)  # connected
    page.evaluate("trame.trigger('lls_browse', ['', 'folder'])")
    for part in path.split("/"):
        page.get_by_test_id(f"file-{part}").click()


VIEWS_SETTLE_S = 3.0
"""The views are streamed from the server: after a new image or segmentation, time for their frames."""


def choose_effect(page: Any, icon: str) -> None:
    """Click a Segment Editor effect in the toolbar (by its icon) and wait until it is the active
    one, with the views rendered: a stroke made before that is lost."""
    from playwright.sync_api import expect

    button = page.locator(f"button:not([data-testid]):has(i.{icon})").first
    button.click()
    expect(button).to_have_class(re.compile("v-btn--active"), timeout=10_000)
    time.sleep(VIEWS_SETTLE_S)
