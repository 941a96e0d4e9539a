"""LungLiverSeg: lung and liver segmentation in 3D Slicer, with correction export for training.

A thin GUI over ``LungLiverSegLib.slicer_logic`` (tested headless on slicer-core): the widget
binds the parameter node to the .ui, turns Segment into Cancel while the child process runs,
and polls it from a QTimer so that Slicer stays responsive.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import qt
import slicer
import vtk
from LungLiverSegLib import slicer_logic
from LungLiverSegLib.errors import LungLiverSegError
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

POLL_INTERVAL_MS = 100
# What a user can fix (bad input, unknown model, full disk, refused export): one line, no traceback.
USER_ERRORS = (LungLiverSegError, RuntimeError, OSError, ValueError)


class LungLiverSeg(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel and Help & Acknowledgement."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "LungLiverSeg"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["LungLiverSeg contributors"]
        self.parent.helpText = """
Segments the lungs and the liver in CT (and lungs in chest X-rays) with deep-learning models that
run in a background process: Slicer stays responsive, the progress bar shows the time left, and
Segment turns into Cancel. Correct the result in the Segment Editor, then export the approved
labels (with the model's original proposal kept beside them) as a training dataset.
See <a href="https://github.com/lunglivseg/LungLiverSeg">the project page</a>.
"""
        self.parent.acknowledgementText = """
Models are trained with LungLiverSeg. Training data and their licences: LCTSC lung CT from The
Cancer Imaging Archive (TCIA, CC BY 3.0; cite LCTSC and TCIA); Medical Segmentation Decathlon
liver CT (MSD Task03, CC BY-SA 4.0); Shenzhen chest X-ray set (U.S. National Library of Medicine,
attribution requested). Each model's licence and data are listed in its tooltip and model card.
"""


@parameterNodeWrapper
class LungLiverSegParameterNode:
    """Widget state saved with the scene; every field is bound to a .ui widget by name."""

    inputVolume: vtkMRMLScalarVolumeNode
    modelName: str
    device: str = "auto"
    outputSegmentation: vtkMRMLSegmentationNode
    replaceSegments: bool = True
    datasetFolder: str
    caseId: str


class LungLiverSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Connects the .ui to the logic; all decisions live in the logic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._pollTimer = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LungLiverSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = LungLiverSegLogic()
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(POLL_INTERVAL_MS)
        self._pollTimer.connect("timeout()", self.logic.poll)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.openSegmentEditorButton.connect("clicked(bool)", self.onOpenSegmentEditorButton)
        self.ui.exportButton.connect("clicked(bool)", self.onExportButton)

        self.ui.deviceSelector.addItems(slicer_logic.device_choices())
        if not slicer_logic.missing_dependencies():
            self.populateModels()
        self.setRunning(False)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Never leave a segmentation process behind when the module is torn down."""
        if self.logic is not None:
            self.logic.cancel()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        self.logic.cancel()  # its nodes are about to go
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if not self._parameterNode.modelName and self.ui.modelSelector.count:
            self._parameterNode.modelName = self.ui.modelSelector.itemText(0)

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
            self.updateButtons()

    def populateModels(self) -> None:
        """One entry per runnable model, its description in the tooltip."""
        self.ui.modelSelector.clear()
        for index, entry in enumerate(slicer_logic.available_models()):
            self.ui.modelSelector.addItem(entry.name)
            self.ui.modelSelector.setItemData(index, slicer_logic.model_tooltip(entry), qt.Qt.ToolTipRole)

    def updateButtons(self, caller=None, event=None) -> None:
        parameters = self._parameterNode
        running = self.logic.is_running
        self.ui.segmentButton.enabled = running or bool(
            parameters and parameters.inputVolume and parameters.modelName
        )
        self.ui.openSegmentEditorButton.enabled = bool(parameters and parameters.outputSegmentation)
        self.ui.exportButton.enabled = not running and bool(
            parameters
            and parameters.inputVolume
            and parameters.outputSegmentation
            and parameters.datasetFolder
            and parameters.caseId
        )

    def setRunning(self, running: bool) -> None:
        """Segment becomes Cancel; the inputs stay fixed while the process works on them."""
        self.ui.segmentButton.text = "Cancel" if running else "Segment"
        for widget in (
            self.ui.inputVolumeSelector,
            self.ui.modelSelector,
            self.ui.deviceSelector,
            self.ui.outputSegmentationSelector,
            self.ui.replaceSegmentsCheckBox,
        ):
            widget.enabled = not running
        self.ui.progressBar.visible = running
        if running:
            self.ui.progressBar.value = 0
            self._pollTimer.start()
        else:
            self._pollTimer.stop()
        self.updateButtons()

    def onSegmentButton(self) -> None:
        if self.logic.is_running:
            self.logic.cancel()
            self.ui.statusLabel.text = "Cancelling..."
            return
        if not self.ensureDependencies():
            return
        parameters = self._parameterNode
        with showingErrors("Segmentation could not start"):
            self.logic.process(
                parameters.inputVolume,
                parameters.modelName,
                device=slicer_logic.device_argument(parameters.device),
                output_segmentation_node=parameters.outputSegmentation,
                replace=parameters.replaceSegments,
                on_progress=self.onProgress,
                on_finished=self.onFinished,
            )
            self.ui.statusLabel.text = "Starting..."
            self.setRunning(True)

    def onProgress(self, update: slicer_logic.ProgressUpdate) -> None:
        self.ui.progressBar.value = round(100 * update.fraction)
        self.ui.statusLabel.text = slicer_logic.describe_progress(update)

    def onFinished(self, outcome: slicer_logic.SegmentationOutcome) -> None:
        self.setRunning(False)
        if outcome.cancelled:
            self.ui.statusLabel.text = "Cancelled; nothing was changed."
        elif outcome.error is not None:
            self.ui.statusLabel.text = "Failed."
            slicer.util.errorDisplay(f"Segmentation failed: {outcome.error}")
        else:
            (segmentationNode,) = outcome.segmentation_nodes
            self._parameterNode.outputSegmentation = segmentationNode
            count = segmentationNode.GetSegmentation().GetNumberOfSegments()
            self.ui.statusLabel.text = f"Done: {count} segments in '{segmentationNode.GetName()}'."

    def onOpenSegmentEditorButton(self) -> None:
        parameters = self._parameterNode
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.SegmentEditorWidget.editor
        editor.setSegmentationNode(parameters.outputSegmentation)
        editor.setSourceVolumeNode(parameters.inputVolume)

    def onExportButton(self) -> None:
        parameters = self._parameterNode
        with showingErrors("Export failed"), slicer.util.WaitCursor():
            record = self.logic.export_for_training(
                parameters.inputVolume,
                parameters.outputSegmentation,
                parameters.datasetFolder,
                parameters.caseId,
            )
            self.ui.statusLabel.text = f"Exported case {record.case_id} to {parameters.datasetFolder}."

    def ensureDependencies(self) -> bool:
        """First use: offer to install what is missing (torch through the PyTorch extension)."""
        missing = slicer_logic.missing_dependencies()
        if not missing:
            return True
        question = (
            f"LungLiverSeg needs these Python packages: {', '.join(missing)}. "
            "Install them now? This can take several minutes."
        )
        if not slicer.util.confirmOkCancelDisplay(question, "Install dependencies"):
            return False
        plan = slicer_logic.install_plan(missing, slicer_logic.pinned_requirements())
        with showingErrors("Installing the dependencies failed"), slicer.util.WaitCursor():
            slicer_logic.install_dependencies(plan)
            self.populateModels()
            self.ui.deviceSelector.clear()
            self.ui.deviceSelector.addItems(slicer_logic.device_choices())
            return True
        return False


@contextmanager
def showingErrors(action: str) -> Iterator[None]:
    """Show a user error as one line in a dialog instead of a traceback in the console."""
    try:
        yield
    except USER_ERRORS as error:
        slicer.util.errorDisplay(f"{action}: {error}")


class LungLiverSegLogic(ScriptedLoadableModuleLogic, slicer_logic.LungLiverSegLogic):
    """The Qt-free logic on Slicer's scene, plus the module's parameter node.

    Usable from the Python console and scripts without the widget:

        logic = LungLiverSegLogic()
        outcome = logic.process(volumeNode, "lungs-ct-3d", waitForCompletion=True)
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        slicer_logic.LungLiverSegLogic.__init__(self, slicer.mrmlScene)

    def getParameterNode(self):
        return LungLiverSegParameterNode(super().getParameterNode())


class LungLiverSegTest(ScriptedLoadableModuleTest):
    """The whole story in a real Slicer: load CTChest, segment, edit, export, check the files."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_segment_edit_export()

    def test_segment_edit_export(self) -> None:
        import shutil
        from pathlib import Path

        import numpy as np
        import SampleData
        from LungLiverSegLib.dataset_export import DatasetExportError, read_dataset

        self.delayDisplay("Loading CTChest")
        volumeNode = SampleData.downloadSample("CTChest")
        model = self._ctModel()
        logic = LungLiverSegLogic()

        self.delayDisplay(f"Segmenting with {model.name}")
        outcome = logic.process(volumeNode, model.name, waitForCompletion=True)
        self.assertTrue(outcome.succeeded, outcome.error)
        (segmentationNode,) = outcome.segmentation_nodes
        self.assertEqual(segmentationNode.GetName(), "CTChest segmentation")
        segmentation = segmentationNode.GetSegmentation()
        names = [
            segmentation.GetNthSegment(index).GetName() for index in range(segmentation.GetNumberOfSegments())
        ]
        self.assertTrue(names and set(names) <= set(model.segments), names)

        self.delayDisplay("Erasing the upper half of the first segment, as an annotator would")
        segmentId = segmentation.GetSegmentIdBySegmentName(names[0])
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volumeNode)
        occupiedSlices = np.flatnonzero(mask.any(axis=(1, 2)))
        mask[occupiedSlices[: len(occupiedSlices) // 2]] = 0
        slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentationNode, segmentId, volumeNode)

        self.delayDisplay("Exporting the corrected labels")
        dataset = Path(slicer.app.temporaryPath) / "LungLiverSegTest" / "dataset"
        shutil.rmtree(dataset, ignore_errors=True)
        record = logic.export_for_training(volumeNode, segmentationNode, dataset, "ctchest")
        for relative in ("dataset.json", "imagesTr/ctchest_0000.nii.gz", "labelsTr/ctchest.nii.gz"):
            self.assertTrue((dataset / relative).is_file(), relative)
        self.assertTrue((dataset / "predictions" / "ctchest.nii.gz").is_file())
        self.assertLess(record.correction[names[0]]["dice"], 1.0)
        self.assertEqual([case.case_id for case in read_dataset(dataset).cases], ["ctchest"])
        with self.assertRaises(DatasetExportError):
            logic.export_for_training(volumeNode, segmentationNode, dataset, "ctchest")
        self.delayDisplay("Test passed")

    def _ctModel(self):
        """The lungs model if installed, else any 3D CT model; skip when there is none."""
        models = [
            entry for entry in slicer_logic.available_models() if entry.modality == "CT" and entry.dims == 3
        ]
        if not models:
            self.skipTest("no 3D CT model is installed")
        preferred = [entry for entry in models if entry.name == "lungs-ct-3d"]
        return (preferred or models)[0]
