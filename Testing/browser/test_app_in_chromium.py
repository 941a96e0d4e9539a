"""The browser app in a real Chromium (Playwright driving Debian's ``/usr/bin/chromium``; VTK renders
offscreen on the server): the whole loop a user walks, checked on the server's side.

A real CT from ../shared/data (the phantom when it is absent) is uploaded, segmented, painted,
erased and undone with mouse drags, exported into a dataset (checked on disk) and trained on; the
new model is then picked and run. Screenshots of each step go to ``$LUNGLIVSEG_SCREENSHOTS`` (or the
test's temporary folder); the README's screenshot is one of them.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from app_driver import (
    JOB_TIMEOUT_MS,
    TOKEN,
    App,
    axial_view_centre,
    choose_effect,
    chromium,
    drag,
    missing,
    open_data_path,
    open_page,
    wait_for_message,
)
from factories import SHARED_DATA
from LungLiverSegLib.imageio import read_image, write_image
from PIL import Image as PILImage

REAL_CT = SHARED_DATA / "ct_lung_lctsc_full" / "Case_000_ct.nii.gz"
DICOM_FOLDER = "ct_abdomen_totalseg_example/example_ct_dicom"
XRAY = "cxr_lung_montgomery/images/MCUCXR_0002_0.png"

pytestmark = [pytest.mark.slow, pytest.mark.browser]


if (reason := missing()) is not None:
    pytest.skip(reason, allow_module_level=True)

from playwright.sync_api import Page, expect  # noqa: E402  (after the skip)


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What ``--data`` serves: ../shared/data when present, else a folder holding the phantom."""
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    from LungLiverSegLib.demo.phantom import make_phantom

    folder = tmp_path_factory.mktemp("data")
    ct, _, _ = make_phantom()
    write_image(folder / "phantom_ct.nii.gz", ct)
    return folder


@pytest.fixture(scope="module")
def app(data_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    root = tmp_path_factory.mktemp("app")
    server = App(data_folder, root / "work", root / "models")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("LUNGLIVSEG_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as browser:
        yield browser


def voxels(page: Page, segment: str) -> int:
    return int(page.get_by_test_id(f"voxels-{segment}").inner_text())


def wait_for_count_change(page: Page, segment: str, before: int, timeout_s: float = 20.0) -> int:
    """The table is refreshed once an edit settles; wait for it to show another count."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = voxels(page, segment)
        if now != before:
            return now
        time.sleep(0.2)
    return voxels(page, segment)


def cli_labels(image: Path, model: str, out: Path) -> np.ndarray:
    """The same image through the command line, for the counts the page must show."""
    subprocess.run(
        [sys.executable, "-m", "LungLiverSegLib.cli", "segment", str(image), str(out), "--model", model],
        check=True,
        capture_output=True,
        env={**os.environ, "LUNGLIVSEG_MODELS": str(out.parent / "no-user-models")},
    )
    return read_image(out).array


def test_a_page_without_the_token_gets_nothing_and_with_it_gets_the_app(app: App, browser: object) -> None:
    refused = open_page(browser, app.url.replace(TOKEN, "wrong-token-0123456789"))
    time.sleep(3)
    assert refused.get_by_test_id("segment").count() == 0
    refused.close()
    accepted = open_page(browser, app.url)
    expect(accepted.get_by_test_id("segment")).to_be_visible(timeout=30_000)
    accepted.close()


def test_the_whole_loop_in_chromium(
    app: App, browser: object, data_folder: Path, screenshots: Path, tmp_path: Path
) -> None:
    real = data_folder == SHARED_DATA
    image, model, segment = (
        (REAL_CT, "lungs-ct-3d", "lungs")
        if real
        else (
            data_folder / "phantom_ct.nii.gz",
            "phantom-ct-3d",
            "lungs",
        )
    )
    page = open_page(browser, app.url)
    expect(page.get_by_test_id("segment")).to_be_visible(timeout=30_000)
    page.screenshot(path=screenshots / "01-ready.png")

    # open: upload the CT
    page.get_by_test_id("upload").locator("input[type=file]").set_input_files(str(image))
    wait_for_message(page, "^Opened", 60_000)
    expected = read_image(image)
    spacing = " x ".join(f"{s:.2f}" for s in expected.spacing)
    shape = " x ".join(map(str, expected.array.shape[::-1]))
    assert page.get_by_test_id("geometry").inner_text() == f"{shape} voxels of {spacing} mm"
    page.screenshot(path=screenshots / "02-opened.png")

    # segment: the model's result, with the counts the command line gives for the same file
    page.get_by_test_id("model").click()
    page.get_by_role("option", name=re.compile(rf"^{model} ")).first.click()
    page.get_by_test_id("segment").click()
    expect(page.get_by_test_id("cancel")).to_be_visible(timeout=10_000)
    page.screenshot(path=screenshots / "03-segmenting.png")
    wait_for_message(page, "^Segmented with")
    by_cli = cli_labels(image, model, tmp_path / "cli.nii.gz")
    proposal = voxels(page, segment)
    assert proposal == int((by_cli == 1).sum()) > 1000
    page.screenshot(path=screenshots / "04-segmented.png")

    # correct: paint across the centre of the axial view, erase part of it, undo the erase
    centre_x, centre_y = axial_view_centre(page)
    choose_effect(page, "mdi-brush")
    drag(page, (centre_x - 60, centre_y), (centre_x + 60, centre_y))
    painted = wait_for_count_change(page, segment, proposal)
    assert painted > proposal
    page.screenshot(path=screenshots / "05-painted.png")
    choose_effect(page, "mdi-eraser")
    drag(page, (centre_x - 30, centre_y), (centre_x + 30, centre_y))
    erased = wait_for_count_change(page, segment, painted)
    assert erased < painted  # the 3D brush also erases lung next to the stroke
    page.locator("button:has(i.mdi-undo)").first.click()
    assert wait_for_count_change(page, segment, erased) == painted
    page.screenshot(path=screenshots / "06-corrected.png")

    # export: the approved labels, the proposal kept, the correction measured
    page.get_by_test_id("tool-panel").click()
    page.get_by_test_id("dataset").locator("input").fill("browser_test")
    page.get_by_test_id("case").locator("input").fill("case_001")
    page.get_by_test_id("export").click()
    wait_for_message(page, "^Exported case case_001", 120_000)
    dataset = app.work / "datasets" / "browser_test"
    description = json.loads((dataset / "dataset.json").read_text())
    assert description["labels"][segment] == 1
    approved = read_image(next((dataset / "labelsTr").glob("case_001*")))
    assert int((approved.array == 1).sum()) == painted
    (record,) = [json.loads(line) for line in (dataset / "cases.jsonl").read_text().splitlines()]
    assert 0.9 < record["correction"][segment]["dice"] < 1.0
    expect(page.get_by_test_id("correction")).to_contain_text(segment)
    page.screenshot(path=screenshots / "07-exported.png")

    # a second case (training holds one patient out for validation)
    page.get_by_test_id("case").locator("input").fill("case_002")
    page.get_by_test_id("export").click()
    wait_for_message(page, "^Exported case case_002", 120_000)

    # train: a tiny run whose curve the page draws; the new model is installed and picked
    page.get_by_test_id("preset").click()
    page.get_by_role("option", name=model, exact=True).click()
    page.get_by_test_id("epochs").locator("input").fill("2")
    page.get_by_test_id("train").click()
    expect(page.get_by_test_id("curve").locator("polyline").first).to_be_attached(timeout=JOB_TIMEOUT_MS)
    page.get_by_test_id("curve").scroll_into_view_if_needed()
    page.screenshot(path=screenshots / "08-training.png")
    wait_for_message(page, "^Installed", JOB_TIMEOUT_MS)
    expect(page.get_by_test_id("curve").locator("polyline")).to_have_count(2)
    page.get_by_test_id("curve").scroll_into_view_if_needed()
    picked = page.get_by_test_id("model").inner_text()
    assert picked.endswith("(yours)")
    version = re.search(rf"{model} (\S+) \(yours\)", picked).group(1)  # type: ignore[union-attr]
    assert (app.work.parent / "models" / f"{model}-v{version}" / "model.json").is_file()
    page.screenshot(path=screenshots / "09-trained.png")

    # the new model is what runs when picked
    page.get_by_test_id("segment").click()
    assert f"Segmented with {model}@{version}" in wait_for_message(page, "^Segmented with")
    page.screenshot(path=screenshots / "10-new-model.png")
    page.close()


def test_a_dicom_folder_of_the_data_folder_opens_with_its_series_chosen(
    app: App, browser: object, data_folder: Path, screenshots: Path
) -> None:
    if not (data_folder / DICOM_FOLDER).is_dir():
        pytest.skip(f"{DICOM_FOLDER} is in ../shared/data only")
    page = open_page(browser, app.url)
    open_data_path(page, DICOM_FOLDER)
    page.get_by_test_id("list-series").click()
    expect(page.get_by_test_id("series")).to_contain_text("20 files", timeout=30_000)
    page.get_by_test_id("open-series").click()
    wait_for_message(page, "^Opened", 60_000)
    assert page.get_by_test_id("geometry").inner_text().startswith("512 x 512 x 20 voxels")
    page.screenshot(path=screenshots / "11-dicom.png")
    page.close()

    # a reloaded page shows the image at once (the views render for a page that opens)
    reloaded = open_page(browser, app.url)
    expect(reloaded.get_by_test_id("segment")).to_be_visible(timeout=30_000)
    deadline = time.monotonic() + 20
    while axial_view_brightness(reloaded) <= 10 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert axial_view_brightness(reloaded) > 10
    reloaded.close()


def axial_view_brightness(page: Page) -> float:
    """Mean grey level (0-255) of the largest view as the page shows it: near 0 when black."""
    x, y = axial_view_centre(page)
    shot = page.screenshot(clip={"x": x - 100, "y": y - 100, "width": 200, "height": 200})
    return float(np.asarray(PILImage.open(io.BytesIO(shot)).convert("L")).mean())


def test_refusals_are_one_line_in_the_page(app: App, browser: object, tmp_path: Path) -> None:
    """A path out of the data folder, a file that is no image: one line each, nothing opened."""
    page = open_page(browser, app.url)
    expect(page.get_by_test_id("segment")).to_be_visible(timeout=30_000)
    page.evaluate("trame.trigger('lls_browse', ['../../../etc/passwd', 'image'])")
    assert "not a path inside the data folder" in wait_for_message(page, "data folder", 10_000)
    notes = tmp_path / "notes.nii.gz"
    notes.write_text("not an image\n")
    page.get_by_test_id("upload").locator("input[type=file]").set_input_files(str(notes))
    text = wait_for_message(page, "notes", 30_000)
    assert "\n" not in text and "Traceback" not in text
    assert not any((Path(app.work) / "uploads").rglob("*.nii.gz"))
    page.close()


def test_a_chest_x_ray_gets_both_lungs_and_a_cancelled_run_leaves_nothing(
    app: App, browser: object, data_folder: Path, screenshots: Path, tmp_path: Path
) -> None:
    xray = data_folder / XRAY
    if not xray.is_file():
        pytest.skip(f"{XRAY} is in ../shared/data only")
    page = open_page(browser, app.url)
    open_data_path(page, XRAY)
    wait_for_message(page, "^Opened", 60_000)
    page.get_by_test_id("model").click()
    page.get_by_role("option", name=re.compile(r"^lungs-cxr-2d ")).first.click()

    page.get_by_test_id("segment").click()
    page.get_by_test_id("cancel").click()
    assert "Segmentation cancelled" in wait_for_message(page, "cancelled", 60_000)
    assert page.get_by_test_id("segments").count() == 0

    page.get_by_test_id("segment").click()
    wait_for_message(page, "^Segmented with lungs-cxr-2d")
    by_cli = cli_labels(xray, "lungs-cxr-2d", tmp_path / "cli.nii.gz")
    assert voxels(page, "right lung") == int((by_cli == 1).sum()) > 1000
    assert voxels(page, "left lung") == int((by_cli == 2).sum()) > 1000
    page.screenshot(path=screenshots / "12-xray.png")
    page.close()
