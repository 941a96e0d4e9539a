"""The Worklist section's logic (``WorklistSession``) on a real headless MRML scene.

The proposals come from the real ``lunglivseg worklist`` in a real child process with the bundled
demo model ``phantom-ct-3d``, once per module, on three small phantoms (one drowned in noise: the
case the model is least sure of, hence first). Each test then works on its own copy of that
worklist: Next case loads the image and the proposal, the annotator edits a segment as the
Segment Editor does, Approve exports the case and records the correction, Skip keeps the reason.
"""

from __future__ import annotations

import json
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="needs slicer-core (pip install 'slicer-core==5.11.*')")

from LungLiverSegLib.bundle.catalogue import list_models  # noqa: E402
from LungLiverSegLib.dataset.export import DatasetExportError, read_dataset  # noqa: E402
from LungLiverSegLib.demo.phantom import make_phantom  # noqa: E402
from LungLiverSegLib.errors import LungLiverSegError  # noqa: E402
from LungLiverSegLib.imageio import read_image, read_segmentation, write_image  # noqa: E402
from LungLiverSegLib.paths import BUNDLED_MODELS_ENV, USER_MODELS_ENV  # noqa: E402
from LungLiverSegLib.slicer_module.logic import SceneLogic  # noqa: E402
from LungLiverSegLib.slicer_module.mrml_bridge import image_from_volume_node  # noqa: E402
from LungLiverSegLib.slicer_module.scene import create_headless_scene  # noqa: E402
from LungLiverSegLib.slicer_module.worklist_logic import WorklistSession, owner_name  # noqa: E402
from LungLiverSegLib.worklist.store import (  # noqa: E402
    APPROVED,
    IN_PROGRESS,
    NEW,
    PROPOSED,
    SKIPPED,
    Worklist,
    worklist_folder,
)
from scene_helpers import assert_same_geometry, edit_segment, segment_id_named  # noqa: E402

pytestmark = pytest.mark.slicer

MODEL = "phantom-ct-3d"
KEY = f"{MODEL}@0.1.0"
KEY = "phantom-ct-3d@0.1.0"
NOISY = "case_1"
SIZE, SPACING = (96, 80, 48), (4.0, 4.0, 6.0)


def fake_cli(folder: Path, body: str) -> str:
    """An executable standing in for Slicer's Python (as in test_logic)."""
    script = folder / "fake_python"
    script.write_text(f"#!{sys.executable}\nimport sys\nargs = sys.argv[4:]\n{body}\n")
    script.chmod(0o755)
    return str(script)


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory: pytest.TempPathFactory):
    """The repository's bundled models, an empty user folder (the child inherits both)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(BUNDLED_MODELS_ENV, raising=False)
        patch.setenv(USER_MODELS_ENV, str(tmp_path_factory.mktemp("user-models")))
        if not any(entry.name == MODEL for entry in list_models()):
            pytest.skip(f"the bundled demo model {MODEL} is not in Resources/Models")
        yield


@pytest.fixture(autouse=True)
def isolated_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BUNDLED_MODELS_ENV, raising=False)
    monkeypatch.setenv(USER_MODELS_ENV, str(tmp_path / "no user models"))


@pytest.fixture(scope="module")
def proposed(model_folders, tmp_path_factory: pytest.TempPathFactory):
    """Three phantoms proposed by the real child: ``(images, dataset, progress, result)``."""
    root = tmp_path_factory.mktemp("proposed")
    images = root / "images"
    images.mkdir()
    for seed, case_id in enumerate(["case_0", NOISY, "case_2"]):
        ct, _, _ = make_phantom(SIZE, SPACING, seed)
        voxels = ct.array
        if case_id == NOISY:
            noise = np.random.default_rng(0).normal(0.0, 400.0, voxels.shape)
            voxels = np.clip(voxels + noise, -1024, 3000).astype(np.int16)
        write_image(images / f"{case_id}.nii.gz", ct.with_array(voxels))
    session = WorklistSession(SceneLogic(create_headless_scene()), "slicer")
    session.open(images, root / "dataset", MODEL)
    progress, finished = [], []
    session.propose(device="cpu", on_progress=progress.append, on_finished=finished.append)
    session.logic.runner.wait(300)
    return images, root / "dataset", progress, finished


@pytest.fixture
def dataset(proposed, tmp_path: Path) -> Path:
    """This test's copy of the proposed worklist (its dataset not yet made)."""
    _, template, *_ = proposed
    dataset = tmp_path / "dataset"
    shutil.copytree(worklist_folder(template), worklist_folder(dataset))
    return dataset


@pytest.fixture
def session(proposed, dataset: Path) -> WorklistSession:
    images, *_ = proposed
    session = WorklistSession(SceneLogic(create_headless_scene()), "slicer")
    session.open(images, dataset, MODEL)
    return session


def nodes_of_class(scene, class_name: str) -> list:
    return [scene.GetNthNodeByClass(i, class_name) for i in range(scene.GetNumberOfNodesByClass(class_name))]


def segment_names(segmentation_node) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]


@pytest.mark.slow
def test_the_child_proposes_every_case_ranked_most_uncertain_first(proposed):
    images, dataset, progress, finished = proposed
    (result,) = finished
    assert result.succeeded, result.error
    assert {update.case.split()[0] for update in progress} == {"1/3", "2/3", "3/3"}
    worklist = Worklist(dataset)
    cases = worklist.cases()
    assert cases[0].case_id == NOISY
    assert [c.unsure_ratio for c in cases] == sorted((c.unsure_ratio for c in cases), reverse=True)
    assert {(c.state, c.model, c.generation) for c in cases} == {(PROPOSED, KEY, 0)}
    assert worklist.models() == [(0, KEY)], "the model the worklist was opened with is no retrain"
    assert worklist.settings().images == images.resolve()
    for case in cases:
        assert worklist.proposal_path(case.case_id).is_file()


@pytest.mark.slow
def test_next_case_loads_the_image_and_its_proposal(session: WorklistSession, proposed):
    images, *_ = proposed
    scene = session.logic.scene
    loaded = session.next_case()
    case = loaded.case
    assert (case.case_id, case.state, case.owner) == (NOISY, IN_PROGRESS, owner_name("slicer"))
    image = read_image(images / case.source)
    shown = image_from_volume_node(loaded.volume_node)
    np.testing.assert_array_equal(shown.array, image.array)
    assert_same_geometry(shown, image)
    assert loaded.volume_node.GetName() == NOISY
    assert loaded.segmentation_node.GetName() == f"{NOISY} segmentation"

    proposal = session.logic.proposal_of(loaded.segmentation_node)
    assert proposal is not None
    assert proposal.model == {"name": MODEL, "version": "0.1.0"}
    assert proposal.volume_node_id == loaded.volume_node.GetID()
    labels, label_map = read_segmentation(session.worklist.proposal_path(NOISY))
    np.testing.assert_array_equal(proposal.labels.array, labels.array)
    present = [label_map[v].name for v in (1, 2) if np.any(labels.array == v)]
    assert segment_names(loaded.segmentation_node) == present

    # Next case again, the case still in hand: the same nodes, none added
    counts = [
        len(nodes_of_class(scene, kind)) for kind in ("vtkMRMLScalarVolumeNode", "vtkMRMLSegmentationNode")
    ]
    assert session.next_case() is loaded
    assert [
        len(nodes_of_class(scene, kind)) for kind in ("vtkMRMLScalarVolumeNode", "vtkMRMLSegmentationNode")
    ] == counts


@pytest.mark.slow
def test_approve_exports_the_corrected_case_and_records_its_effort(session: WorklistSession, dataset: Path):
    loaded = session.next_case()
    proposal = session.logic.proposal_of(loaded.segmentation_node).labels.array
    lungs = segment_id_named(loaded.segmentation_node, "lungs")
    erased = np.zeros(proposal.shape, bool)
    erased[-12:] = True  # the annotator erases the lungs of the top 12 slices
    edit_segment(loaded.segmentation_node, loaded.volume_node, lungs, erased, "ModificationModeRemove")
    changed = int(np.count_nonzero(erased & (proposal == 1)))
    assert changed > 0

    outcomes = []
    session.approve(outcomes.append, wait=True)
    (outcome,) = outcomes
    assert outcome.succeeded, outcome.error
    record = outcome.record
    assert session.loaded is None
    assert [case.case_id for case in read_dataset(dataset).cases] == [NOISY]
    approved = read_image(dataset / "labelsTr" / f"{NOISY}.nii.gz").array
    np.testing.assert_array_equal(approved, np.where(erased & (proposal == 1), 0, proposal))

    case = session.worklist.case(NOISY)
    assert (case.state, case.owner, case.generation) == (APPROVED, None, 0)
    assert case.effort == record.correction
    assert case.effort["lungs"]["changed_voxels"] == changed
    assert case.effort["lungs"]["changed_ml"] == pytest.approx(changed * 4 * 4 * 6 / 1000)
    assert case.effort["lungs"]["dice"] < 1.0
    if np.any(proposal == 2):
        assert case.effort["liver"]["dice"] == 1.0 and case.effort["liver"]["changed_voxels"] == 0
    assert record.model == {"name": MODEL, "version": "0.1.0"}

    row = next(row for row in session.rows() if row["case"] == NOISY)
    assert row["state"] == APPROVED
    assert row["changed_ml"] == pytest.approx(sum(v["changed_ml"] for v in case.effort.values()))
    assert row["dice"] == pytest.approx(np.mean([v["dice"] for v in case.effort.values()]))  # the curve's
    svg, advice = session.effort()
    lines = list(ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}polyline"))
    assert len(lines) == 2 and all(line.get("points").count(",") == 1 for line in lines)
    assert advice == "1 of 4 cases approved with the current model before a retrain is suggested."

    # a second session on the same dataset: the approved case is done, reopening changes nothing
    other = WorklistSession(SceneLogic(create_headless_scene()), "browser")
    other.open(session.worklist.settings().images, dataset, MODEL)
    assert other.worklist.case(NOISY) == case
    assert other.next_case().case.case_id != NOISY


@pytest.mark.slow
def test_next_case_skip_and_release_go_through_the_list_in_ranked_order(session: WorklistSession):
    ranked = [case.case_id for case in session.worklist.cases()]
    assert ranked[0] == NOISY

    first = session.next_case()
    assert first.case.case_id == ranked[0]
    with pytest.raises(LungLiverSegError, match="say why"):
        session.skip("  ")
    session.skip("breathing artefacts")
    assert session.loaded is None
    assert session.worklist.case(ranked[0]).skip_reason == "breathing artefacts"

    second = session.next_case()
    assert second.case.case_id == ranked[1]
    session.release()
    released = session.worklist.case(ranked[1])
    assert (released.state, released.owner) == (PROPOSED, None) and session.loaded is None
    session.release()  # nothing in hand: nothing to do

    # another front end meanwhile: it gets the best case no one holds
    other = WorklistSession(SceneLogic(create_headless_scene()), "browser")
    other.open(session.worklist.settings().images, session.worklist.dataset, MODEL)
    assert session.next_case().case.case_id == ranked[1]
    assert other.next_case().case.case_id == ranked[2]
    assert other.worklist.case(ranked[2]).owner == owner_name("browser")
    other.skip("for the other window")

    session.approve(wait=True)  # approved as proposed: no correction
    assert session.worklist.case(ranked[1]).effort["lungs"]["dice"] == 1.0
    assert session.next_case() is None

    rows = session.rows()
    assert [(row["case"], row["state"], row["why"]) for row in rows] == [
        (ranked[1], APPROVED, ""),
        (ranked[0], SKIPPED, "breathing artefacts"),
        (ranked[2], SKIPPED, "for the other window"),
    ]
    assert rows[0]["changed_ml"] == 0.0 and rows[1]["changed_ml"] is None and rows[1]["unsure"] > 0


@pytest.mark.slow
def test_a_retrain_sends_the_open_cases_back_and_the_case_in_hand_keeps_its_model(session: WorklistSession):
    ranked = [case.case_id for case in session.worklist.cases()]
    session.next_case()
    session.model_installed("phantom-ct-3d@0.2.0")
    states = {row["case"]: row["state"] for row in session.rows()}
    assert states == {ranked[0]: IN_PROGRESS, ranked[1]: NEW, ranked[2]: NEW}
    assert session.worklist.settings().generation == 1
    assert session.next_case() is session.loaded, "the case in hand stays in hand"
    assert session.worklist.claim_next("someone else") is None, "the others wait for the new model"

    session.approve(wait=True)
    approved = session.worklist.case(ranked[0])
    assert (approved.state, approved.generation, approved.model) == (APPROVED, 0, KEY)
    _, advice = session.effort()
    assert advice.startswith("0 of 4 cases approved with the current model"), "its effort is the old model's"


@pytest.mark.slow
def test_an_export_that_fails_keeps_the_case_and_a_crash_after_the_export_is_reconciled(
    session: WorklistSession, dataset: Path
):
    loaded = session.next_case()
    case_id = loaded.case.case_id
    # the case reaches the dataset, and the worklist is not told (killed between the two writes)
    record = session.logic.export_for_training(
        loaded.volume_node, loaded.segmentation_node, dataset, case_id, waitForCompletion=True
    )
    outcomes = []
    with pytest.raises(DatasetExportError, match="already exists"):
        session.approve(outcomes.append, wait=True)
    assert outcomes[0].record is None and "already exists" in outcomes[0].error
    assert session.loaded is loaded and session.worklist.case(case_id).state == IN_PROGRESS

    reopened = WorklistSession(SceneLogic(create_headless_scene()), "slicer")
    reopened.open(session.worklist.settings().images, dataset, MODEL)
    case = reopened.worklist.case(case_id)
    assert (case.state, case.effort, case.approved_at) == (APPROVED, record.correction, record.exported_at)
    assert [c.case_id for c in read_dataset(dataset).cases] == [case_id]
    assert reopened.next_case().case.case_id != case_id


def test_a_session_says_what_it_needs_first(tmp_path: Path):
    session = WorklistSession(SceneLogic(create_headless_scene()), "slicer")
    with pytest.raises(LungLiverSegError, match="open a worklist first"):
        session.next_case()
    with pytest.raises(LungLiverSegError, match="open a worklist first"):
        session.propose()
    images = tmp_path / "images"
    images.mkdir()
    session.open(images, tmp_path / "dataset", KEY)
    assert session.next_case() is None and session.rows() == []
    assert session.effort() == (
        "",
        "0 of 4 cases approved with the current model before a retrain is suggested.",
    )
    with pytest.raises(LungLiverSegError, match="no case in hand"):
        session.approve()
    with pytest.raises(LungLiverSegError, match="no case in hand"):
        session.skip("why not")


def test_propose_runs_one_child_at_a_time_and_reports_its_failure(tmp_path: Path):
    images = tmp_path / "images"
    images.mkdir()
    logic = SceneLogic(create_headless_scene(), python=fake_cli(tmp_path, "import time; time.sleep(60)"))
    session = WorklistSession(logic, "slicer")
    session.open(images, tmp_path / "dataset", KEY)
    finished = []
    session.propose(on_finished=finished.append)
    with pytest.raises(LungLiverSegError, match="is running"):
        session.propose()
    logic.cancel()
    logic.runner.wait(15)
    assert finished[0].cancelled

    arguments = tmp_path / "arguments.json"
    logic.python = fake_cli(
        tmp_path,
        f"import json; open({str(arguments)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
        "print('lunglivseg: error: not enough memory', file=sys.stderr); sys.exit(2)",
    )
    session.propose(device="cpu", on_finished=finished.append)
    logic.runner.wait(15)
    assert finished[1].error == "lunglivseg: error: not enough memory"
    assert json.loads(arguments.read_text()) == [
        *["-m", "LungLiverSegLib.cli", "worklist", str(images.resolve()), "--model", KEY],
        *["--dataset", str((tmp_path / "dataset").resolve()), "--device", "cpu", "--ranking", "uncertainty"],
        *["--progress", "json"],
    ]


def test_a_claim_of_a_process_gone_is_released_on_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A window that crashed keeps its case "in progress" for good, unless the next open sees its
    process is gone; a claim of another machine (or of a live process) is kept."""
    import socket

    from LungLiverSegLib.worklist.store import Found, Worklist

    monkeypatch.setattr(socket, "gethostname", lambda: "this-host")
    images = tmp_path / "images"
    images.mkdir()
    worklist = Worklist.create(tmp_path / "ds", images, KEY)
    worklist.add([Found(case_id, f"{case_id}.nii.gz") for case_id in ("a", "b", "c")])
    for case_id in ("a", "b", "c"):
        worklist.record_proposal(case_id, KEY, 0.1, 0.0)
    gone, alive, elsewhere = "slicer@this-host:999999999", owner_name("slicer"), "app@other:1"
    held = {owner: worklist.claim_next(owner).case_id for owner in (gone, alive, elsewhere)}  # type: ignore[union-attr]

    WorklistSession(SceneLogic(None), "browser").open(images, tmp_path / "ds", KEY)

    after = {case.case_id: (case.state, case.owner) for case in worklist.cases()}
    assert after[held[gone]] == ("proposed", None)
    assert after[held[alive]] == ("in progress", alive)
    assert after[held[elsewhere]] == ("in progress", elsewhere)
