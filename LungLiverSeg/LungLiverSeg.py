"""LungLiverSeg: lung and liver segmentation in 3D Slicer, with correction export for training.

A thin GUI over ``LungLiverSegLib.slicer_module`` (tested headless on slicer-core): the widget
binds the parameter node to the .ui, turns Segment (or Train) into Cancel while the child process
runs, and polls it from a QTimer so that Slicer stays responsive.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import qt
import slicer
import vtk
from LungLiverSegLib.cli.train_request import TrainRequest, preset_names
from LungLiverSegLib.errors import LungLiverSegError
from LungLiverSegLib.slicer_module import dependencies, presentation, training_job
from LungLiverSegLib.slicer_module.logic import SceneLogic, SegmentationOutcome
from LungLiverSegLib.slicer_module.process import ProgressUpdate
from LungLiverSegLib.slicer_module.training_job import TrainingOutcome
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
SEGMENT, TRAIN = "segment", "train"  # the task of the running child process
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
    trainingDatasetFolder: str
    trainingConfig: str
    trainingEpochs: int = 0
    trainingRunFolder: str
    fineTune: bool = False


class LungLiverSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Connects the .ui to the logic; all decisions live in the logic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._pollTimer = None
        self._task = None  # SEGMENT or TRAIN while a child process runs

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
        self.ui.trainButton.connect("clicked(bool)", self.onTrainButton)

        self.ui.deviceSelector.addItems(presentation.device_choices())
        if not dependencies.missing_dependencies():
            self.populateModels()
            self.populatePresets()
        self.setRunning(None)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Never leave a segmentation or training process behind when the module is torn down."""
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
        if not self._parameterNode.trainingConfig and self.ui.trainingConfigSelector.count:
            self._parameterNode.trainingConfig = self.ui.trainingConfigSelector.itemText(0)

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
        for index, entry in enumerate(presentation.available_models()):
            self.ui.modelSelector.addItem(entry.name)
            self.ui.modelSelector.setItemData(index, presentation.model_tooltip(entry), qt.Qt.ToolTipRole)

    def populatePresets(self) -> None:
        """The training presets; without the training package, Train stays off and says why."""
        presets = preset_names()
        self.ui.trainingConfigSelector.clear()
        self.ui.trainingConfigSelector.addItems(presets)
        self.ui.trainingStatusLabel.text = (
            "" if presets else "Training needs the LungLiverSegTraining package."
        )

    def updateButtons(self, caller=None, event=None) -> None:
        parameters = self._parameterNode
        running = self.logic.is_running
        task = self._task if running else None
        self.ui.segmentButton.enabled = task == SEGMENT or (
            not running and bool(parameters and parameters.inputVolume and parameters.modelName)
        )
        self.ui.trainButton.enabled = task == TRAIN or (
            not running and bool(parameters and self.trainingDataset() and parameters.trainingConfig)
        )
        self.ui.openSegmentEditorButton.enabled = bool(parameters and parameters.outputSegmentation)
        self.ui.exportButton.enabled = not running and bool(
            parameters
            and parameters.inputVolume
            and parameters.outputSegmentation
            and parameters.datasetFolder
            and parameters.caseId
        )

    def setRunning(self, task: str | None) -> None:
        """The task's button becomes Cancel; the inputs stay fixed while the process works on them."""
        self._task = task
        self.ui.segmentButton.text = "Cancel" if task == SEGMENT else "Segment"
        self.ui.trainButton.text = "Cancel" if task == TRAIN else "Train"
        for widget in (
            self.ui.inputVolumeSelector,
            self.ui.modelSelector,
            self.ui.deviceSelector,
            self.ui.outputSegmentationSelector,
            self.ui.replaceSegmentsCheckBox,
            self.ui.trainingDatasetSelector,
            self.ui.trainingConfigSelector,
            self.ui.trainingEpochsSpinBox,
            self.ui.trainingRunFolderSelector,
            self.ui.fineTuneCheckBox,
        ):
            widget.enabled = task is None
        self.ui.progressBar.visible = task == SEGMENT
        self.ui.trainingProgressBar.visible = task == TRAIN
        self.ui.progressBar.value = self.ui.trainingProgressBar.value = 0
        if task is None:
            self._pollTimer.stop()
        else:
            self._pollTimer.start()
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
                device=presentation.device_argument(parameters.device),
                output_segmentation_node=parameters.outputSegmentation,
                replace=parameters.replaceSegments,
                on_progress=self.onProgress,
                on_finished=self.onFinished,
            )
            self.ui.statusLabel.text = "Starting..."
            self.setRunning(SEGMENT)

    def onProgress(self, update: ProgressUpdate) -> None:
        self.ui.progressBar.value = round(100 * update.fraction)
        self.ui.statusLabel.text = presentation.describe_progress(update)

    def onFinished(self, outcome: SegmentationOutcome) -> None:
        self.setRunning(None)
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

    def trainingDataset(self) -> str:
        """The Train section's dataset folder, or by default the one the export writes to."""
        return self._parameterNode.trainingDatasetFolder or self._parameterNode.datasetFolder

    def onTrainButton(self) -> None:
        if self.logic.is_running:
            self.logic.cancel()
            self.ui.trainingStatusLabel.text = "Cancelling; the last finished epoch's checkpoint is kept..."
            return
        if not self.ensureDependencies():
            return
        parameters = self._parameterNode
        with showingErrors("Training could not start"):
            dataset = self.trainingDataset()
            runFolder = parameters.trainingRunFolder or str(
                training_job.default_run_folder(dataset, parameters.trainingConfig)
            )
            resume = training_job.holds_training_run(runFolder)
            question = (
                f"{runFolder} holds a training run. Continue it? (Choose another run folder to start afresh.)"
            )
            if resume and not slicer.util.confirmOkCancelDisplay(question, "Train"):
                return
            request = TrainRequest(
                dataset=Path(dataset),
                out=Path(runFolder),
                config=parameters.trainingConfig,
                init_from=training_job.model_folder(parameters.modelName) if parameters.fineTune else None,
                device=presentation.device_argument(parameters.device),
                epochs=parameters.trainingEpochs or None,
                resume=resume,
            )
            self.logic.train(
                request,
                on_progress=self.onTrainingProgress,
                on_finished=self.onTrainingFinished,
            )
            self.ui.trainingStatusLabel.text = "Starting (reading the dataset)..."
            self.setRunning(TRAIN)

    def onTrainingProgress(self, update: ProgressUpdate) -> None:
        self.ui.trainingProgressBar.value = round(100 * update.fraction)
        self.ui.trainingStatusLabel.text = presentation.describe_progress(update)

    def onTrainingFinished(self, outcome: TrainingOutcome) -> None:
        self.setRunning(None)
        if outcome.cancelled:
            self.ui.trainingStatusLabel.text = "Cancelled; Train continues from the last finished epoch."
        elif outcome.error is not None:
            self.ui.trainingStatusLabel.text = "Failed."
            slicer.util.errorDisplay(f"Training failed: {outcome.error}")
        else:
            self.populateModels()
            self._parameterNode.modelName = outcome.model_name
            self.ui.trainingStatusLabel.text = presentation.describe_training(outcome)

    def ensureDependencies(self) -> bool:
        """First use: offer to install what is missing (torch through the PyTorch extension)."""
        missing = dependencies.missing_dependencies()
        if not missing:
            return True
        question = (
            f"LungLiverSeg needs these Python packages: {', '.join(missing)}. "
            "Install them now? This can take several minutes."
        )
        if not slicer.util.confirmOkCancelDisplay(question, "Install dependencies"):
            return False
        plan = dependencies.install_plan(missing, dependencies.pinned_requirements())
        with showingErrors("Installing the dependencies failed"), slicer.util.WaitCursor():
            dependencies.install_dependencies(plan)
            self.populateModels()
            self.populatePresets()
            self.ui.deviceSelector.clear()
            self.ui.deviceSelector.addItems(presentation.device_choices())
            return True
        return False


@contextmanager
def showingErrors(action: str) -> Iterator[None]:
    """Show a user error as one line in a dialog instead of a traceback in the console."""
    try:
        yield
    except USER_ERRORS as error:
        slicer.util.errorDisplay(f"{action}: {error}")


class LungLiverSegLogic(SceneLogic, ScriptedLoadableModuleLogic):
    """The Qt-free ``SceneLogic`` on Slicer's scene, plus the module's parameter node.

    ``SceneLogic`` comes first: ``ScriptedLoadableModuleLogic.__init__`` calls ``super().__init__()``,
    which must reach ``object``, not ``SceneLogic`` (it needs the scene).

    Usable from the Python console and scripts without the widget:

        logic = LungLiverSegLogic()
        outcome = logic.process(volumeNode, "lungs-ct-3d", waitForCompletion=True)
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        SceneLogic.__init__(self, slicer.mrmlScene)

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

        import numpy as np
        import SampleData
        from LungLiverSegLib.dataset.export import DatasetExportError, read_dataset

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
            entry for entry in presentation.available_models() if entry.modality == "CT" and entry.dims == 3
        ]
        if not models:
            self.skipTest("no 3D CT model is installed")
        preferred = [entry for entry in models if entry.name == "lungs-ct-3d"]
        return (preferred or models)[0]
