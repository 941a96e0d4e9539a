"""Load LungLiverSeg.py the way Slicer does and drive it, under Slicer's own Python layer.

Run by ``Testing/slicer_module/conftest.py`` with the harness venv's Python 3.12 (only what Slicer
bundles, plus slicer-core for real MRML):

    python run_module.py SLICER_PYTHON_DIR MODULE_FILE TEMP_DIR [--torch-present]

``SLICER_PYTHON_DIR`` is ``<tag>/Base/Python/slicer`` of ../shared/slicer-reference: its
``util.py``, ``i18n.py``, ``ScriptedLoadableModule.py`` and ``parameterNodeWrapper/`` are imported
from there as ``slicer.*``. ``qt``/``ctk`` and the ``slicer.q*`` widgets are the stand-ins of
``pythonqt.py``. Each step is recorded (``ok`` or the traceback) and the report is printed as JSON
on the last line, so that one failing step does not hide the others.

``--torch-present``: a ``torch`` package that records every import of it is put on ``sys.path``,
as in a Slicer where torch is installed; the report lists who imported it (§14: opening the
module must not load torch into Slicer's process).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import time
import traceback
import types
import xml.etree.ElementTree as ElementTree
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import pythonqt  # noqa: E402  (after its folder is on sys.path)
from loading import load_like_slicer  # noqa: E402

NOT_BUNDLED = ("torch", "monai", "safetensors", "matplotlib")
SLICER_FILES = ("util", "i18n", "ScriptedLoadableModule", "parameterNodeWrapper")
POISONED_TORCH = """
import sys, traceback
sys.harness_torch_imports.append("".join(traceback.format_stack(limit=12)))
raise ImportError("torch is a recording stand-in in this harness")
"""

report: dict = {"steps": {}}


def step(name: str):
    """Run ``function`` as step ``name``; record ``ok`` or its traceback, return its result."""

    def run(function):
        try:
            result = function()
        except BaseException:
            report["steps"][name] = traceback.format_exc(limit=-8)
            return None
        report["steps"][name] = "ok"
        return result

    return run


def install_slicer_layer(slicer_python: Path, temp_dir: Path):
    """slicer-core's ``slicer`` (real MRML), then Slicer's own Python files from ``slicer_python``."""
    sys.modules["qt"] = pythonqt.qt_module()
    sys.modules["ctk"] = pythonqt.ctk_module()
    import slicer

    for name, cls in pythonqt.slicer_widget_classes().items():
        setattr(slicer, name, cls)
    slicer.__getattr__ = pythonqt.stand_in_module("slicer", {}).__getattr__
    slicer.app = pythonqt.SlicerApplication(str(temp_dir))
    for name in ("modules", "moduleNames"):  # what Slicer's own slicer/__init__.py creates
        setattr(slicer, name, sys.modules.setdefault(f"slicer.{name}", types.ModuleType(name)))
    slicer.mrmlScene = headless_scene(slicer)
    slicer.__path__.insert(0, str(slicer_python))
    sys.modules.pop("slicer.util", None)  # slicer-core's copy; Slicer's own replaces it
    for name in SLICER_FILES:
        module = importlib.import_module(f"slicer.{name}")
        setattr(slicer, name, module)
    report["slicer_files"] = {
        name: str(Path(sys.modules[f"slicer.{name}"].__file__)) for name in SLICER_FILES
    }
    return slicer


def headless_scene(slicer):
    """A real scene with the application and Segmentations logics that Slicer registers (what the
    panel touches; ``scene.create_headless_scene`` is not used, it would import the library first)."""
    scene = slicer.vtkMRMLScene()
    application_logic = slicer.vtkSlicerApplicationLogic()
    application_logic.SetMRMLScene(scene)
    logics = [application_logic, slicer.vtkSlicerSegmentationsModuleLogic()]
    logics[1].SetMRMLScene(scene)
    application_logic.SetModuleLogic("Segmentations", logics[1])
    scene.harness_logics = logics
    return scene


def ui_bindings(ui_file: Path) -> dict[str, tuple[str, str]]:
    """SlicerParameterName -> (widget name, widget class) as the .ui declares them."""
    bindings = {}
    for widget in ElementTree.parse(ui_file).getroot().iter("widget"):
        for prop in widget.findall("property[@name='SlicerParameterName']"):
            bindings[prop.findtext("string")] = (widget.get("name"), widget.get("class"))
    return bindings


def check_bindings(slicer, module, ui_file: Path) -> dict:
    """Slicer's own ``createGuiConnector`` for each binding, on a fresh widget of the .ui's class."""
    from slicer.parameterNodeWrapper import createGuiConnector

    ui = slicer.util.childWidgetVariables(slicer.util.loadUI(str(ui_file)))
    parameter_class = module.LungLiverSegParameterNode
    results = {}
    for parameter, (widget_name, widget_class) in ui_bindings(ui_file).items():
        widget = getattr(ui, widget_name)
        entry = {"widget": widget_name, "class": widget_class, "declared_range": widget_range(widget)}
        try:
            datatype = parameter_class.dataType(parameter)
            entry["type"] = repr(datatype)
            entry["connector"] = type(createGuiConnector(widget, datatype)).__name__
            entry["range"] = widget_range(widget)
        except Exception as error:
            entry["error"] = f"{type(error).__name__}: {error}"
        results[parameter] = entry
    report["fields"] = sorted(parameter_class.allParameters)
    return results


def widget_range(widget):
    return [widget.minimum, widget.maximum] if hasattr(widget, "minimum") else None


def open_panel(slicer, module, parent):
    """What Slicer does when the user opens the module: the widget in a qMRMLWidget, setup, enter."""
    panel = slicer.qMRMLWidget()
    panel.setLayout(sys.modules["qt"].QVBoxLayout())
    panel.setMRMLScene(slicer.mrmlScene)
    widget = module.LungLiverSegWidget(panel)
    slicer.modules.LungLiverSegWidget = widget
    step("widget_setup")(widget.setup)
    parent.isEntered = True
    step("widget_enter")(widget.enter)
    return widget


def describe_panel(widget) -> dict:
    """What the user sees after enter: buttons, selections, and the parameter node's values."""
    ui = widget.ui
    node = widget._parameterNode
    return {
        "connected": widget._parameterNodeGuiTag is not None,
        "buttons": {
            name: getattr(ui, name).enabled for name in ("segmentButton", "exportButton", "trainButton")
        },
        "epochs_range": [ui.trainingEpochsSpinBox.minimum, ui.trainingEpochsSpinBox.maximum],
        "parameters": {name: repr(node.getValue(name)) for name in sorted(node.allParameters)}
        if node is not None
        else None,
    }


def export_enabled(slicer, widget, temp_dir: Path) -> dict:
    """Export's button with volume, segmentation and case ID set, before and after a dataset folder
    is typed into its path line edit (through the GUI connector, as a user does)."""
    node = widget._parameterNode
    node.inputVolume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    node.outputSegmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    node.caseId = "case1"
    without_folder = widget.ui.exportButton.enabled
    widget.ui.datasetFolderSelector.currentPath = str(temp_dir / "dataset")
    return {"without_folder": without_folder, "with_folder": widget.ui.exportButton.enabled}


def export_click(slicer, widget, temp_dir: Path) -> dict:
    """Export clicked on a volume with voxels and a painted segment: the click returns while the
    case is written in a worker thread (the status says so, Export is off, the poll timer runs);
    the timer's polls then show the result and free the panel (review §15)."""
    import numpy as np
    from LungLiverSegLib.geometry import Image
    from LungLiverSegLib.labels import LabelInfo
    from LungLiverSegLib.slicer_module import mrml_bridge

    node, ui = widget._parameterNode, widget.ui
    labels = Image(np.zeros((4, 6, 8), np.uint8), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    labels.array[1:3, 2:4, 2:6] = 1
    node.inputVolume = mrml_bridge.volume_node_from_image(
        slicer.mrmlScene, labels.with_array(labels.array.astype(np.int16) * 100), "CT"
    )
    node.outputSegmentation = mrml_bridge.segmentation_from_labels(
        labels, {1: LabelInfo(1, "lungs")}, node.inputVolume, into="CT segmentation"
    )
    node.caseId = "clicked"
    ui.exportButton.click()
    started = {
        "status": ui.statusLabel.text,
        "export_enabled": ui.exportButton.enabled,
        "poll_timer_active": widget._pollTimer.active,
        "exporting": widget.logic.is_exporting,
    }
    while widget._pollTimer.active:  # Qt's event loop, as the timer's interval passes
        time.sleep(0.01)
        widget._pollTimer.timeout.emit()
    written = (Path(node.datasetFolder) / "labelsTr" / "clicked.nii.gz").is_file()
    finished = {"status": ui.statusLabel.text, "export_enabled": ui.exportButton.enabled, "written": written}
    return {"started": started, "finished": finished}


def hand_sync(widget) -> dict:
    """The combo boxes without a GUI connector: a user's choice reaches the parameter node, and a
    value set on the node (a scene loaded, a training finished) shows in the combo box."""
    ui, node = widget.ui, widget._parameterNode
    models = ui.modelSelector
    models.currentIndex = models.count - 1
    picked = node.modelName == models.itemData(models.count - 1)
    node.modelName = models.itemData(0)
    shown = models.currentIndex == 0
    ui.trainingConfigSelector.setEditText("/data/my-config.json")
    typed = node.trainingConfig == "/data/my-config.json"
    preset = ui.trainingConfigSelector.itemText(0)
    node.trainingConfig = preset
    return {
        "models": models.count,
        "model_picked": picked,
        "model_shown": shown,
        "config_typed": typed,
        "config_shown": ui.trainingConfigSelector.currentText == preset and bool(preset),
    }


def self_test_without_models(module, temp_dir: Path) -> bool:
    """The module's own test as "Reload and Test" runs it (``runTest()``, outside unittest's
    runner), with no model installed: it must end without an exception (a skip would show as a
    failure there) and without downloading anything."""
    empty = temp_dir / "no-models"
    empty.mkdir(exist_ok=True)
    os.environ["LUNGLIVSEG_BUNDLED_MODELS"] = os.environ["LUNGLIVSEG_MODELS"] = str(empty)
    module.LungLiverSegTest().runTest()
    return True


def tear_down(widget) -> dict:
    """Leave the module and tear it down, as Slicer does on a module reload: nothing may keep
    running (the poll timer would call the old widget's callbacks after a reload). The panel is put
    in the state it has while a child process works, which is when the timer runs."""
    widget.setRunning(sys.modules[type(widget).__module__].SEGMENT)
    widget.exit()
    widget.cleanup()
    return {"poll_timer_active": widget._pollTimer.active}


def main() -> None:
    slicer_python, module_file, temp_dir = (Path(arg) for arg in sys.argv[1:4])
    torch_present = "--torch-present" in sys.argv
    if torch_present:
        (temp_dir / "site" / "torch").mkdir(parents=True, exist_ok=True)
        (temp_dir / "site" / "torch" / "__init__.py").write_text(POISONED_TORCH)
        sys.path.insert(0, str(temp_dir / "site"))
        sys.harness_torch_imports = []
    report["python"] = ".".join(map(str, sys.version_info[:3]))
    report["importable"] = {name: importlib.util.find_spec(name) is not None for name in NOT_BUNDLED}
    slicer = step("slicer_layer")(lambda: install_slicer_layer(slicer_python, temp_dir))
    module = step("load")(lambda: load_like_slicer(module_file)) if slicer else None
    if module is not None:
        dependencies = sys.modules["LungLiverSegLib.slicer_module.dependencies"]
        report["missing"] = step("missing_dependencies")(dependencies.missing_dependencies)
        parent = pythonqt.ModuleParent(str(module_file))
        slicer.modules.lungliverseg = parent
        slicer.modules.LungLiverSegInstance = step("module")(lambda: module.LungLiverSeg(parent))
        report["title"] = parent.title
        logic = step("logic")(module.LungLiverSegLogic)
        if logic is not None:
            report["logic_parameter_node"] = type(logic.getParameterNode()).__name__
        ui_file = module_file.parent / "Resources" / "UI" / f"{module_file.stem}.ui"
        report["bindings"] = step("bindings")(lambda: check_bindings(slicer, module, ui_file))
        widget = open_panel(slicer, module, parent)
        report["panel"] = step("panel")(lambda: describe_panel(widget))
        if report["panel"] is not None:
            report["panel"]["export_enabled"] = step("export")(
                lambda: export_enabled(slicer, widget, temp_dir)
            )
            report["panel"]["export_click"] = step("export_click")(
                lambda: export_click(slicer, widget, temp_dir)
            )
            report["panel"]["hand_sync"] = step("hand_sync")(lambda: hand_sync(widget))
            report["teardown"] = step("teardown")(lambda: tear_down(widget))
        report["self_test_without_models"] = step("self_test")(
            lambda: self_test_without_models(module, temp_dir)
        )
    report["loaded_not_bundled"] = sorted(name for name in NOT_BUNDLED if name in sys.modules)
    report["torch_imports"] = getattr(sys, "harness_torch_imports", [])
    report["generated_stand_ins"] = sorted(set(pythonqt.generated_names))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
