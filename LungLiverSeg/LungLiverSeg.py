"""LungLiverSeg: lung and liver segmentation in 3D Slicer, with correction export for training.

A thin GUI over ``LungLiverSegLib.slicer_module`` (tested headless on slicer-core): the widget
binds the parameter node to the .ui, turns Segment (or Train, or Open worklist) into Cancel while
the child process runs, and polls it from a QTimer so that Slicer stays responsive. The Worklist
section works through a folder of scans case by case (``worklist_logic.WorklistSession``).
"""

# The Slicer-version check runs before the imports that an older Slicer's Python cannot load.
# ruff: noqa: E402
from __future__ import annotations

import sys
import unittest
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

MINIMUM_SLICER = "5.10"
# Slicer 5.8 and older run Python 3.9 (and lack MRML calls the module makes); 5.10 and later 3.12.
if sys.version_info < (3, 11):  # noqa: UP036  (the point is to run on an older Python and say so)
    PYTHON = sys.version.split()[0]
    raise ImportError(f"LungLiverSeg needs 3D Slicer {MINIMUM_SLICER} or later (this is Python {PYTHON})")

import qt
import slicer
import vtk
from LungLiverSegLib.cli.train_request import TrainRequest, preset_names
from LungLiverSegLib.errors import LungLiverSegError
from LungLiverSegLib.slicer_module import dependencies, presentation, training_job
from LungLiverSegLib.slicer_module.logic import ExportOutcome, SceneLogic, SegmentationOutcome
from LungLiverSegLib.slicer_module.process import ProcessResult, ProgressUpdate
from LungLiverSegLib.slicer_module.training_job import TrainingOutcome
from LungLiverSegLib.slicer_module.worklist_logic import LoadedCase, WorklistSession
from LungLiverSegLib.worklist.effort import WINDOW, efforts, running_mean
from LungLiverSegLib.worklist.store import STRATEGIES, UNCERTAINTY, Worklist
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLVectorVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

POLL_INTERVAL_MS = 100
SEGMENT, TRAIN, EXPORT = "segment", "train", "export"  # the running task: a child process, or an export
PROPOSE = "propose"  # the worklist's proposing child process
WORKLIST_COLUMNS = ("case", "state", "uncertainty", "changed mL", "Dice", "why")
EFFORT_LINES = 5
"""The effort label lists the last this many approvals (the whole curve is in effort.svg)."""
MODIFIED = vtk.vtkCommand.ModifiedEvent


class LungLiverSeg(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel and Help & Acknowledgement."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("LungLiverSeg")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["LungLiverSeg contributors"]
        self.parent.helpText = _("""
Segments the lungs and the liver in CT (and lungs in chest X-rays) with deep-learning models that
run in a background process: Slicer stays responsive, the progress bar shows the time left, and
Segment turns into Cancel. Correct the result in the Segment Editor, then export the approved
labels (with the model's original proposal kept beside them) as a training dataset.
See <a href="https://github.com/lunglivseg/LungLiverSeg">the project page</a>.
""")
        self.parent.acknowledgementText = _("""
Models are trained with LungLiverSeg. Training data and their licences: LCTSC lung CT from The
Cancer Imaging Archive (TCIA, CC BY 3.0; cite LCTSC and TCIA); Medical Segmentation Decathlon
liver CT (MSD Task03, CC BY-SA 4.0); Shenzhen chest X-ray set (U.S. National Library of Medicine,
attribution requested). Each model's licence and data are listed in its tooltip and model card.
""")


@parameterNodeWrapper
class LungLiverSegParameterNode:
    """Widget state saved with the scene. Each field's type is one that Slicer's GUI connector for
    its widget accepts (``parameterNodeWrapper/guiConnectors.py``): folders are ``Path`` (the only
    type ``ctkPathLineEdit`` binds), a bounded ``int`` keeps the spin box's range, and a combo box
    binds only a fixed ``Choice``. ``modelName`` and ``trainingConfig`` list what is installed (or
    a typed path), so their combo boxes have no ``SlicerParameterName`` and are synced by hand
    (``onModelSelected``, ``onTrainingConfigEdited``, ``updateGUIFromParameterNode``)."""

    # A vector volume is what Slicer makes of an RGB PNG/JPEG X-ray (segmented as gray). The node
    # combo box lists exactly these classes: the GUI connector sets its nodeTypes from this union.
    inputVolume: vtkMRMLScalarVolumeNode | vtkMRMLVectorVolumeNode | None
    modelName: str  # name@version, hand-synced with modelSelector
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    outputSegmentation: vtkMRMLSegmentationNode
    replaceSegments: bool = True
    datasetFolder: Path  # Path() == Path("."): not chosen (see chosenFolder)
    caseId: str
    trainingDatasetFolder: Path
    trainingConfig: str  # a preset name or a JSON config path, hand-synced with trainingConfigSelector
    trainingEpochs: Annotated[int, WithinRange(0, 100000)] = 0  # 0: the preset's own
    trainingRunFolder: Path
    fineTune: bool = False
    worklistImagesFolder: Path
    worklistDatasetFolder: Path
    worklistRanking: Annotated[str, Choice(list(STRATEGIES))] = UNCERTAINTY
    worklistRetrainEvery: Annotated[int, WithinRange(1, 1000)] = 4


class LungLiverSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Connects the .ui to the logic; all decisions live in the logic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._pollTimer = None
        self._task = None  # SEGMENT, TRAIN, PROPOSE or EXPORT while it runs
        self.worklistSession = None
        self._approving = False  # a worklist case's export, which may run beside any task

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LungLiverSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = LungLiverSegLogic()
        self.worklistSession = WorklistSession(self.logic, "slicer")
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(POLL_INTERVAL_MS)
        self._pollTimer.connect("timeout()", self.logic.poll)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.openSegmentEditorButton.connect("clicked(bool)", self.onOpenSegmentEditorButton)
        self.ui.exportButton.connect("clicked(bool)", self.onExportButton)
        self.ui.trainButton.connect("clicked(bool)", self.onTrainButton)
        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependenciesButton)
        self.ui.openWorklistButton.connect("clicked(bool)", self.onOpenWorklistButton)
        self.ui.nextCaseButton.connect("clicked(bool)", self.onNextCaseButton)
        self.ui.approveCaseButton.connect("clicked(bool)", self.onApproveCaseButton)
        self.ui.skipCaseButton.connect("clicked(bool)", self.onSkipCaseButton)
        self.ui.skipReasonLineEdit.connect("textChanged(QString)", self.updateButtons)
        self.ui.worklistTable.setColumnCount(len(WORKLIST_COLUMNS))
        self.ui.worklistTable.setHorizontalHeaderLabels(list(WORKLIST_COLUMNS))

        # the combo boxes of what is installed are synced by hand (see LungLiverSegParameterNode)
        self.ui.modelSelector.connect("currentIndexChanged(int)", self.onModelSelected)
        self.ui.trainingConfigSelector.connect("currentTextChanged(QString)", self.onTrainingConfigEdited)
        self.populateModels()  # the catalogue and the presets need no torch:
        self.populatePresets()  # Segment and Train offer the install when they are clicked
        self.updateDependencyStatus()
        self.setRunning(None)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Never leave a segmentation or training process behind when the module is torn down, nor
        a worklist case claimed by this (ending) Slicer: it goes back to the list."""
        if self.logic is not None:
            self.logic.cancel()
        if self.worklistSession is not None:
            self.worklistSession.release()
        if self._pollTimer is not None:
            self._pollTimer.stop()  # after a module reload it would call this old widget's callbacks
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, MODIFIED, self.updateGUIFromParameterNode)

    def onSceneStartClose(self, caller, event) -> None:
        self.logic.cancel_segmentation()  # its nodes are about to go; a training has none and runs on
        self.worklistSession.release()  # the case's nodes go too: it goes back to the list
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if not self._parameterNode.modelName and self.ui.modelSelector.count:
            self._parameterNode.modelName = self.ui.modelSelector.itemData(0)
        if not self._parameterNode.trainingConfig and self.ui.trainingConfigSelector.count:
            self._parameterNode.trainingConfig = self.ui.trainingConfigSelector.itemText(0)

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, MODIFIED, self.updateGUIFromParameterNode)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, MODIFIED, self.updateGUIFromParameterNode)
            self.updateGUIFromParameterNode()

    def updateGUIFromParameterNode(self, caller=None, event=None) -> None:
        """The hand-synced combo boxes show the parameter node's values; then the buttons follow."""
        parameters = self._parameterNode
        if parameters:
            self.selectModel(parameters.modelName)
            if self.ui.trainingConfigSelector.currentText != parameters.trainingConfig:
                self.ui.trainingConfigSelector.setCurrentText(parameters.trainingConfig)
        self.updateButtons()

    def onModelSelected(self, index: int) -> None:
        if self._parameterNode:
            self._parameterNode.modelName = self.selectedModel()

    def onTrainingConfigEdited(self, text: str) -> None:
        """A preset picked, or a JSON config path typed (the combo box is editable)."""
        if self._parameterNode:
            self._parameterNode.trainingConfig = text

    def populateModels(self) -> None:
        """One item per runnable model and version ("lungs-ct-3d 0.1.0 (yours)"), its ``name@version``
        key as item data (what runs), its description and origin in the tooltip."""
        selected = self.selectedModel()
        self.ui.modelSelector.clear()
        for index, choice in enumerate(presentation.model_choices()):
            self.ui.modelSelector.addItem(choice.text, choice.key)
            self.ui.modelSelector.setItemData(index, choice.tooltip, qt.Qt.ToolTipRole)
        self.selectModel(selected)

    def selectedModel(self) -> str:
        """The ``name@version`` of the model item shown ("" when there is none)."""
        index = self.ui.modelSelector.currentIndex
        return self.ui.modelSelector.itemData(index) if index >= 0 else ""

    def selectModel(self, key: str) -> None:
        """Show the item that runs ``key`` (``name@version``, or a bare name from an older scene);
        an unknown key leaves the selection."""
        combo = self.ui.modelSelector
        keys = [combo.itemData(index) for index in range(combo.count)]
        shown = presentation.shown_key(key, keys)
        if shown is not None:
            combo.currentIndex = keys.index(shown)

    def populatePresets(self) -> None:
        """The training presets; without the training package, Train stays off and says why."""
        presets = preset_names()
        self.ui.trainingConfigSelector.clear()
        self.ui.trainingConfigSelector.addItems(presets)
        self.ui.trainingStatusLabel.text = (
            "" if presets else _("Training needs the LungLiverSegTraining package.")
        )

    def updateButtons(self, caller=None, event=None) -> None:
        parameters = self._parameterNode
        running = self.logic.is_running or self.logic.is_exporting
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
            and chosenFolder(parameters.datasetFolder)
            and parameters.caseId
        )
        self.updateWorklistButtons(parameters, running, task)

    def updateWorklistButtons(self, parameters, running: bool, task: str | None) -> None:
        """Cases are worked on while the proposing child (or a training) runs: only an export
        (one at a time) holds them back. A case in hand is approved or skipped before another
        worklist is opened."""
        session = self.worklistSession
        isOpen = session is not None and session.worklist is not None
        inHand = isOpen and session.loaded is not None
        exporting = self.logic.is_exporting
        self.ui.openWorklistButton.enabled = task == PROPOSE or (
            not running
            and not inHand
            and bool(
                parameters
                and chosenFolder(parameters.worklistImagesFolder)
                and chosenFolder(parameters.worklistDatasetFolder)
                and parameters.modelName
            )
        )
        self.ui.nextCaseButton.enabled = isOpen and not inHand and not exporting
        self.ui.approveCaseButton.enabled = inHand and not exporting
        self.ui.skipCaseButton.enabled = (
            inHand and not exporting and bool(self.ui.skipReasonLineEdit.text.strip())
        )

    def setRunning(self, task: str | None) -> None:
        """The task's button becomes Cancel; the inputs stay fixed while the process works on them."""
        self._task = task
        self.ui.segmentButton.text = _("Cancel") if task == SEGMENT else _("Segment")
        self.ui.trainButton.text = _("Cancel") if task == TRAIN else _("Train")
        self.ui.openWorklistButton.text = _("Cancel") if task == PROPOSE else _("Open worklist")
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
            self.ui.worklistImagesSelector,
            self.ui.worklistDatasetSelector,
            self.ui.worklistRankingSelector,
            self.ui.worklistRetrainEverySpinBox,
        ):
            widget.enabled = task is None
        self.ui.progressBar.visible = task == SEGMENT
        self.ui.trainingProgressBar.visible = task == TRAIN
        self.ui.worklistProgressBar.visible = task == PROPOSE
        self.ui.progressBar.value = self.ui.trainingProgressBar.value = self.ui.worklistProgressBar.value = 0
        self.updatePollTimer()
        self.updateButtons()

    def updatePollTimer(self) -> None:
        """The timer runs while a task or a worklist approval waits for ``poll()``."""
        if self._task is None and not self._approving:
            self._pollTimer.stop()
        else:
            self._pollTimer.start()

    def onSegmentButton(self) -> None:
        if self.logic.is_running:
            self.logic.cancel()
            self.ui.statusLabel.text = _("Cancelling...")
            return
        if not self.ensureDependencies():
            return
        parameters = self._parameterNode
        with showingErrors(_("Segmentation could not start")):
            self.logic.process(
                parameters.inputVolume,
                parameters.modelName,
                device=parameters.device,
                output_segmentation_node=parameters.outputSegmentation,
                replace=parameters.replaceSegments,
                on_progress=self.onProgress,
                on_finished=self.onFinished,
            )
            self.ui.statusLabel.text = _("Starting...")
            self.setRunning(SEGMENT)

    def onProgress(self, update: ProgressUpdate) -> None:
        self.ui.progressBar.value = round(100 * update.fraction)
        self.ui.statusLabel.text = presentation.describe_progress(update)

    def onFinished(self, outcome: SegmentationOutcome) -> None:
        self.setRunning(None)
        if outcome.cancelled:
            self.ui.statusLabel.text = _("Cancelled; nothing was changed.")
        elif outcome.error is not None:
            self.ui.statusLabel.text = _("Failed.")
            slicer.util.errorDisplay(_("Segmentation failed: {error}").format(error=outcome.error))
        else:
            (segmentationNode,) = outcome.segmentation_nodes
            self._parameterNode.outputSegmentation = segmentationNode
            count = segmentationNode.GetSegmentation().GetNumberOfSegments()
            self.ui.statusLabel.text = _("Done: {count} segments in '{name}'.").format(
                count=count, name=segmentationNode.GetName()
            )
        showWarnings(outcome.warnings, self.ui.statusLabel)

    def onOpenSegmentEditorButton(self) -> None:
        parameters = self._parameterNode
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.SegmentEditorWidget.editor
        editor.setSegmentationNode(parameters.outputSegmentation)
        editor.setSourceVolumeNode(parameters.inputVolume)

    def onExportButton(self) -> None:
        """The scene is read now; the files and the correction metrics (seconds on a full CT) are
        written in the background, and ``onExportFinished`` shows the result."""
        parameters = self._parameterNode
        folder = parameters.datasetFolder
        with showingErrors(_("Export failed"), waitCursor=True):
            self.logic.export_for_training(
                parameters.inputVolume,
                parameters.outputSegmentation,
                folder,
                parameters.caseId,
                on_finished=lambda outcome: self.onExportFinished(outcome, folder),
            )
            self.ui.statusLabel.text = _("Exporting {case}...").format(case=parameters.caseId)
            self.setRunning(EXPORT)

    def onExportFinished(self, outcome: ExportOutcome, folder: Path) -> None:
        self.setRunning(None)
        if outcome.error is not None:
            self.ui.statusLabel.text = _("Export failed.")
            slicer.util.errorDisplay(_("Export failed: {error}").format(error=outcome.error))
            return
        record = outcome.record
        self.ui.statusLabel.text = _("Exported case {case} to {folder}.").format(
            case=record.case_id, folder=folder
        )
        if record.model is None:
            self.ui.statusLabel.text += " " + _(
                "Warning: no model proposal is stored for this segmentation, so the export has"
                " no predictions/ and the correction effort is not measured."
            )

    def trainingDataset(self) -> Path | None:
        """The Train section's dataset folder, or by default the one the export writes to."""
        parameters = self._parameterNode
        return chosenFolder(parameters.trainingDatasetFolder) or chosenFolder(parameters.datasetFolder)

    def onTrainButton(self) -> None:
        if self.logic.is_running:
            self.logic.cancel()
            self.ui.trainingStatusLabel.text = _(
                "Cancelling; the last finished epoch's checkpoint is kept..."
            )
            return
        if not self.ensureDependencies():
            return
        parameters = self._parameterNode
        with showingErrors(_("Training could not start")):
            dataset = self.trainingDataset()
            runFolder = chosenFolder(parameters.trainingRunFolder) or training_job.default_run_folder(
                dataset, parameters.trainingConfig
            )
            resume = training_job.holds_training_run(runFolder)
            question = _(
                "{folder} holds a training run. Continue it? (Choose another run folder to start afresh.)"
            ).format(folder=runFolder)
            if resume and not slicer.util.confirmOkCancelDisplay(question, _("Train")):
                return
            request = TrainRequest(
                dataset=Path(dataset),
                out=Path(runFolder),
                config=parameters.trainingConfig,
                init_from=training_job.model_folder(parameters.modelName) if parameters.fineTune else None,
                device=parameters.device,
                epochs=parameters.trainingEpochs or None,
                resume=resume,
            )
            self.logic.train(
                request,
                replace_installed=self.confirmReplacingModel,
                on_progress=self.onTrainingProgress,
                on_finished=self.onTrainingFinished,
            )
            self.ui.trainingStatusLabel.text = _("Starting (reading the dataset)...")
            self.setRunning(TRAIN)

    def confirmReplacingModel(self, installed) -> bool:
        """Asked when a run ends whose model is installed already (a second run of a preset)."""
        question = _(
            "Your model {name} {version} is installed already ({folder}). Replace it with the model"
            " just trained? Cancel keeps it; the new model stays in the run folder."
        ).format(name=installed.name, version=installed.version, folder=installed.folder)
        return slicer.util.confirmOkCancelDisplay(question, _("Train"))

    def onTrainingProgress(self, update: ProgressUpdate) -> None:
        self.ui.trainingProgressBar.value = round(100 * update.fraction)
        self.ui.trainingStatusLabel.text = presentation.describe_progress(update)

    def onTrainingFinished(self, outcome: TrainingOutcome) -> None:
        self.setRunning(None)
        if outcome.cancelled:
            self.ui.trainingStatusLabel.text = _("Cancelled; Train continues from the last finished epoch.")
        elif outcome.error is not None:
            self.ui.trainingStatusLabel.text = _("Failed.")
            slicer.util.errorDisplay(_("Training failed: {error}").format(error=outcome.error))
        else:
            self.populateModels()
            if not outcome.kept_installed:
                self._parameterNode.modelName = outcome.model_key
                self.reproposeWorklist(outcome.model_key)
            self.ui.trainingStatusLabel.text = presentation.describe_training(outcome)
        showWarnings(outcome.warnings, self.ui.trainingStatusLabel)

    # --- Worklist ---------------------------------------------------------------------------

    def onOpenWorklistButton(self) -> None:
        """Open (or start) the worklist and propose its waiting cases in the background; a model
        other than the one that proposed so far proposes the open cases again (as the CLI does)."""
        if self._task == PROPOSE and self.logic.is_running:
            self.logic.cancel()
            self.ui.worklistStatusLabel.text = _("Cancelling; the proposals made so far are kept...")
            return
        if not self.ensureDependencies():
            return
        parameters = self._parameterNode
        with showingErrors(_("The worklist could not be opened")):
            worklist = self.worklistSession.open(
                parameters.worklistImagesFolder,
                parameters.worklistDatasetFolder,
                parameters.modelName,
                ranking=parameters.worklistRanking,
                retrain_every=parameters.worklistRetrainEvery,
            )
            settings = worklist.settings()
            if settings.model != parameters.modelName:
                self.worklistSession.model_installed(parameters.modelName)
            # an existing worklist keeps the order and retrain count it was made with: show them
            parameters.worklistRanking = settings.strategy
            parameters.worklistRetrainEvery = settings.retrain_every
            self.refreshWorklist()
            self.proposeWorklist()

    def reproposeWorklist(self, modelKey: str) -> None:
        """A training installed ``modelKey``: the open worklist's waiting cases are proposed by it."""
        if self.worklistSession is None or self.worklistSession.worklist is None:
            return
        with showingErrors(_("The worklist could not be proposed again")):
            self.worklistSession.model_installed(modelKey)
            self.refreshWorklist()
            self.proposeWorklist()

    def proposeWorklist(self) -> None:
        self.worklistSession.propose(
            self._parameterNode.device,
            on_progress=self.onWorklistProgress,
            on_finished=self.onProposalsFinished,
            on_case_done=lambda _done: self.refreshWorklist(),  # that case is ready: the table shows it
        )
        self.ui.worklistStatusLabel.text = _("Proposing (loading the model)...")
        self.setRunning(PROPOSE)

    def onWorklistProgress(self, update: ProgressUpdate) -> None:
        """Progress of the case being proposed."""
        self.ui.worklistProgressBar.value = round(100 * update.fraction)
        self.ui.worklistStatusLabel.text = _("Proposing: {progress}").format(
            progress=presentation.describe_progress(update)
        )

    def onProposalsFinished(self, result: ProcessResult) -> None:
        self.setRunning(None)
        self.refreshWorklist()
        label = self.ui.worklistStatusLabel
        if result.cancelled:
            label.text = _("Cancelled; the proposals made so far are kept.")
        elif result.error is not None:
            label.text = _("Proposing failed.")
            slicer.util.errorDisplay(_("Proposing the worklist failed: {error}").format(error=result.error))
        else:
            waiting = sum(1 for row in self.worklistSession.rows() if row["state"] == "proposed")
            label.text = _("Proposals ready: {count} cases to work on.").format(count=waiting)
        showWarnings(result.warnings, label)

    def onNextCaseButton(self) -> None:
        self.ui.worklistStatusLabel.text = self.loadNextCase()

    def loadNextCase(self) -> str:
        """Load the next case and show it; returns the status line."""
        status = _("The next case could not be loaded.")
        with showingErrors(_("The next case could not be loaded"), waitCursor=True):
            loaded = self.worklistSession.next_case()
            if loaded is None:
                status = _("No proposed case is waiting.")
                if self._task == PROPOSE:
                    status += " " + _("The next one is being proposed.")
            else:
                self.showCase(loaded)
                status = _(
                    "Case {case}: correct the proposal (Open in Segment Editor), then Approve or Skip."
                )
                status = status.format(case=loaded.case.case_id)
        self.refreshWorklist()
        return status

    def showCase(self, loaded: LoadedCase) -> None:
        """The case's image and proposal in the input and segmentation selectors and the views."""
        parameters = self._parameterNode
        parameters.inputVolume = loaded.volume_node
        parameters.outputSegmentation = loaded.segmentation_node
        slicer.util.setSliceViewerLayers(background=loaded.volume_node, fit=True)

    def onApproveCaseButton(self) -> None:
        """The case's export runs in the background; ``onCaseApproved`` moves on to the next case."""
        caseId = self.worklistSession.loaded.case.case_id
        with showingErrors(_("Approving failed"), waitCursor=True):
            self.worklistSession.approve(on_finished=lambda outcome: self.onCaseApproved(outcome, caseId))
            self._approving = True
            self.ui.worklistStatusLabel.text = _("Approving {case}...").format(case=caseId)
        self.updatePollTimer()
        self.updateButtons()

    def onCaseApproved(self, outcome: ExportOutcome, caseId: str) -> None:
        self._approving = False
        self.updatePollTimer()
        if outcome.error is not None:
            self.ui.worklistStatusLabel.text = _("Approving failed.")
            self.refreshWorklist()
            slicer.util.errorDisplay(
                _("Approving {case} failed: {error}").format(case=caseId, error=outcome.error)
            )
            return
        approved = _("Approved {case}.").format(case=caseId)
        self.ui.worklistStatusLabel.text = approved + " " + self.loadNextCase()

    def onSkipCaseButton(self) -> None:
        reason = self.ui.skipReasonLineEdit.text.strip()
        caseId = self.worklistSession.loaded.case.case_id
        with showingErrors(_("Skipping failed")):
            self.worklistSession.skip(reason)
            self.ui.skipReasonLineEdit.text = ""
            skipped = _("Skipped {case} ({reason}).").format(case=caseId, reason=reason)
            self.ui.worklistStatusLabel.text = skipped + " " + self.loadNextCase()  # it refreshes
            return
        self.refreshWorklist()

    def refreshWorklist(self) -> None:
        """The ranked table, the effort numbers (and effort.svg beside the worklist) and the advice."""
        session = self.worklistSession
        if session is None or session.worklist is None:
            return
        rows = session.rows()
        table = self.ui.worklistTable
        table.setRowCount(len(rows))
        for rowIndex, row in enumerate(rows):
            for column, text in enumerate(worklistCells(row)):
                table.setItem(rowIndex, column, qt.QTableWidgetItem(text))
        table.resizeColumnsToContents()
        svg, advice = session.effort()
        self.ui.worklistEffortLabel.text = describeEffort(session.worklist, svg)
        self.ui.worklistAdviceLabel.text = advice
        self.updateButtons()

    def updateDependencyStatus(self) -> list[dependencies.Unmet]:
        """The status line and the Install dependencies button; returns what is missing or outdated."""
        unmet = dependencies.unmet_dependencies(dependencies.slicer_requirements())
        status = dependencies.dependency_status(unmet)
        self.ui.dependencyStatusLabel.text = status.text
        self.ui.dependencyStatusLabel.visible = bool(status.text)
        self.ui.installDependenciesButton.visible = status.can_install
        return unmet

    def onInstallDependenciesButton(self) -> None:
        self.installDependencies(self.updateDependencyStatus())

    def ensureDependencies(self) -> bool:
        """Segment and Train first offer to install what is missing or outdated."""
        unmet = self.updateDependencyStatus()
        if not unmet:
            return True
        question = _(
            "LungLiverSeg needs these Python packages: {packages}. Install them now? "
            "This takes a few minutes and, for torch, downloads up to a few GB."
        ).format(packages=dependencies.describe(unmet))
        if not slicer.util.confirmOkCancelDisplay(question, _("Install dependencies")):
            return False
        return self.installDependencies(unmet)

    def installDependencies(self, unmet: list[dependencies.Unmet]) -> bool:
        """torch through the PyTorch extension, the rest through pip; a failure shows a dialog."""
        installed = False
        with showingErrors(_("Installing the dependencies failed"), waitCursor=True):
            plan = dependencies.install_plan(unmet)
            dependencies.install_dependencies(plan, dependencies.slicer_installers())
            installed = True
        self.updateDependencyStatus()
        return installed


def worklistCells(row: dict) -> list[str]:
    """The table's texts of one ``WorklistSession.rows()`` row (blank where not measured yet)."""

    def number(value, digits: int) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    return [
        row["case"],
        row["state"],
        number(row["unsure"], 3),
        number(row["changed_ml"], 1),
        number(row["dice"], 3),
        row["why"],
    ]


def describeEffort(worklist: Worklist, svg: str) -> str:
    """The correction effort of the last approvals, with the running mean the curve draws, and a
    link to the curve itself (written beside the worklist: PythonQt's QSvgWidget is not among the
    names Slicer declares, so the panel shows the numbers)."""
    points = efforts(worklist.cases())
    if not points or not svg:
        return _("No approved case with a measured correction yet.")
    curve = worklist.folder / "effort.svg"
    try:
        curve.write_text(svg, encoding="utf-8")
    except OSError:  # a read-only worklist folder: the numbers are still shown
        curve = None
    means = running_mean(points)
    lines = [
        _(
            "{number}. {case}: {changed:.1f} mL changed, mean Dice {dice:.3f} (mean of the last {window}: "
            "{mean_changed:.1f} mL, Dice {mean_dice:.3f})"
        ).format(
            number=number,
            case=point.case_id,
            changed=point.changed_ml,
            dice=point.dice,
            window=WINDOW,
            mean_changed=meanChanged,
            mean_dice=meanDice,
        )
        for point, (number, meanChanged, meanDice) in list(zip(points, means, strict=True))[-EFFORT_LINES:]
    ]
    if curve is not None:
        lines.append('<a href="{url}">{text}</a>'.format(url=curve.as_uri(), text=_("Effort curve (SVG)")))
    return "<br>".join(lines)


def chosenFolder(path: Path) -> Path | None:
    """The folder a user chose, or None: a ``Path`` field's default (and an emptied path line
    edit) is ``Path(".")``, which is truthy, and must not mean Slicer's working directory."""
    return path if str(path) not in ("", ".") else None


@contextmanager
def showingErrors(action: str, waitCursor: bool = False) -> Iterator[None]:
    """A user error (``LungLiverSegError``: bad input, unknown model, refused export) is one line
    in a dialog. Anything else is a bug: Slicer's ``tryWithErrorDisplay`` shows it with its
    traceback under "Details" and re-raises it (the console has it too)."""
    userError = None
    with slicer.util.tryWithErrorDisplay(f"{action}.", waitCursor=waitCursor):
        try:
            yield
        except LungLiverSegError as error:
            userError = error  # shown below, once the wait cursor is gone
    if userError is not None:
        slicer.util.errorDisplay(f"{action}: {userError}")


def showWarnings(warnings: tuple[str, ...], statusLabel) -> None:
    """The child's warnings (e.g. an input unlike the model's training data): after the status
    line, and in a dialog, as the result may be wrong."""
    if warnings:
        statusLabel.text += " " + _("Warning: {warnings}").format(warnings=" ".join(warnings))
        slicer.util.warningDisplay("\n".join(warnings), windowTitle="LungLiverSeg")


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
        """Slicer's "Reload and Test" calls this outside unittest's runner, where a skip would show
        as a failure: a missing model is said, not raised."""
        self.setUp()
        try:
            self.test_segment_edit_export()
        except unittest.SkipTest as reason:
            self.delayDisplay(_("Test skipped: {reason}").format(reason=reason))

    def test_segment_edit_export(self) -> None:
        import shutil

        import numpy as np
        from LungLiverSegLib.dataset.export import DatasetExportError, read_dataset
        from LungLiverSegLib.imageio import read_image
        from LungLiverSegLib.slicer_module import mrml_bridge

        model = self._ctModel()  # before the download: nothing to fetch when the test cannot run
        import SampleData

        self.delayDisplay("Loading CTChest")
        volumeNode = SampleData.downloadSample("CTChest")
        logic = LungLiverSegLogic()

        self.delayDisplay(f"Segmenting with {presentation.model_key(model)}")
        outcome = logic.process(volumeNode, presentation.model_key(model), waitForCompletion=True)
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
        record = logic.export_for_training(
            volumeNode, segmentationNode, dataset, "ctchest", waitForCompletion=True
        )
        for relative in ("dataset.json", "imagesTr/ctchest_0000.nii.gz", "labelsTr/ctchest.nii.gz"):
            self.assertTrue((dataset / relative).is_file(), relative)
        self.assertTrue((dataset / "predictions" / "ctchest.nii.gz").is_file())
        self.assertLess(record.correction[names[0]]["dice"], 1.0)
        info = read_dataset(dataset)
        self.assertEqual([case.case_id for case in info.cases], ["ctchest"])
        self.delayDisplay("Reading the dataset back: the corrected labels, on the CT's grid")
        volume = mrml_bridge.image_from_volume_node(volumeNode)
        exported = read_image(dataset / "labelsTr" / "ctchest.nii.gz")
        edited, _label_map = mrml_bridge.labels_from_segmentation(
            segmentationNode, volumeNode, info.label_map
        )
        np.testing.assert_array_equal(exported.array, edited.array)
        np.testing.assert_allclose(exported.spacing, volume.spacing, atol=1e-5)
        np.testing.assert_allclose(exported.origin, volume.origin, atol=1e-4)
        np.testing.assert_allclose(exported.direction, volume.direction, atol=1e-6)
        with self.assertRaises(DatasetExportError):
            logic.export_for_training(
                volumeNode, segmentationNode, dataset, "ctchest", waitForCompletion=True
            )
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
