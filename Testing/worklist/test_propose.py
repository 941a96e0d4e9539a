"""Proposals for a folder of scans with a real model, and ``lunglivseg worklist``.

The folder holds small generated phantoms (``make_phantom``) that the bundled demo model
``phantom-ct-3d`` segments well, and one phantom drowned in noise: the case the model must be least
sure of, so the "uncertainty" ranking must put it first. The ground truth of the phantoms checks
that the proposals are real segmentations, independently of the model's own scores.
"""

from __future__ import annotations

import json
import shutil
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from factories import make_bundle, save_tiny_bundle
from LungLiverSegLib.bundle.catalogue import list_models
from LungLiverSegLib.bundle.spec import ModelBundle
from LungLiverSegLib.cli import main
from LungLiverSegLib.cli.events import SegmentationDone, SegmentationProgress, from_json
from LungLiverSegLib.demo.phantom import make_phantom
from LungLiverSegLib.imageio import read_segmentation, write_image
from LungLiverSegLib.paths import BUNDLED_MODELS_ENV, USER_MODELS_ENV
from LungLiverSegLib.progress import Cancelled, CancelToken, Progress
from LungLiverSegLib.worklist import propose
from LungLiverSegLib.worklist.propose import propose_all
from LungLiverSegLib.worklist.scan import find_cases
from LungLiverSegLib.worklist.store import (
    FOLDER_ORDER,
    NEW,
    PROPOSED,
    RANDOM,
    Case,
    Worklist,
    rank,
)

MODEL = "phantom-ct-3d"
KEY = "phantom-ct-3d@0.1.0"
TINY = "tiny-lungs"
SIZE, SPACING = (96, 80, 48), (4.0, 4.0, 6.0)
NOISY = "case_2"
CASES = ["case_0", "case_1", NOISY, "case_3"]


def dice(found: np.ndarray, expected: np.ndarray) -> float:
    return 2 * np.count_nonzero(found & expected) / (found.sum() + expected.sum())


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """Four phantoms as .nii.gz (``case_2`` with 400 HU of noise) and their true labels."""
    folder = tmp_path_factory.mktemp("phantoms") / "images"
    folder.mkdir()
    truths = {}
    for seed, case_id in enumerate(CASES):
        ct, truth, _ = make_phantom(SIZE, SPACING, seed)
        voxels = ct.array
        if case_id == NOISY:
            noise = np.random.default_rng(0).normal(0.0, 400.0, voxels.shape)
            voxels = np.clip(voxels + noise, -1024, 3000).astype(np.int16)
        write_image(folder / f"{case_id}.nii.gz", ct.with_array(voxels))
        truths[case_id] = truth.array
    return folder, truths


def quick_bundle(name: str) -> ModelBundle:
    """A tiny model with random weights that runs in a blink on the phantoms (8 mm voxels)."""
    base = make_bundle(name=name)
    return replace(
        base,
        preprocessing=replace(base.preprocessing, spacing=(8.0, 8.0, 8.0)),
        inference=replace(base.inference, patch_size=(32, 32, 32)),
    )


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user models folder with a second, quick model: "a retrained model"."""
    folder = tmp_path_factory.mktemp("user-models")
    save_tiny_bundle(folder / f"{TINY}-v1.0.0", quick_bundle(TINY))
    return folder


@pytest.fixture(autouse=True)
def models(tiny_models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The repository's bundled models and the test's user folder (never the machine's own)."""
    monkeypatch.delenv(BUNDLED_MODELS_ENV, raising=False)
    monkeypatch.setenv(USER_MODELS_ENV, str(tiny_models))


@pytest.fixture
def phantom_model() -> None:
    if not any(entry.name == MODEL for entry in list_models()):
        pytest.skip(f"the bundled demo model {MODEL} is not in Resources/Models")


@pytest.fixture(autouse=True)
def keep_signal_handlers():
    """``lunglivseg``'s main() turns Ctrl-C into a cancel: put pytest's handlers back after it."""
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def images_of(phantoms: tuple[Path, dict], folder: Path, *case_ids: str) -> Path:
    """A folder with some of the phantoms."""
    folder.mkdir()
    for case_id in case_ids:
        shutil.copy(phantoms[0] / f"{case_id}.nii.gz", folder)
    return folder


def no_model_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded with nothing to propose")

    monkeypatch.setattr(propose, "load_model", refuse)


@pytest.mark.slow
def test_the_scan_the_model_is_least_sure_of_ranks_first(phantom_model, phantoms, tmp_path, monkeypatch):
    images, truths = phantoms
    worklist = Worklist.create(tmp_path / "dataset", images, KEY)
    numbers: list[tuple[str, int, int]] = []
    proposed: list[Case] = []

    def progress(case: Case, number: int, count: int) -> Progress:
        numbers.append((case.case_id, number, count))
        return Progress()

    assert propose_all(worklist, device="cpu", progress=progress, on_proposed=proposed.append) == 4
    assert numbers == [(case_id, n, 4) for n, case_id in enumerate(CASES, start=1)]
    assert [case.case_id for case in proposed] == CASES and {c.state for c in proposed} == {PROPOSED}

    cases = worklist.cases()
    assert cases[0].case_id == NOISY
    unsure = {case.case_id: case.unsure_ratio for case in cases}
    assert unsure[NOISY] > max(unsure[c] for c in CASES if c != NOISY) + 0.1
    for case in cases:
        assert (case.state, case.model, case.generation) == (PROPOSED, KEY, 0)
        assert 0.0 <= case.unsure_ratio <= 1.0 and case.histogram_distance >= 0.0
        labels, label_map = read_segmentation(worklist.proposal_path(case.case_id))
        assert {value: label.name for value, label in label_map.items()} == {1: "lungs", 2: "liver"}
        assert labels.array.shape == truths[case.case_id].shape
        np.testing.assert_allclose(labels.spacing, SPACING)
        if case.case_id != NOISY:  # a real segmentation: the phantom's own organs
            for value in (1, 2):
                assert dice(labels.array == value, truths[case.case_id] == value) > 0.8

    # the other rankings of the same proposals
    assert [c.case_id for c in rank(cases, FOLDER_ORDER, 0)] == CASES
    by_seed = [[c.case_id for c in rank(cases, RANDOM, seed)] for seed in range(10)]
    assert by_seed[3] == [c.case_id for c in rank(cases[::-1], RANDOM, 3)], "same seed, same order"
    assert len({tuple(order) for order in by_seed}) > 1, "other seeds, other orders"
    assert all(sorted(order) == sorted(CASES) for order in by_seed)

    # a second run has nothing to propose: the model is not even loaded
    no_model_loading(monkeypatch)
    assert propose_all(worklist, device="cpu") == 0
    assert worklist.cases() == cases


def test_nothing_waiting_loads_no_model(tmp_path, monkeypatch):
    images = tmp_path / "images"
    images.mkdir()
    worklist = Worklist.create(tmp_path / "dataset", images, KEY)
    no_model_loading(monkeypatch)
    assert propose_all(worklist) == 0
    assert worklist.cases() == []


@pytest.mark.slow
def test_a_stopped_run_is_resumed_with_the_cases_left(phantom_model, phantoms, tmp_path):
    images = images_of(phantoms, tmp_path / "images", "case_0", "case_1", "case_3")
    worklist = Worklist.create(tmp_path / "dataset", images, KEY)
    cancel = CancelToken()
    with pytest.raises(Cancelled):  # stopped while proposing the second case
        propose_all(worklist, device="cpu", cancel=cancel, on_proposed=lambda case: cancel.cancel())
    states = {c.case_id: c.state for c in worklist.cases()}
    assert states == {"case_0": PROPOSED, "case_1": NEW, "case_3": NEW}
    assert worklist.proposal_path("case_0").is_file()
    assert not worklist.proposal_path("case_1").exists(), "nothing half-written of the stopped case"
    first = worklist.case("case_0")
    first_bytes = worklist.proposal_path("case_0").read_bytes()

    again: list[str] = []
    assert propose_all(worklist, device="cpu", on_proposed=lambda case: again.append(case.case_id)) == 2
    assert again == ["case_1", "case_3"]
    assert worklist.case("case_0") == first, "the proposed case is kept as it was"
    assert worklist.proposal_path("case_0").read_bytes() == first_bytes
    assert {c.state for c in worklist.cases()} == {PROPOSED}


def worklist_cli(capsys, images: Path, dataset: Path, *options: str) -> tuple[int, str, str]:
    code = main(["worklist", str(images), "--dataset", str(dataset), "--device", "cpu", *options])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_rows(out: str) -> list[list[str]]:
    """The rows of the printed table (after its header), split into cells."""
    lines = out.strip().splitlines()
    assert lines[0].split() == ["case", "state", "unsure", "changed", "mL", "model"]
    return [line.split() for line in lines[1:-1]]


@pytest.mark.slow
def test_the_command_proposes_ranks_advises_and_reproposes_for_a_new_model(
    phantom_model, phantoms, tmp_path, capsys
):
    images = images_of(phantoms, tmp_path / "images", "case_0", NOISY, "case_3")
    dataset = tmp_path / "out" / "dataset"
    code, out, err = worklist_cli(capsys, images, dataset, "--model", MODEL, "--progress", "none")
    assert code == 0, err
    rows = table_rows(out)
    assert rows[0][0] == NOISY
    assert sorted(row[0] for row in rows) == ["case_0", NOISY, "case_3"]
    assert all(row[1] == PROPOSED and row[-1] == KEY for row in rows)
    printed = [float(row[2]) for row in rows]
    assert printed == sorted(printed, reverse=True)
    worklist = Worklist(dataset)
    assert printed == [round(c.unsure_ratio, 4) for c in worklist.cases()]
    assert out.strip().splitlines()[-1] == (
        "0 of 4 cases approved with the current model before a retrain is suggested."
    )
    assert worklist.settings().model == KEY and worklist.models() == [(0, KEY)]

    # run again (also with the model's full name): nothing new, nothing rewritten
    stamps = {c.case_id: worklist.proposal_path(c.case_id).stat().st_mtime_ns for c in worklist.cases()}
    before = worklist.cases()
    code, out, err = worklist_cli(capsys, images, dataset, "--model", KEY, "--progress", "json")
    assert (code, out) == (0, ""), err
    assert worklist.cases() == before and worklist.models() == [(0, KEY)]
    assert stamps == {c: worklist.proposal_path(c).stat().st_mtime_ns for c in stamps}

    # a case is approved, then a retrained model comes: the open cases are proposed again by it
    claimed = worklist.claim_next("someone")
    worklist.skip(claimed.case_id, "kept out of the retrain")
    code, out, err = worklist_cli(capsys, images, dataset, "--model", TINY, "--progress", "none")
    assert code == 0, err
    assert worklist.settings().generation == 1
    assert worklist.models() == [(0, KEY), (1, f"{TINY}@1.0.0")]
    for case in worklist.cases():
        if case.case_id == claimed.case_id:
            assert (case.model, case.generation) == (KEY, 0)
        else:
            assert (case.state, case.model, case.generation) == (PROPOSED, f"{TINY}@1.0.0", 1)
            _, label_map = read_segmentation(worklist.proposal_path(case.case_id))
            assert [label.name for label in label_map.values()] == ["right lung", "left lung"]
    assert {row[-1] for row in table_rows(out) if row[1] == PROPOSED} == {f"{TINY}@1.0.0"}


@pytest.mark.slow
def test_the_command_reports_json_progress_and_goes_on_where_it_stopped(
    phantom_model, phantoms, tmp_path, capsys
):
    images = images_of(phantoms, tmp_path / "images", "case_0", "case_1", "case_3")
    dataset = tmp_path / "dataset"
    worklist = Worklist.create(dataset, images, KEY)
    worklist.add(find_cases(images))
    worklist.record_proposal("case_1", KEY, 0.75, 0.0)  # proposed before the stop
    code, out, err = worklist_cli(capsys, images, dataset, "--model", MODEL, "--progress", "json")
    assert code == 0, err
    events = [from_json(line) for line in out.splitlines()]
    assert None not in events, f"a line that is not an event: {out}"
    done = [event for event in events if isinstance(event, SegmentationDone)]
    assert [(e.input, e.output) for e in done] == [
        ("case_0.nii.gz", str(worklist.proposal_path("case_0"))),
        ("case_3.nii.gz", str(worklist.proposal_path("case_3"))),
    ]
    progress = [event for event in events if isinstance(event, SegmentationProgress)]
    assert {event.case for event in progress} == {"1/2 case_0", "2/2 case_3"}
    for case in ("1/2 case_0", "2/2 case_3"):
        fractions = [event.fraction for event in progress if event.case == case]
        assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert [json.loads(line)["event"] for line in out.splitlines()].count("done") == 2
    assert worklist.case("case_1").unsure_ratio == 0.75, "the case proposed before the stop is kept"
    assert {c.state for c in worklist.cases()} == {PROPOSED}
    assert not worklist.proposal_path("case_1").exists(), "and not proposed again"


def test_the_command_takes_a_bundle_folder_by_its_path(phantoms, tmp_path, capsys):
    """A bundle not in the catalogue (a folder just trained or downloaded), given by its path."""
    folder = save_tiny_bundle(tmp_path / "fresh bundle", quick_bundle("fresh-model"))
    images = images_of(phantoms, tmp_path / "images", "case_0")
    dataset = tmp_path / "dataset"
    for _ in range(2):
        code, _, err = worklist_cli(capsys, images, dataset, "--model", str(folder), "--progress", "none")
        assert code == 0, err
    worklist = Worklist(dataset)
    assert worklist.models() == [(0, "fresh-model@1.0.0")], "the same folder twice is no retrain"
    (case,) = worklist.cases()
    assert (case.state, case.model, case.generation) == (PROPOSED, "fresh-model@1.0.0", 0)
    assert worklist.proposal_path("case_0").is_file()


def test_the_command_says_what_is_wrong(tmp_path, capsys):
    code, _, err = worklist_cli(capsys, tmp_path / "missing", tmp_path / "d", "--model", MODEL)
    assert code == 2 and "not a folder of images" in err
    images = tmp_path / "images"
    images.mkdir()
    code, _, err = worklist_cli(capsys, images, tmp_path / "d", "--model", "no-such-model")
    assert code == 2 and "unknown model 'no-such-model'" in err
    assert not (tmp_path / "d.worklist").exists()
    with pytest.raises(SystemExit) as exit_:
        worklist_cli(capsys, images, tmp_path / "d", "--model", MODEL, "--ranking", "loudest")
    assert exit_.value.code == 2 and "invalid choice: 'loudest'" in capsys.readouterr().err
