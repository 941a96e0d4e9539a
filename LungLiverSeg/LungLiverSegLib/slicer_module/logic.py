"""What the Slicer module does on a scene, without Qt: segment volume nodes through the CLI, keep
the model's proposal, export corrections for training, and start training runs.

The scene and the process runner are passed in, so the same ``SceneLogic`` runs in Slicer (the
module's ``LungLiverSegLogic`` adds only the parameter node) and on a headless ``slicer-core``
scene in tests. The model's proposals live in the scene (``mrml_bridge.store_proposal``), not in
this object, so that they are saved and reloaded with it and Export still finds them.
Segmentation and training always run in a child process (``process.py``), one at a time on the
same runner. For segmentation this class writes its input (a batch through
``staging.py``), starts it, and on success turns its label files into segmentation nodes; a
failed or cancelled run leaves the scene as it was and removes its temporary files. Training
runs are ``training_job.py``'s. An export reads the scene on the caller's thread and writes the
case (files and correction metrics: seconds on a full CT) in a worker thread, so the GUI stays
responsive; its outcome, like a run's, is delivered by ``poll()`` on the caller's thread.

Nothing here imports torch (models run in the child; the catalogue reads bundles without it), so
the module loads in a Slicer where the dependencies are still missing and can offer to install them.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from LungLiverSegLib.bundle.catalogue import find_model
from LungLiverSegLib.cli.train_request import TrainRequest
from LungLiverSegLib.dataset.export import CaseRecord, ModelId, export_case
from LungLiverSegLib.errors import InputImageError, LungLiverSegError
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.imageio import SEGMENTATION_SUFFIX, read_image, write_image
from LungLiverSegLib.labels import LabelMap
from LungLiverSegLib.slicer_module import mrml_bridge
from LungLiverSegLib.slicer_module.process import (
    JobRunningError,
    Outcome,
    ProcessEvent,
    ProcessResult,
    ProcessRunner,
    ProgressUpdate,
    ProgressUpdateCallback,
    SegmentRequest,
    ThreadedProcessRunner,
    child_environment,
    segmentation_command,
    slicer_python,
    training_command,
)
from LungLiverSegLib.slicer_module.staging import SegmentationCase, stage_batch
from LungLiverSegLib.slicer_module.training_job import (
    ReplaceDecision,
    TrainingFinishedCallback,
    TrainingJob,
    TrainingOutcome,
)

if TYPE_CHECKING:
    import slicer

SEGMENTATION_NODE_SUFFIX = " segmentation"
"""A new segmentation node is named "<volume node name> segmentation"."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Proposal:
    """The labels a model produced for a segmentation node, before anyone corrected them."""

    labels: Image
    model: ModelId
    volume_node_id: str


@dataclass(frozen=True, kw_only=True)
class SegmentationOutcome(Outcome):
    """How a run ended: the segmentation nodes it filled (one per input volume node) and files,
    with the child's warnings (e.g. an input unlike the model's training data)."""

    segmentation_nodes: tuple[slicer.vtkMRMLSegmentationNode, ...] = ()
    output_files: tuple[Path, ...] = ()


SegmentationFinishedCallback = Callable[[SegmentationOutcome], None]


@dataclass(frozen=True, kw_only=True)
class ExportOutcome(Outcome):
    """How an export ended: the ``record`` of the case written, or the one-line ``error`` (e.g.
    the case exists already) and no record."""

    record: CaseRecord | None = None


ExportFinishedCallback = Callable[[ExportOutcome], None]


class _ExportJob:
    """One ``export_case`` in a worker thread that touches no MRML (its inputs were read on the
    caller's thread); numpy, scipy and SimpleITK release the GIL for most of its work. Not a
    daemon: an interpreter that exits meanwhile finishes the case rather than leave half of it."""

    def __init__(self, export: Callable[[], CaseRecord], on_finished: ExportFinishedCallback | None) -> None:
        self.on_finished = on_finished
        self.record: CaseRecord | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        threading.Thread(target=self._run, args=(export,), name="LungLiverSeg export").start()

    def _run(self, export: Callable[[], CaseRecord]) -> None:
        try:
            self.record = export()
        except BaseException as error:  # delivered by poll(), never lost with the thread
            self.error = error
        finally:
            self.done.set()

    def outcome(self) -> ExportOutcome:
        """A user error (``LungLiverSegError``) as its one line; a bug also goes to the log with
        its traceback."""
        if self.error is None:
            return ExportOutcome(record=self.record)
        if isinstance(self.error, LungLiverSegError):
            return ExportOutcome(error=str(self.error))
        logger.error("the export failed", exc_info=self.error)
        return ExportOutcome(error=f"{type(self.error).__name__}: {self.error}")


@dataclass
class _SegmentationJob:
    model: ModelId
    label_map: LabelMap
    workdir: Path
    cases: list[SegmentationCase]
    replace: bool
    on_progress: ProgressUpdateCallback | None
    on_finished: SegmentationFinishedCallback | None
    outcome: SegmentationOutcome | None = field(default=None)

    def report(self, event: ProcessEvent) -> None:
        if self.on_progress is not None and isinstance(event, ProgressUpdate):
            self.on_progress(event)


class SceneLogic:
    """Segmentation, proposals, export and training on one MRML scene, with one run at a time."""

    def __init__(
        self,
        scene: slicer.vtkMRMLScene | None,
        runner: ProcessRunner | None = None,
        python: str | None = None,
    ) -> None:
        self.scene = scene
        self.runner = runner if runner is not None else ThreadedProcessRunner()
        self.python = python or slicer_python()
        self._segmentation: _SegmentationJob | None = None  # the last one started
        self._export: _ExportJob | None = None  # until its outcome is delivered

    @property
    def is_running(self) -> bool:
        """Whether a segmentation or training child process runs (an export is ``is_exporting``)."""
        return self.runner.is_running

    @property
    def is_exporting(self) -> bool:
        """Whether an export was started and its outcome not yet delivered by ``poll()``."""
        return self._export is not None

    def poll(self) -> bool:
        """Deliver progress and results on this thread (call from a QTimer); True while a child
        process runs or an export is not yet delivered."""
        running = self.runner.poll()
        self._deliver_export()
        return running or self.is_exporting

    def cancel(self) -> None:
        """Stop the running segmentation or training; its ``on_finished`` reports ``cancelled``."""
        self.runner.cancel()

    def cancel_segmentation(self) -> None:
        """Stop a running segmentation, not a training: for a scene about to close, whose nodes a
        segmentation reads and fills (a training uses no scene node and runs on)."""
        if self._segmentation is not None and self._segmentation.outcome is None:
            self.cancel()

    def process(  # noqa: PLR0913  (a Slicer module logic's method: options, waitForCompletion, callbacks)
        self,
        input_volume_node: slicer.vtkMRMLScalarVolumeNode,
        model_name: str,
        device: str = "auto",
        output_segmentation_node: slicer.vtkMRMLSegmentationNode | None = None,
        replace: bool = True,
        waitForCompletion: bool = False,  # noqa: N803  (Slicer's spelling, as in its module logics)
        on_progress: ProgressUpdateCallback | None = None,
        on_finished: SegmentationFinishedCallback | None = None,
    ) -> SegmentationOutcome | None:
        """Segment one volume into ``output_segmentation_node`` or a new "<volume> segmentation".

        ``replace`` False keeps the output node's segments that the model does not produce.
        Returns the outcome with ``waitForCompletion``; otherwise None at once, and the outcome
        goes to ``on_finished`` from a later ``poll()``.
        """
        job = self._new_job(model_name, replace, on_progress, on_finished)
        input_path = job.workdir / "input.nrrd"
        case = SegmentationCase(job.workdir / "labels.nrrd", input_volume_node, output_segmentation_node)
        job.cases.append(case)
        with _removed_on_error(job.workdir):
            write_image(input_path, mrml_bridge.image_from_volume_node(input_volume_node), compress=False)
        request = SegmentRequest(input_path, case.label_path, model_name, device)
        command = segmentation_command(self.python, request)
        return self._run(job, command, waitForCompletion)

    def process_batch(  # noqa: PLR0913  (as ``process``, for many inputs)
        self,
        inputs: Sequence[slicer.vtkMRMLScalarVolumeNode | str | Path],
        model_name: str,
        device: str = "auto",
        output_folder: str | Path | None = None,
        replace: bool = True,
        overwrite: bool = False,
        waitForCompletion: bool = False,  # noqa: N803
        on_progress: ProgressUpdateCallback | None = None,
        on_finished: SegmentationFinishedCallback | None = None,
    ) -> SegmentationOutcome | None:
        """Segment volume nodes and image files in ONE child process, so the model loads once.

        Every volume node gets its own "<volume> segmentation" node; files (and, when
        ``output_folder`` is given, volume nodes too) get ``<name>.seg.nrrd`` in ``output_folder``.
        """
        has_files = any(isinstance(item, str | Path) for item in inputs)
        if has_files and output_folder is None:
            raise InputImageError("image files in a batch need an output folder for their segmentations")
        job = self._new_job(model_name, replace, on_progress, on_finished)
        input_folder = job.workdir / "inputs"
        outputs = Path(output_folder) if output_folder is not None else job.workdir / "outputs"
        with _removed_on_error(job.workdir):
            job.cases = stage_batch(inputs, input_folder, outputs)
        request = SegmentRequest(
            input_folder, outputs, model_name, device, output_format=SEGMENTATION_SUFFIX, overwrite=overwrite
        )
        command = segmentation_command(self.python, request)
        return self._run(job, command, waitForCompletion)

    def train(
        self,
        request: TrainRequest,
        *,
        replace_installed: bool | ReplaceDecision = False,
        waitForCompletion: bool = False,  # noqa: N803
        on_progress: ProgressUpdateCallback | None = None,
        on_finished: TrainingFinishedCallback | None = None,
    ) -> TrainingOutcome | None:
        """Run ``lunglivseg train`` with ``request`` in a child process and install its bundle.

        ``request.resume`` continues the run in ``request.out`` from its last checkpoint (which a
        cancelled run keeps); ``training_job.model_folder`` gives the ``init_from`` of a catalogue
        model. An installed model of the same name and version (a second run of a preset) is
        replaced when ``replace_installed`` is True or, given a function, when it returns True for
        the installed model's entry (the widget asks the user); otherwise the new bundle stays in
        the run folder and the outcome says ``kept_installed``. Progress statuses read
        "epoch 12/200, loss 0.31, val Dice 0.93".
        Returns the outcome with ``waitForCompletion``; otherwise None, and ``on_finished`` gets it.
        """
        self._check_idle()
        job = TrainingJob(replace_installed, on_progress, on_finished)
        # Absolute: the command line is the run's provenance in model.json, read later from elsewhere.
        request = replace(request, dataset=request.dataset.resolve(), out=request.out.resolve())
        command = training_command(self.python, request)
        self.runner.start(command, job.handle, job.finish, env=child_environment())
        return job.outcome if self._waited(waitForCompletion) else None

    def proposal_of(self, segmentation_node: slicer.vtkMRMLSegmentationNode) -> Proposal | None:
        """The model's labels for this node as first produced (None if no model filled it), as
        stored in the scene."""
        labelmap_node = mrml_bridge.proposal_node(segmentation_node)
        if labelmap_node is None:
            return None
        name, _, version = labelmap_node.GetAttribute(mrml_bridge.PROPOSAL_MODEL_ATTRIBUTE).partition("@")
        return Proposal(
            labels=mrml_bridge.image_from_volume_node(labelmap_node),
            model=ModelId(name=name, version=version),
            volume_node_id=labelmap_node.GetNodeReferenceID(mrml_bridge.PROPOSAL_VOLUME_ROLE),
        )

    def export_for_training(  # noqa: PLR0913  (the module's export: two nodes, then export_case's options)
        self,
        volume_node: slicer.vtkMRMLScalarVolumeNode,
        segmentation_node: slicer.vtkMRMLSegmentationNode,
        dataset_dir: str | Path,
        case_id: str,
        model_name: str | None = None,
        proposal_labels: Image | None = None,
        overwrite: bool = False,
        *,
        waitForCompletion: bool = False,  # noqa: N803
        on_finished: ExportFinishedCallback | None = None,
    ) -> CaseRecord | None:
        """Write the volume and its approved (corrected) labels as a training case.

        The labels take the model's label values (segments matched by name or terminology; one
        the model does not know is refused by name). Without a model, segments are numbered in
        order. The model's proposal for this node, if any, is stored beside the approved labels
        so that the correction effort can be measured; without one, the record's ``model`` and
        ``correction`` are None (the front end says so).

        The scene is read here, on the caller's thread (a segment no label matches raises here);
        the files and the correction metrics are written in a worker thread. With
        ``waitForCompletion`` returns the record and raises the export's error (e.g.
        ``DatasetExportError``: the case exists); otherwise returns None at once, and
        ``on_finished`` gets an ``ExportOutcome`` from a later ``poll()``. One export at a time.
        """
        if self.is_exporting:
            raise JobRunningError("an export is already running; wait for it first")
        proposal = self.proposal_of(segmentation_node)
        if proposal is not None and proposal.volume_node_id != volume_node.GetID():
            proposal = None  # made for another volume: not a proposal for this image
        if proposal_labels is None and proposal is not None:
            proposal_labels = proposal.labels
        model_key = model_name or (_model_key(proposal.model) if proposal else None)
        label_map, model, bundle_modality = _model_labels(model_key) if model_key else ({}, None, None)
        approved, label_map = mrml_bridge.labels_from_segmentation(
            segmentation_node, volume_node, label_map, map_unknown=model is None
        )
        export = partial(
            export_case,
            dataset_dir,
            case_id,
            mrml_bridge.image_from_volume_node(volume_node),
            approved,
            label_map,
            proposal=proposal_labels,
            source=_source_of(volume_node),
            model=model if proposal_labels is not None else None,
            modality=bundle_modality,
            overwrite=overwrite,
        )
        job = self._export = _ExportJob(export, on_finished)
        if not waitForCompletion:
            return None
        job.done.wait()
        self._deliver_export()
        if job.error is not None:
            raise job.error
        return job.record

    def _deliver_export(self) -> None:
        """The finished export's outcome to its ``on_finished``, once, on this thread."""
        job = self._export
        if job is None or not job.done.is_set():
            return
        self._export = None
        if job.on_finished is not None:
            job.on_finished(job.outcome())

    def _new_job(
        self,
        model_name: str,
        replace: bool,
        on_progress: ProgressUpdateCallback | None,
        on_finished: SegmentationFinishedCallback | None,
    ) -> _SegmentationJob:
        """Checks before anything is written: one run at a time, and a model that exists."""
        self._check_idle()
        label_map, model, _ = _model_labels(model_name)
        workdir = Path(tempfile.mkdtemp(prefix="lunglivseg-"))
        return _SegmentationJob(model, label_map, workdir, [], replace, on_progress, on_finished)

    def _check_idle(self) -> None:
        if self.is_running:
            raise JobRunningError(
                "a segmentation or training is already running; cancel it or wait for it first"
            )

    def _run(self, job: _SegmentationJob, command: list[str], wait: bool) -> SegmentationOutcome | None:
        with _removed_on_error(job.workdir):
            self.runner.start(
                command, job.report, lambda result: self._finish(job, result), env=child_environment()
            )
            self._segmentation = job
        return job.outcome if self._waited(wait) else None

    def _waited(self, wait: bool) -> bool:
        """With ``wait``, poll until the child ended (its callbacks run here); returns ``wait``."""
        if wait:
            self.runner.wait()
        return wait

    def _finish(self, job: _SegmentationJob, result: ProcessResult) -> None:
        try:
            job.outcome = self._outcome_of(job, result)
        finally:
            shutil.rmtree(job.workdir, ignore_errors=True)
        if job.on_finished is not None:
            job.on_finished(job.outcome)

    def _outcome_of(self, job: _SegmentationJob, result: ProcessResult) -> SegmentationOutcome:
        if not result.succeeded:
            return SegmentationOutcome(
                cancelled=result.cancelled, error=result.error, warnings=result.warnings
            )
        try:
            nodes = self._import_labels(job)
        except Exception as error:  # any failure must still end the run (the GUI waits for it)
            return SegmentationOutcome(error=str(error), warnings=result.warnings)
        files = tuple(case.label_path for case in job.cases if case.volume_node is None)
        return SegmentationOutcome(segmentation_nodes=nodes, output_files=files, warnings=result.warnings)

    def _import_labels(self, job: _SegmentationJob) -> tuple[slicer.vtkMRMLSegmentationNode, ...]:
        """One segmentation node per volume node; on any failure the nodes added so far go."""
        nodes = []
        with mrml_bridge.removing_added_nodes(self.scene, keep_on_success=True):
            for case in job.cases:
                if case.volume_node is None:
                    continue
                labels = read_image(case.label_path)
                into = case.existing_node
                if into is None:
                    into = case.volume_node.GetName() + SEGMENTATION_NODE_SUFFIX
                node = mrml_bridge.segmentation_from_labels(
                    labels, job.label_map, case.volume_node, into=into, replace=job.replace
                )
                mrml_bridge.store_proposal(node, labels, case.volume_node, _model_key(job.model))
                nodes.append(node)
        return tuple(nodes)


def _model_labels(model_name: str) -> tuple[LabelMap, ModelId, str]:
    """The label map, exact identity and image modality of a catalogue model (``name`` or
    ``name@version``); the modality decides the exported dataset's ``channel_names``."""
    bundle = find_model(model_name)
    return bundle.labels, ModelId(name=bundle.name, version=bundle.version), bundle.modality


def _model_key(model: ModelId) -> str:
    return f"{model['name']}@{model['version']}"


def _source_of(volume_node: slicer.vtkMRMLScalarVolumeNode) -> dict[str, str]:
    """Where the volume came from: its file when it was loaded from one, and its node name."""
    storage_node = volume_node.GetStorageNode()
    file_name = storage_node.GetFileName() if storage_node is not None else None
    return {"node": volume_node.GetName(), **({"path": file_name} if file_name else {})}


@contextmanager
def _removed_on_error(folder: Path) -> Iterator[None]:
    try:
        yield
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
