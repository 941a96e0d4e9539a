"""The browser app's Worklist section in a real Chromium: a folder of three unlabeled phantom CTs
(one degraded, so the model is least sure of it) is proposed in the background, then worked
through in ranked order: the first case corrected and approved, the second skipped with a reason,
the third approved; the dataset, the table, the effort curve and the advice are checked.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from app_driver import (
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
from LungLiverSegLib.demo.phantom import make_phantom
from LungLiverSegLib.imageio import write_image

pytestmark = [pytest.mark.slow, pytest.mark.browser]

if (reason := missing()) is not None:
    pytest.skip(reason, allow_module_level=True)

from playwright.sync_api import expect  # noqa: E402  (after the skip)

MODEL = "phantom-ct-3d"
DEGRADED = "scan_b"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """Three phantoms in a folder of the data folder; ``scan_b`` blurred into noise."""
    data = tmp_path_factory.mktemp("data")
    folder = data / "unlabeled"
    folder.mkdir()
    for seed, name in enumerate(("scan_a", "scan_b", "scan_c")):
        ct, _, _ = make_phantom(seed=seed)
        if name == DEGRADED:
            noisy = ct.array + np.random.default_rng(0).normal(0, 400, ct.array.shape)
            ct = ct.with_array(np.clip(noisy, -1024, 3071).astype(np.int16))
        write_image(folder / f"{name}.nii.gz", ct)
    root = tmp_path_factory.mktemp("app")
    server = App(data, root / "work", root / "models")
    yield server
    server.stop()


def state(page: object, case: str) -> str:
    return page.get_by_test_id(f"state-{case}").inner_text()  # type: ignore[attr-defined]


def test_three_cases_in_ranked_order(app: App, tmp_path: Path) -> None:
    with chromium() as browser:
        page = open_page(browser, app.url)
        expect(page.get_by_test_id("segment")).to_be_visible(timeout=30_000)
        open_data_path(page, "unlabeled")
        page.get_by_test_id("model").click()
        page.get_by_role("option", name=f"{MODEL} ").first.click()
        page.get_by_test_id("dataset").locator("input").fill("worklist_test")
        page.get_by_test_id("open-worklist").scroll_into_view_if_needed()
        page.get_by_test_id("open-worklist").click()
        wait_for_message(page, "^Worklist ready: 3 cases proposed", 300_000)
        ranked = [
            row.get_attribute("data-testid") for row in page.get_by_test_id("worklist").locator("tr").all()
        ]
        assert ranked[0] == f"case-{DEGRADED}", ranked  # the model's least sure case comes first

        page.get_by_test_id("next-case").click()
        wait_for_message(page, f"^Case {DEGRADED}", 120_000)
        assert state(page, DEGRADED) == "in progress"
        page.screenshot(path=tmp_path / "worklist-case-1.png")
        centre_x, centre_y = axial_view_centre(page)  # a correction: paint across the centre
        choose_effect(page, "mdi-brush")
        drag(page, (centre_x - 40, centre_y), (centre_x + 40, centre_y))
        time.sleep(1.0)
        page.locator("button:has(i.mdi-cursor-default)").first.click()
        page.get_by_test_id("approve-case").click()
        text = wait_for_message(page, f"^Approved {DEGRADED}", 120_000)
        assert "Case scan_" in text  # the next case is loaded at once
        # the case in hand leads the table (open cases first)
        second = page.get_by_test_id("worklist").locator("tr").nth(0).get_attribute("data-testid")
        assert second != f"case-{DEGRADED}" and state(page, second.removeprefix("case-")) == "in progress"
        assert state(page, DEGRADED) == "approved"

        page.get_by_test_id("skip-reason").locator("input").fill("motion artefact")
        page.get_by_test_id("skip-case").click()
        wait_for_message(page, "^Skipped", 60_000)
        skipped = second.removeprefix("case-")  # type: ignore[union-attr]
        assert state(page, skipped) == "skipped"
        expect(page.get_by_test_id(f"case-{skipped}")).to_contain_text("motion artefact")

        page.get_by_test_id("approve-case").click()
        wait_for_message(page, "^Approved", 120_000)
        time.sleep(0.5)
        states = {s: state(page, s) for s in ("scan_a", "scan_b", "scan_c")}
        assert sorted(states.values()) == ["approved", "approved", "skipped"], states
        expect(page.get_by_test_id("effort").locator("polyline")).to_have_count(2)
        expect(page.get_by_test_id("advice")).to_contain_text("2 of 4 cases approved")
        page.get_by_test_id("effort").scroll_into_view_if_needed()
        page.screenshot(path=tmp_path / "worklist-done.png")

    dataset = app.work / "datasets" / "worklist_test"
    records = [json.loads(line) for line in (dataset / "cases.jsonl").read_text().splitlines()]
    assert sorted(r["case_id"] for r in records) == sorted(s for s, v in states.items() if v == "approved")
    assert all(r["model"]["name"] == MODEL and r["correction"] for r in records)
    corrected = next(r for r in records if r["case_id"] == DEGRADED)
    assert min(values["dice"] for values in corrected["correction"].values()) < 1.0
