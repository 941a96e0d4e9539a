"""How the module's widget tells the user about errors and warnings, under Slicer's own ``util.py``.

``LungLiverSeg.py`` is loaded as Slicer loads it, with Slicer's real ``util.py``, ``i18n.py`` and
``ScriptedLoadableModule.py`` from ../shared/slicer-reference; only ``slicer.app`` and the dialogs
(``errorDisplay``, ``warningDisplay``: Qt message boxes) are stand-ins that record what they show.
It runs in a child process, so that the stand-ins never reach this process's ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from factories import REPO_ROOT
from slicer_module.slicer_harness.harness import HARNESS_DIR

pytest.importorskip("slicer", reason="needs slicer-core (pip install 'slicer-core==5.11.*')")

SLICER_REFERENCE = REPO_ROOT.parent / "shared" / "slicer-reference"
MODULE_FILE = REPO_ROOT / "LungLiverSeg" / "LungLiverSeg.py"

DRIVE_WIDGET_MESSAGES = """
import json, sys, types

sys.path.insert(0, {harness!r})
from loading import empty_pythonqt, load

empty_pythonqt()
sys.modules["qt"].Qt = types.SimpleNamespace(WaitCursor="WaitCursor")
import slicer

shown = []


class App:
    def testingEnabled(self):
        return False

    def setOverrideCursor(self, cursor):
        shown.append(["cursor", cursor])

    def restoreOverrideCursor(self):
        shown.append(["cursor restored"])

    def translate(self, context, text):
        return text


slicer.app = App()
util = slicer.util = load("slicer.util", {python!r} + "/util.py")
util.errorDisplay = lambda text, **options: shown.append(
    ["error", text, "Traceback" in options.get("detailedText", "")]
)
util.warningDisplay = lambda text, **options: shown.append(["warning", text])
load("slicer.i18n", {python!r} + "/i18n.py")
load("slicer.ScriptedLoadableModule", {python!r} + "/ScriptedLoadableModule.py")
wrapper = sys.modules["slicer.parameterNodeWrapper"] = types.ModuleType("slicer.parameterNodeWrapper")
wrapper.parameterNodeWrapper = lambda cls: cls  # the parameter node is not under test here
wrapper.__getattr__ = lambda name: lambda *args, **kwargs: None  # Choice, WithinRange, ...
module = load("LungLiverSeg", {module_file!r})

from LungLiverSegLib.slicer_module.mrml_bridge import SlicerOperationError
from LungLiverSegLib.slicer_module.process import JobRunningError

with module.showingErrors("Export failed", waitCursor=True):
    raise JobRunningError("a segmentation is already running")
with module.showingErrors("Segmentation could not start"):
    raise SlicerOperationError("Slicer could not import the labels")
try:
    with module.showingErrors("Export failed"):
        raise ValueError("a bug")
except ValueError:
    shown.append(["re-raised"])
label = types.SimpleNamespace(text="Done.")
module.showWarnings(("the input is unlike the training data",), label)
module.showWarnings((), label)

# The panel's handlers, on a widget reduced to what they touch.
from LungLiverSegLib.slicer_module.logic import ExportOutcome, SegmentationOutcome

status = types.SimpleNamespace(text="")
tasks = []
widget = types.SimpleNamespace(ui=types.SimpleNamespace(statusLabel=status), setRunning=tasks.append)
widget.onExportFinished = lambda *args: module.LungLiverSegWidget.onExportFinished(widget, *args)
warned = SegmentationOutcome(cancelled=True, warnings=("odd spacing",))
module.LungLiverSegWidget.onFinished(widget, warned)
finished = status.text
widget._parameterNode = types.SimpleNamespace(
    inputVolume=None, outputSegmentation=None, datasetFolder="/data", caseId="c1"
)
started = []
widget.logic = types.SimpleNamespace(
    export_for_training=lambda *args, on_finished: started.append(on_finished)
)
module.LungLiverSegWidget.onExportButton(widget)
exporting = status.text
(deliver,) = started  # what the logic's poll() calls later
deliver(ExportOutcome(record=types.SimpleNamespace(case_id="c1", model=None)))
exported = status.text
deliver(ExportOutcome(error="case 'c1' already exists"))
report = {{"label": label.text, "finished": finished, "exporting": exporting, "exported": exported}}
print(json.dumps({{"shown": shown, "tasks": tasks, "failed": status.text, **report}}))
"""


@pytest.mark.slicer
@pytest.mark.parametrize("version", ["v5.10.0", "v5.12.3"])
def test_user_errors_are_one_line_bugs_keep_their_traceback_and_warnings_are_shown(version: str):
    python = SLICER_REFERENCE / version / "Base" / "Python" / "slicer"
    if not (python / "util.py").is_file():
        pytest.skip(f"Slicer's Python layer not found at {python}")
    code = DRIVE_WIDGET_MESSAGES.format(
        python=str(python), module_file=str(MODULE_FILE), harness=str(HARNESS_DIR)
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["shown"] == [
        ["cursor", "WaitCursor"],
        ["cursor restored"],  # before the dialog
        ["error", "Export failed: a segmentation is already running", False],
        ["error", "Segmentation could not start: Slicer could not import the labels", False],
        ["error", "Export failed.\n\na bug", True],
        ["re-raised"],
        ["warning", "the input is unlike the training data"],
        ["warning", "odd spacing"],
        ["cursor", "WaitCursor"],
        ["cursor restored"],
        ["error", "Export failed: case 'c1' already exists", False],
    ]
    assert report["tasks"] == [None, "export", None, None]  # onFinished; Export, and its two outcomes
    assert report["exporting"] == "Exporting c1..."
    assert report["label"] == "Done. Warning: the input is unlike the training data"
    assert report["finished"] == "Cancelled; nothing was changed. Warning: odd spacing"
    assert report["failed"] == "Export failed."
    assert report["exported"].startswith("Exported case c1 to /data. Warning: no model proposal is stored")
