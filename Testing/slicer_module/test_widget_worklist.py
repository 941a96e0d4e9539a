"""The Worklist section: a folder of scans worked through case by case, in the widget as Slicer loads
it (the Slicer-compatibility harness, Slicer's own Python layer at each supported tag) and in the
Qt-free ``WorklistSession`` underneath it (slicer-core only).

The proposing child is real: this project's Python (which has torch) runs ``lunglivseg worklist``
with the bundled ``phantom-ct-3d`` model on three small phantom CTs, as ``PythonSlicer`` would in
Slicer. What the harness cannot show: the table and the views themselves (``pythonqt.py`` stands
in for Qt; the slice views are their real MRML composite nodes), and the Segment Editor's GUI (the
correction is made through slicer-core's segment editor logic, as ``scene_helpers`` does).
"""

from __future__ import annotations

import json
import os
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer", reason="needs slicer-core (pip install 'slicer-core==5.11.*')")

from factories import REPO_ROOT  # noqa: E402
from LungLiverSegLib.demo.phantom import make_phantom  # noqa: E402
from LungLiverSegLib.imageio import write_image  # noqa: E402
from LungLiverSegLib.paths import USER_MODELS_ENV  # noqa: E402
from LungLiverSegLib.slicer_module.logic import SceneLogic  # noqa: E402
from LungLiverSegLib.slicer_module.scene import create_headless_scene  # noqa: E402
from LungLiverSegLib.slicer_module.worklist_logic import WorklistSession  # noqa: E402
from LungLiverSegLib.worklist.store import FOLDER_ORDER  # noqa: E402
from slicer_module.slicer_harness.harness import (  # noqa: E402
    HARNESS_DIR,
    MODULE_FILE,
    SLICER_REFERENCE,
    SLICER_TAGS,
    run_in_harness,
)

pytestmark = [
    pytest.mark.slicer,
    pytest.mark.skipif(os.name == "nt", reason="the harness venv's layout is POSIX"),
]

MODEL = "phantom-ct-3d@0.1.0"
UI_FILE = REPO_ROOT / "LungLiverSeg" / "Resources" / "UI" / "LungLiverSeg.ui"
CONTROLS = (
    "QPushButton",
    "QCheckBox",
    "QLineEdit",
    "QSpinBox",
    "QComboBox",
    "ctkPathLineEdit",
    "qMRMLNodeComboBox",
)
"""The widget classes a user acts on: each must reach the code (a binding or a connected signal)."""


def write_phantoms(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three small phantom CTs (ct0, ct1, ct2) in ``folder/images``; no user models (only the
    bundled ones, in this process and its children)."""
    monkeypatch.setenv(USER_MODELS_ENV, str(folder / "no-user-models"))
    images = folder / "images"
    images.mkdir()
    for seed in range(3):
        ct, _, _ = make_phantom((48, 40, 32), (6.0, 6.0, 9.0), seed=seed)
        write_image(images / f"ct{seed}.nii.gz", ct)
    return images


@pytest.fixture
def images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return write_phantoms(tmp_path, monkeypatch)


def test_the_worklist_sessions_way_through_three_cases_without_qt(images: Path, tmp_path: Path):
    """The Qt-free part on a headless slicer-core scene: propose (real child), claim, approve the
    case as proposed (no correction: Dice 1), skip one with its reason."""
    logic = SceneLogic(create_headless_scene(), python=sys.executable)
    session = WorklistSession(logic, "test")
    session.open(images, tmp_path / "dataset", MODEL, ranking=FOLDER_ORDER, retrain_every=2)
    finished = []
    session.propose("cpu", on_finished=finished.append)
    logic.runner.wait(timeout=300)
    assert [result.succeeded for result in finished] == [True], finished[0].error
    assert [row["state"] for row in session.rows()] == ["proposed"] * 3

    first = session.next_case()
    assert first.case.case_id == "ct0" and first.segmentation_node.GetSegmentation().GetNumberOfSegments()
    session.approve(wait=True)
    session.next_case()
    session.skip("motion artefact")
    rows = {row["case"]: row for row in session.rows()}
    assert rows["ct0"]["state"] == "approved" and rows["ct0"]["dice"] == pytest.approx(1.0)
    assert rows["ct0"]["changed_ml"] == pytest.approx(0.0)
    assert (rows["ct1"]["state"], rows["ct1"]["why"]) == ("skipped", "motion artefact")
    assert (tmp_path / "dataset" / "labelsTr" / "ct0.nii.gz").is_file()
    svg, advice = session.effort()
    assert svg.startswith("<svg") and advice.startswith("1 of 2 cases approved")


def test_the_worklist_section_is_in_the_ui_with_its_controls():
    names = {widget.get("name"): widget.get("class") for widget in ElementTree.parse(UI_FILE).iter("widget")}
    expected = {
        "worklistCollapsibleButton": "ctkCollapsibleButton",
        "worklistImagesSelector": "ctkPathLineEdit",
        "worklistDatasetSelector": "ctkPathLineEdit",
        "worklistRankingSelector": "QComboBox",
        "worklistRetrainEverySpinBox": "QSpinBox",
        "openWorklistButton": "QPushButton",
        "worklistProgressBar": "QProgressBar",
        "worklistTable": "QTableWidget",
        "nextCaseButton": "QPushButton",
        "approveCaseButton": "QPushButton",
        "skipCaseButton": "QPushButton",
        "skipReasonLineEdit": "QLineEdit",
        "worklistEffortLabel": "QLabel",
        "worklistAdviceLabel": "QLabel",
    }
    assert {name: names.get(name) for name in expected} == expected


DRIVE_WORKLIST = """
import json, sys, time
from pathlib import Path

sys.path.insert(0, {harness_dir!r})
sys.path.insert(0, {testing_dir!r})
import pythonqt
import run_module

temp = Path({temp!r})
slicer = run_module.install_slicer_layer(Path({layer!r}), temp)
module = run_module.load_like_slicer(Path({module_file!r}))
parent = pythonqt.ModuleParent({module_file!r})
slicer.modules.lungliverseg = parent
module.LungLiverSeg(parent)
scene = slicer.mrmlScene
views = []
for name in ("Red", "Yellow", "Green"):  # the slice views' composite nodes, as Slicer's layout makes them
    views.append(scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode"))
    views[-1].SetLayoutName(name)
widget = run_module.open_panel(slicer, module, parent)
messages = []
slicer.util.errorDisplay = lambda text, *args, **options: messages.append(text)
slicer.util.warningDisplay = lambda text, *args, **options: messages.append(text)
widget.ensureDependencies = lambda: True  # the child is the project's Python, which has torch
widget.logic.python = {child_python!r}
ui, node = widget.ui, widget._parameterNode
report = {{"steps": run_module.report["steps"], "messages": messages}}

CONTROLS = {controls!r}
def connected_signals(control):
    return sorted(key.removeprefix("_signal_") for key, value in vars(control).items()
                  if key.startswith("_signal_") and value.slots)
report["controls"] = {{name: connected_signals(control) for name, control in vars(ui).items()
                      if type(control).__name__ in CONTROLS}}

def pump(done, timeout=240):
    # Qt's event loop, as the poll timer's interval passes
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("the worklist did not get there in time")
        time.sleep(0.02)
        if widget._pollTimer.active:
            widget._pollTimer.timeout.emit()

def table():
    t = ui.worklistTable
    return [[t.item(row, column).text() for column in range(t.columnCount())] for row in range(t.rowCount())]

def buttons():
    return {{name: getattr(ui, name).enabled
             for name in ("openWorklistButton", "nextCaseButton", "approveCaseButton", "skipCaseButton")}}

report["before"] = buttons()
ui.worklistImagesSelector.currentPath = {images!r}
ui.worklistDatasetSelector.currentPath = {dataset!r}
ui.worklistRankingSelector.currentIndex = ui.worklistRankingSelector.findText("folder")
ui.worklistRetrainEverySpinBox.value = 2
widget.selectModel({model!r})
report["header"] = ui.worklistTable.header_labels
report["ready"] = buttons()
report["parameters"] = [str(node.worklistImagesFolder), str(node.worklistDatasetFolder),
                        node.worklistRanking, node.worklistRetrainEvery, node.modelName]

progress = []
on_progress = widget.onWorklistProgress
widget.onWorklistProgress = lambda update: (progress.append(update.case), on_progress(update))
ui.openWorklistButton.click()
report["proposing"] = {{"button": ui.openWorklistButton.text, "timer": widget._pollTimer.active,
                       "progress_visible": ui.worklistProgressBar.visible,
                       "segment_enabled": ui.segmentButton.enabled}}
pump(lambda: widget._task is None)
report["proposed"] = {{"table": table(), "status": ui.worklistStatusLabel.text, "buttons": buttons(),
                      "progress_cases": sorted(set(progress)), "button": ui.openWorklistButton.text}}

ui.nextCaseButton.click()
loaded = widget.worklistSession.loaded
volume, segmentation = loaded.volume_node, loaded.segmentation_node
report["first"] = {{
    "case": loaded.case.case_id,
    "input_selected": node.inputVolume is volume and ui.inputVolumeSelector.currentNode() is volume,
    "segmentation_selected": node.outputSegmentation is segmentation
        and ui.outputSegmentationSelector.currentNode() is segmentation,
    "shown_in_views": [view.GetBackgroundVolumeID() == volume.GetID() for view in views],
    "segments": segmentation.GetSegmentation().GetNumberOfSegments(),
    "table": table(), "buttons": buttons(), "status": ui.worklistStatusLabel.text,
}}

import numpy as np
import scene_helpers
scene.module_logics = {{"Application": scene.harness_logics[0]}}  # what scene_helpers' editor needs
columns, rows, slices = volume.GetImageData().GetDimensions()
erased = np.zeros((slices, rows, columns), np.uint8)
erased[: slices // 2] = 1  # the lower half of the lungs, as an annotator would erase it
lungs = scene_helpers.segment_id_named(segmentation, "lungs")
scene_helpers.edit_segment(segmentation, volume, lungs, erased, "ModificationModeRemove")

ui.approveCaseButton.click()
report["approving"] = {{"status": ui.worklistStatusLabel.text, "timer": widget._pollTimer.active,
                       "buttons": buttons()}}
pump(lambda: not widget._approving)
report["approved"] = {{"table": table(), "status": ui.worklistStatusLabel.text,
                      "in_hand": widget.worklistSession.loaded.case.case_id,
                      "input_is_next": node.inputVolume is widget.worklistSession.loaded.volume_node,
                      "timer": widget._pollTimer.active}}

skip_without_reason = ui.skipCaseButton.enabled
ui.skipReasonLineEdit.text = "motion artefact"
report["skip_enabled"] = [skip_without_reason, ui.skipCaseButton.enabled]
ui.skipCaseButton.click()
report["skipped"] = {{"table": table(), "status": ui.worklistStatusLabel.text,
                     "in_hand": widget.worklistSession.loaded.case.case_id,
                     "reason_cleared": ui.skipReasonLineEdit.text == ""}}

ui.approveCaseButton.click()
pump(lambda: not widget._approving)
report["done"] = {{"table": table(), "status": ui.worklistStatusLabel.text, "buttons": buttons(),
                  "in_hand": widget.worklistSession.loaded is not None,
                  "effort": ui.worklistEffortLabel.text, "advice": ui.worklistAdviceLabel.text,
                  "curve": (Path({dataset!r} + ".worklist") / "effort.svg").read_text()[:4],
                  "timer": widget._pollTimer.active}}

from LungLiverSegLib.slicer_module.training_job import TrainingOutcome
name, _, version = {model!r}.partition("@")
widget.onTrainingFinished(TrainingOutcome(model_name=name, model_version=version))
report["retrained"] = {{"task": widget._task, "button": ui.openWorklistButton.text,
                       "models": widget.worklistSession.worklist.models()}}
pump(lambda: widget._task is None)
report["reproposed"] = {{"status": ui.worklistStatusLabel.text, "advice": ui.worklistAdviceLabel.text}}
widget.exit()
widget.cleanup()
report["teardown_timer"] = widget._pollTimer.active
print(json.dumps(report, default=str))
"""


@pytest.fixture(scope="module", params=SLICER_TAGS)
def walk(request, slicer_python: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The widget's walk through the worklist of three phantoms at one Slicer tag (one run each)."""
    tag = request.param
    layer = SLICER_REFERENCE / tag / "Base" / "Python" / "slicer"
    if not (layer / "ScriptedLoadableModule.py").is_file():
        pytest.skip(f"Slicer's Python layer ({tag}) not found at {layer}")
    temp = tmp_path_factory.mktemp(f"worklist-{tag}")
    with pytest.MonkeyPatch.context() as patch:
        images = write_phantoms(temp, patch)
        code = DRIVE_WORKLIST.format(
            harness_dir=str(HARNESS_DIR),
            testing_dir=str(REPO_ROOT / "Testing"),
            temp=str(temp),
            layer=str(layer),
            module_file=str(MODULE_FILE),
            child_python=sys.executable,
            controls=CONTROLS,
            images=str(images),
            dataset=str(temp / "dataset"),
            model=MODEL,
        )
        result = run_in_harness(slicer_python, ["-c", code], cwd=temp)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.splitlines()[-1])
    report["dataset"] = temp / "dataset"
    return report


@pytest.mark.slow
def test_the_panel_builds_and_every_control_reaches_the_code(walk: dict):
    """Each control of the whole panel, the Worklist's included, has a signal connected after
    setup and enter: a bound one through Slicer's GUI connector, the others by the widget."""
    assert walk["steps"]["widget_setup"] == "ok", walk["steps"]["widget_setup"]
    assert walk["steps"]["widget_enter"] == "ok", walk["steps"]["widget_enter"]
    assert {"openWorklistButton", "skipReasonLineEdit", "worklistRankingSelector"} <= set(walk["controls"])
    assert {name: signals for name, signals in walk["controls"].items() if not signals} == {}
    assert walk["before"] == dict.fromkeys(
        ("openWorklistButton", "nextCaseButton", "approveCaseButton", "skipCaseButton"), False
    )
    assert walk["ready"]["openWorklistButton"]
    assert walk["parameters"][2:] == ["folder", 2, MODEL]
    assert walk["header"] == ["case", "state", "uncertainty", "changed mL", "Dice", "why"]


@pytest.mark.slow
def test_open_worklist_proposes_in_the_background_with_cancel_and_progress(walk: dict):
    assert walk["proposing"] == {
        "button": "Cancel",
        "timer": True,
        "progress_visible": True,
        "segment_enabled": False,
    }
    proposed = walk["proposed"]
    assert proposed["button"] == "Open worklist"
    assert [row[:2] for row in proposed["table"]] == [
        ["ct0", "proposed"],
        ["ct1", "proposed"],
        ["ct2", "proposed"],
    ]
    assert all(row[2] for row in proposed["table"]), "every proposed case shows its uncertainty"
    assert proposed["status"] == "Proposals ready: 3 cases to work on."
    assert proposed["progress_cases"] == ["1/3 ct0", "2/3 ct1", "3/3 ct2"]
    assert proposed["buttons"]["nextCaseButton"] and not proposed["buttons"]["approveCaseButton"]


@pytest.mark.slow
def test_next_case_selects_and_shows_the_image_with_its_proposal(walk: dict):
    first = walk["first"]
    assert first["case"] == "ct0"
    assert first["input_selected"] and first["segmentation_selected"]
    assert first["shown_in_views"] == [True, True, True]
    assert first["segments"] >= 1
    assert first["table"][0][:2] == ["ct0", "in progress"]
    assert first["buttons"] == {
        "openWorklistButton": False,
        "nextCaseButton": False,
        "approveCaseButton": True,
        "skipCaseButton": False,
    }
    assert first["status"].startswith("Case ct0: correct the proposal")


@pytest.mark.slow
def test_approve_exports_the_corrected_case_and_moves_on(walk: dict):
    assert walk["approving"]["status"] == "Approving ct0..."
    assert walk["approving"]["timer"] and not walk["approving"]["buttons"]["approveCaseButton"]
    approved = walk["approved"]
    assert (walk["dataset"] / "labelsTr" / "ct0.nii.gz").is_file()
    assert (walk["dataset"] / "predictions" / "ct0.nii.gz").is_file()
    [row] = [row for row in approved["table"] if row[0] == "ct0"]
    _case, state, _unsure, changed, dice, _why = row
    assert state == "approved" and float(changed) > 0 and 0 < float(dice) < 1
    assert approved["status"].startswith("Approved ct0. Case ct1: correct the proposal")
    assert approved["in_hand"] == "ct1" and approved["input_is_next"]
    assert not approved["timer"]


@pytest.mark.slow
def test_skip_needs_a_reason_and_records_it(walk: dict):
    assert walk["skip_enabled"] == [False, True]
    skipped = walk["skipped"]
    [row] = [row for row in skipped["table"] if row[0] == "ct1"]
    assert row == ["ct1", "skipped", row[2], "", "", "motion artefact"]
    assert skipped["status"].startswith("Skipped ct1 (motion artefact). Case ct2:")
    assert skipped["in_hand"] == "ct2" and skipped["reason_cleared"]
    assert not (walk["dataset"] / "labelsTr" / "ct1.nii.gz").exists()


@pytest.mark.slow
def test_the_last_approval_shows_the_effort_and_the_advice(walk: dict):
    done = walk["done"]
    assert [row[1] for row in done["table"]] == ["approved", "approved", "skipped"]
    [ct2] = [row for row in done["table"] if row[0] == "ct2"]
    assert (ct2[3], ct2[4]) == ("0.0", "1.000"), "approved as proposed: nothing changed"
    assert done["status"] == "Approved ct2. No proposed case is waiting."
    assert not done["in_hand"] and not done["timer"]
    assert done["buttons"]["nextCaseButton"] and not done["buttons"]["approveCaseButton"]
    assert "1. ct0: " in done["effort"] and "2. ct2: 0.0 mL changed, mean Dice 1.000" in done["effort"]
    assert "effort.svg" in done["effort"] and done["curve"] == "<svg"
    assert done["advice"] == "2 cases approved with the current model: retrain now to use them."
    assert walk["messages"] == []


@pytest.mark.slow
def test_a_model_installed_by_train_proposes_the_worklist_again(walk: dict):
    retrained = walk["retrained"]
    assert retrained["task"] == "propose" and retrained["button"] == "Cancel"
    assert [generation for generation, _ in retrained["models"]] == [0, 1]
    assert walk["reproposed"]["status"] == "Proposals ready: 0 cases to work on."
    assert walk["reproposed"]["advice"].startswith("0 of 2 cases approved with the current model")
    assert walk["teardown_timer"] is False
