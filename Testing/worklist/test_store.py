"""The worklist store: its rules (one state change at a time, one owner per case, the generation
of each model), its ranking, and its promises under concurrency and crashes: several processes
claiming at once never get the same case, a writer killed with SIGKILL mid-transaction leaves an
intact database that kept every committed approval, and a case exported to the dataset but not
yet marked approved (killed between the two writes) is approved on the next reconcile, once."""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from LungLiverSegLib.dataset.export import CaseRecord, DatasetExportError, export_case, read_dataset
from LungLiverSegLib.demo.phantom import PHANTOM_LABELS
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.worklist.store import (
    APPROVED,
    DATABASE,
    FOLDER_ORDER,
    IN_PROGRESS,
    NEW,
    PROPOSED,
    RANDOM,
    SKIPPED,
    UNCERTAINTY,
    Case,
    Found,
    Worklist,
    WorklistError,
    rank,
    worklist_folder,
)

MODEL = "phantom-ct-3d@0.1.0"


def found(*case_ids: str) -> list[Found]:
    return [Found(case_id, f"{case_id}.nii.gz") for case_id in case_ids]


def record(case_id: str, changed_ml: float = 2.0, dice: float = 0.9, at: str = "2025-01-01T10:00:00+00:00"):
    return CaseRecord(
        case_id,
        {"file": f"{case_id}.nii.gz"},
        {"name": "phantom-ct-3d", "version": "0.1.0"},
        at,
        "tester",
        (1, 2),
        {"lungs": {"dice": dice, "changed_ml": changed_ml}, "liver": {"dice": 1.0, "changed_ml": 0.0}},
    )


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    return folder


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return tmp_path / "out" / "Dataset001"


def make(dataset: Path, images: Path, cases: dict[str, float | None], **settings) -> Worklist:
    """A worklist whose cases (in this folder order) are proposed with these unsure ratios
    (None: still new)."""
    worklist = Worklist.create(dataset, images, MODEL, **settings)
    worklist.add(found(*cases))
    for case_id, unsure in cases.items():
        if unsure is not None:
            worklist.record_proposal(case_id, MODEL, unsure, 0.0)
    return worklist


def states(worklist: Worklist) -> dict[str, str]:
    return {case.case_id: case.state for case in worklist.cases()}


# --- creating and opening ------------------------------------------------------------------


def test_create_lays_out_the_worklist_beside_the_dataset_and_reopens_it(dataset, images, tmp_path):
    worklist = Worklist.create(dataset, images, MODEL, strategy=RANDOM, seed=5, retrain_every=3)
    assert worklist.folder == tmp_path / "out" / "Dataset001.worklist" == worklist_folder(dataset)
    assert (worklist.folder / DATABASE).is_file() and (worklist.folder / "proposals").is_dir()
    assert not dataset.exists(), "nnU-Net reads the dataset folder: nothing of the worklist in it"
    assert worklist.proposal_path("c1") == worklist.folder / "proposals" / "c1.seg.nrrd"
    settings = worklist.settings()
    assert (settings.images, settings.model, settings.generation) == (images.resolve(), MODEL, 0)
    assert (settings.strategy, settings.seed, settings.retrain_every) == (RANDOM, 5, 3)
    assert worklist.models() == [(0, MODEL)]

    # the same folder (spelled another way) opens it, with the settings it was made with
    again = Worklist.create(dataset, images / ".." / "images", "other@1", strategy=FOLDER_ORDER)
    assert again.settings() == settings
    assert Worklist(dataset).settings() == settings


def test_create_refuses_another_folder_and_bad_settings(dataset, images, tmp_path):
    Worklist.create(dataset, images, MODEL)
    other = tmp_path / "other images"
    other.mkdir()
    with pytest.raises(WorklistError, match="a worklist of another folder"):
        Worklist.create(dataset, other, MODEL)
    assert Worklist(dataset).settings().images == images.resolve()
    with pytest.raises(WorklistError, match="ranking 'loudest'"):
        Worklist.create(tmp_path / "d2", images, MODEL, strategy="loudest")
    with pytest.raises(WorklistError, match="retrain_every"):
        Worklist.create(tmp_path / "d3", images, MODEL, retrain_every=0)
    with pytest.raises(WorklistError, match="no worklist yet"):
        Worklist(tmp_path / "d4")


# --- the rules of each change --------------------------------------------------------------


def test_add_is_idempotent_and_keeps_folder_order(dataset, images):
    worklist = Worklist.create(dataset, images, MODEL, strategy=FOLDER_ORDER)
    assert worklist.add(found("b", "a")) == 2
    assert worklist.add(found("b", "a")) == 0
    assert worklist.add(found("a", "c", "b")) == 1
    cases = worklist.cases()
    assert [(c.case_id, c.position, c.state) for c in cases] == [("b", 0, NEW), ("a", 1, NEW), ("c", 2, NEW)]
    assert worklist.case("c").source == "c.nii.gz"
    with pytest.raises(WorklistError, match="no case 'd'"):
        worklist.case("d")


def test_record_proposal_only_moves_a_new_case(dataset, images):
    worklist = make(dataset, images, {"a": None, "b": None})
    worklist.record_proposal("a", MODEL, 0.25, 0.125)
    a = worklist.case("a")
    assert (a.state, a.model, a.generation, a.unsure_ratio, a.histogram_distance) == (
        PROPOSED,
        MODEL,
        0,
        0.25,
        0.125,
    )
    worklist.record_proposal("a", "late@2", 0.9, 0.9)  # a second proposal of a proposed case: ignored
    assert worklist.case("a") == a
    claimed = worklist.claim_next("alice")
    worklist.record_proposal("a", "late@2", 0.9, 0.9)  # nor of a case someone is correcting
    assert worklist.case("a") == claimed
    worklist.approve("a", record("a"))
    approved = worklist.case("a")
    worklist.record_proposal("a", "late@2", 0.9, 0.9)
    assert worklist.case("a") == approved
    worklist.record_proposal("no-such-case", MODEL, 0.5, 0.0)  # nothing to move, nothing made
    assert sorted(states(worklist)) == ["a", "b"]


def test_claim_next_gives_the_owner_their_case_first_and_release_returns_it(dataset, images):
    worklist = make(dataset, images, {"low": 0.1, "high": 0.5, "mid": 0.3, "waiting": None})
    first = worklist.claim_next("alice")
    assert (first.case_id, first.state, first.owner) == ("high", IN_PROGRESS, "alice")
    assert worklist.claim_next("alice").case_id == "high", "the owner's case in progress comes first"
    assert worklist.claim_next("bob").case_id == "mid"
    worklist.release("high", "bob")  # not bob's: nothing happens
    assert worklist.case("high").owner == "alice"
    worklist.release("high", "alice")
    released = worklist.case("high")
    assert (released.state, released.owner) == (PROPOSED, None)
    assert worklist.claim_next("carol").case_id == "high"
    assert worklist.claim_next("dave").case_id == "low"
    assert worklist.claim_next("erin") is None, "the case still waiting for its proposal is not handed out"
    assert worklist.case("waiting").state == NEW


def test_approve_records_the_correction_and_keeps_the_generation(dataset, images):
    worklist = make(dataset, images, {"a": 0.2, "b": 0.1})
    worklist.claim_next("alice")
    worklist.approve("a", record("a", changed_ml=3.5, dice=0.75, at="2025-02-03T04:05:06+00:00"))
    a = worklist.case("a")
    assert (a.state, a.owner, a.generation, a.approved_at) == (APPROVED, None, 0, "2025-02-03T04:05:06+00:00")
    assert a.effort == {
        "lungs": {"dice": 0.75, "changed_ml": 3.5},
        "liver": {"dice": 1.0, "changed_ml": 0.0},
    }
    with pytest.raises(WorklistError, match="no case 'zz'"):
        worklist.approve("zz", record("zz"))
    scratch = record("b")
    worklist.approve("b", CaseRecord(**{**scratch.__dict__, "correction": None}))
    assert worklist.case("b").state == APPROVED and worklist.case("b").effort is None


def test_skip_needs_a_reason_and_never_undoes_an_approval(dataset, images):
    worklist = make(dataset, images, {"a": 0.3, "b": 0.2, "c": None})
    worklist.claim_next("alice")
    for reason in ("", "   "):
        with pytest.raises(WorklistError, match="say why"):
            worklist.skip("a", reason)
    assert worklist.case("a").state == IN_PROGRESS
    worklist.skip("a", "  motion artefacts ")
    a = worklist.case("a")
    assert (a.state, a.skip_reason, a.owner) == (SKIPPED, "motion artefacts", None)
    worklist.skip("c", "not a CT")  # a case still waiting for its proposal can be skipped too
    worklist.approve("b", record("b"))
    with pytest.raises(WorklistError, match="case 'b' is approved: it cannot be skipped"):
        worklist.skip("b", "changed my mind")
    with pytest.raises(WorklistError, match="case 'a' is skipped"):
        worklist.skip("a", "twice")
    assert states(worklist) == {"b": APPROVED, "a": SKIPPED, "c": SKIPPED}
    assert worklist.claim_next("bob") is None


def test_model_installed_sends_only_the_untouched_proposals_back(dataset, images):
    cases = {"new": None, "proposed": 0.4, "in_progress": 0.9, "approved": 0.8, "skipped": 0.7}
    worklist = make(dataset, images, cases)
    assert worklist.claim_next("alice").case_id == "in_progress"
    worklist.approve("approved", record("approved"))
    worklist.skip("skipped", "cut off")
    before = {case.case_id: case for case in worklist.cases()}

    worklist.model_installed("phantom-ct-3d@0.2.0")
    settings = worklist.settings()
    assert (settings.model, settings.generation) == ("phantom-ct-3d@0.2.0", 1)
    assert worklist.models() == [(0, MODEL), (1, "phantom-ct-3d@0.2.0")]
    after = {case.case_id: case for case in worklist.cases()}
    assert after["new"] == before["new"]
    back = after["proposed"]
    assert (back.state, back.generation, back.unsure_ratio, back.histogram_distance) == (
        NEW,
        None,
        None,
        None,
    )
    for kept in ("in_progress", "approved", "skipped"):
        assert after[kept] == before[kept], f"{kept} must not change"
    assert after["in_progress"].owner == "alice" and after["approved"].generation == 0

    worklist.record_proposal("proposed", "phantom-ct-3d@0.2.0", 0.05, 0.0)
    assert worklist.case("proposed").generation == 1
    worklist.model_installed("phantom-ct-3d@0.3.0")
    assert worklist.settings().generation == 2 and [g for g, _ in worklist.models()] == [0, 1, 2]


# --- ranking -------------------------------------------------------------------------------


def a_case(case_id: str, position: int, state: str = PROPOSED, unsure=None, distance=None) -> Case:
    return Case(case_id, case_id, None, position, state, None, unsure, distance, None, None, None, None, None)


def ids(cases: list[Case]) -> list[str]:
    return [case.case_id for case in cases]


def test_rank_by_uncertainty_then_distance_then_folder_order_open_cases_first():
    cases = [
        a_case("approved", 0, APPROVED, 0.99),
        a_case("sure", 1, PROPOSED, 0.1, 0.9),
        a_case("unsure", 2, PROPOSED, 0.6, 0.0),
        a_case("tie_far", 3, PROPOSED, 0.3, 0.5),
        a_case("tie_near", 4, PROPOSED, 0.3, 0.1),
        a_case("tie_near_later", 5, PROPOSED, 0.3, 0.1),
        a_case("unscored", 6, PROPOSED),
        a_case("mine", 7, IN_PROGRESS, 0.0),
        a_case("new", 8, NEW),
        a_case("skipped", 9, SKIPPED, 0.9),
        a_case("zero", 10, PROPOSED, 0.0, 0.0),
    ]
    expected = [
        "mine",
        "unsure",
        "tie_far",
        "tie_near",
        "tie_near_later",
        "sure",
        "zero",
        "unscored",
        "new",
        "approved",
        "skipped",
    ]
    for order in (cases, cases[::-1], random.Random(1).sample(cases, len(cases))):
        assert ids(rank(order, UNCERTAINTY, 0)) == expected
    assert ids(rank(cases, FOLDER_ORDER, 0)) == [
        "mine",
        *["sure", "unsure", "tie_far", "tie_near", "tie_near_later", "unscored", "zero"],
        "new",
        "approved",
        "skipped",
    ]


def test_random_rank_is_a_permutation_fixed_by_its_seed():
    cases = [a_case(f"c{i:02d}", i) for i in range(12)]
    first = ids(rank(cases, RANDOM, 7))
    assert sorted(first) == ids(cases)
    assert ids(rank(cases[::-1], RANDOM, 7)) == first, "the same seed gives the same order"
    assert ids(rank(random.Random(3).sample(cases, 12), RANDOM, 7)) == first
    others = {tuple(ids(rank(cases, RANDOM, seed))) for seed in range(8)}
    assert len(others) == 8, "other seeds give other orders"
    assert first != ids(cases)


@pytest.mark.parametrize("strategy", [UNCERTAINTY, FOLDER_ORDER, RANDOM])
def test_next_case_follows_the_order_the_list_shows(dataset, images, strategy):
    """Whatever the ranking, "Next case" hands out the cases in the order ``cases()`` lists them."""
    unsure = {f"c{i:02d}": round(random.Random(i).random(), 3) for i in range(8)}
    worklist = make(dataset, images, unsure, strategy=strategy, seed=11)
    shown = [case.case_id for case in worklist.cases()]
    handed_out = []
    while (case := worklist.claim_next("alice")) is not None:
        handed_out.append(case.case_id)
        worklist.approve(case.case_id, record(case.case_id))
    assert handed_out == shown
    if strategy == UNCERTAINTY:
        assert shown == sorted(unsure, key=lambda c: -unsure[c])


# --- reconcile: killed between the dataset export and the worklist's approval ---------------


def test_reconcile_approves_a_case_the_dataset_holds_exactly_once(dataset, images):
    worklist = make(dataset, images, {"c1": 0.4, "c2": 0.2})
    assert worklist.reconcile() == 0, "no dataset yet: nothing to reconcile"
    assert worklist.claim_next("alice").case_id == "c1"
    image = Image(np.zeros((6, 8, 10), np.int16), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    approved = np.zeros((6, 8, 10), np.uint8)
    approved[1:4, 2:6, 2:8] = 1
    proposal = approved.copy()
    proposal[1:4, 2:6, 2] = 0  # 3 x 4 voxels of 2 mm^3 the annotator added: 0.024 mL
    labels = {1: PHANTOM_LABELS[1], 2: PHANTOM_LABELS[2]}
    exported = export_case(
        dataset, "c1", image, image.with_array(approved), labels, proposal=image.with_array(proposal)
    )
    # ... killed here: the worklist still says "in progress"
    assert worklist.case("c1").state == IN_PROGRESS

    assert Worklist(dataset).reconcile() == 1
    c1 = worklist.case("c1")
    assert (c1.state, c1.owner, c1.approved_at, c1.generation) == (APPROVED, None, exported.exported_at, 0)
    assert c1.effort == exported.correction
    assert c1.effort["lungs"]["changed_voxels"] == 12
    assert c1.effort["lungs"]["changed_ml"] == pytest.approx(12 * 2.0 / 1000)
    assert worklist.reconcile() == 0, "already approved: not approved again"
    assert worklist.claim_next("alice").case_id == "c2", "alice's approved case is no longer hers"

    # the session's own approval arriving late changes nothing, and the dataset refuses a second c1
    worklist.approve("c1", exported)
    assert worklist.case("c1") == c1
    with pytest.raises(DatasetExportError, match="already exists"):
        export_case(dataset, "c1", image, image.with_array(approved), labels)
    assert [case.case_id for case in read_dataset(dataset).cases] == ["c1"]
    assert [case.case_id for case in worklist.cases() if case.state == APPROVED] == ["c1"]


# --- several processes at once ---------------------------------------------------------------


def claim_until_none(dataset: str, owner: str, start, results) -> None:
    """A claimer: claims, then finishes (skips) its case, until none is left; reports its claims."""
    worklist = Worklist(dataset)
    start.wait(60)  # every claimer has imported everything and opened the worklist
    claimed = []
    while (case := worklist.claim_next(owner)) is not None:
        assert case.owner == owner and case.state == IN_PROGRESS
        claimed.append(case.case_id)
        worklist.skip(case.case_id, f"done by {owner}")
    results.put((owner, claimed))


@pytest.mark.slow
def test_claimers_in_several_processes_each_get_other_cases(dataset, images):
    cases = {f"c{i:03d}": (i % 17) / 17 for i in range(60)}
    make(dataset, images, cases)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    owners = [f"owner{n}" for n in range(4)]
    start = context.Barrier(len(owners))
    processes = [
        context.Process(target=claim_until_none, args=(str(dataset), owner, start, results))
        for owner in owners
    ]
    for process in processes:
        process.start()
    claims = dict(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    every_claim = [case_id for claimed in claims.values() for case_id in claimed]
    assert sorted(every_claim) == sorted(cases), "every case claimed exactly once"
    assert sum(1 for claimed in claims.values() if claimed) >= 2, "the claimers did not overlap at all"
    worklist = Worklist(dataset)
    for owner, claimed in claims.items():
        for case_id in claimed:
            assert worklist.case(case_id).skip_reason == f"done by {owner}"
    assert integrity(worklist) == "ok"


WRITER = """
import sys
from LungLiverSegLib.dataset.export import CaseRecord
from LungLiverSegLib.worklist.store import Worklist

dataset, model, *case_ids = sys.argv[1:]
worklist = Worklist(dataset)
print("ready", flush=True)
for number, case_id in enumerate(case_ids):
    worklist.record_proposal(case_id, model, 0.5, 0.1)
    if number % 3 == 2:
        worklist.skip(case_id, "killed test")
        continue
    worklist.claim_next("writer")
    correction = {"lungs": {"dice": 0.9, "changed_ml": float(number)}}
    at = f"2025-01-01T00:00:{number % 60:02d}+00:00"
    worklist.approve(case_id, CaseRecord(case_id, {}, None, at, "writer", (1,), correction))
    print("approved", case_id, flush=True)  # after the commit
"""


def integrity(worklist: Worklist) -> str:
    db = sqlite3.connect(worklist.folder / DATABASE)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


@pytest.mark.slow
def test_a_writer_killed_mid_write_leaves_an_intact_worklist_with_every_committed_approval(dataset, images):
    rounds, per_round = 5, 300
    all_ids = [f"r{r}_{n:03d}" for r in range(rounds) for n in range(per_round)]
    worklist = make(dataset, images, dict.fromkeys(all_ids))
    rng = random.Random(2024)
    committed: set[str] = set()
    for r in range(rounds):
        mine = all_ids[r * per_round : (r + 1) * per_round]
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(dataset), MODEL, *mine],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert writer.stdout.readline().strip() == "ready"
        for _ in range(rng.randint(1, 20)):  # some approvals committed, then a random moment more
            line = writer.stdout.readline()
            assert line.startswith("approved"), f"the writer stopped early: {line!r}"
            committed.add(line.split()[1])
        time.sleep(rng.uniform(0.0, 0.05))
        writer.kill()  # SIGKILL: no cleanup, possibly inside a transaction
        rest, _ = writer.communicate(timeout=30)
        assert writer.returncode == -9
        committed.update(line.split()[1] for line in rest.splitlines() if line.startswith("approved"))

        assert integrity(worklist) == "ok"
        reopened = Worklist(dataset)
        cases = {case.case_id: case for case in reopened.cases()}
        assert len(cases) == len(all_ids)
        for case_id in committed:
            assert cases[case_id].state == APPROVED, f"{case_id} was approved before the kill"
            assert cases[case_id].effort["lungs"]["changed_ml"] == float(all_ids.index(case_id) % per_round)
        # the case the kill interrupted is in one state or another, never half-written
        for case in cases.values():
            if case.state == APPROVED:
                assert case.effort is not None and case.approved_at is not None
            if case.state == PROPOSED:
                assert case.model == MODEL and case.generation == 0 and case.unsure_ratio == 0.5
            if case.state == SKIPPED:
                assert case.skip_reason == "killed test"
    # a later writer goes on: the writer's case left in progress is handed back to it first
    reopened = Worklist(dataset)
    leftover = [case for case in reopened.cases() if case.state == IN_PROGRESS]
    assert all(case.owner == "writer" for case in leftover)
    if leftover:
        assert reopened.claim_next("writer").case_id == leftover[0].case_id
    reopened.add(found("after"))
    reopened.record_proposal("after", MODEL, 0.1, 0.0)
    assert reopened.case("after").state == PROPOSED
