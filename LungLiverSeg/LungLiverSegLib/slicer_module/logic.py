"""What the Slicer module does, without Qt: segment volume nodes through the CLI, keep the
model's proposal, export corrections for training, train a model on them and install it, and
check/install the Python dependencies.

The scene and the process runner are passed in, so the same class runs in Slicer (the module's
``LungLiverSegLogic`` adds only the parameter node) and on a headless ``slicer-core`` scene in
tests. Segmentation and training always run in a child process (``process.py``), one at a time
on the same runner. For segmentation this class writes its input, starts it, and on success turns
its label file into a segmentation node; a failed or cancelled run leaves the scene as it was and
removes its temporary files. A finished training run's bundle is installed into the user's models
folder; a cancelled one keeps its last checkpoint, which ``resume`` continues.

Torch is imported only where a model is needed (the catalogue opens bundles), so the module loads
in a Slicer where the dependencies are still missing and can offer to install them.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from LungLiverSegLib import paths
from LungLiverSegLib.cli.main import IMAGE_SUFFIXES
from LungLiverSegLib.errors import InputImageError, LungLiverSegError
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.imageio import read_image, write_image
from LungLiverSegLib.labels import LabelMap
from LungLiverSegLib.slicer_module import mrml_bridge
from LungLiverSegLib.slicer_module.process import (
    CaseDone,
    EpochValidated,
    ProcessEvent,
    ProcessResult,
    ProcessRunner,
    ProgressUpdate,
    ThreadedProcessRunner,
    child_environment,
    segmentation_command,
    slicer_python,
    training_command,
    training_status,
)

if TYPE_CHECKING:  # imports torch: only where a model is needed
    from LungLiverSegLib.dataset.export import CaseRecord

REQUIRED_IMPORTS = ("torch", "monai", "SimpleITK", "safetensors")
# Slicer ships its own SimpleITK (with Slicer's image IO); a pip install over it breaks Slicer.
PROVIDED_BY_SLICER = ("SimpleITK",)
SEGMENTATION_SUFFIX = " segmentation"
# Formats whose single file holds the whole image, so a link to it in another folder still reads.
LINKABLE_SUFFIXES = tuple(suffix for suffix in IMAGE_SUFFIXES if suffix != ".mhd")

ProgressCallback = Callable[[ProgressUpdate], None]
ModelId = dict[str, str]  # {"name": ..., "version": ...}, as the dataset records it


class DependencyError(LungLiverSegError):
    """A dependency could not be installed; the message says what the user can do."""


@dataclass(frozen=True)
class Proposal:
    """The labels a model produced for a segmentation node, before anyone corrected them."""

    labels: Image
    model: ModelId
    volume_node_id: str


@dataclass(frozen=True)
class SegmentationOutcome:
    """How a run ended: the segmentation nodes it filled (one per input volume node) and files."""

    segmentation_nodes: tuple[Any, ...] = ()
    output_files: tuple[Path, ...] = ()
    cancelled: bool = False
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return not self.cancelled and self.error is None


FinishedCallback = Callable[[SegmentationOutcome], None]


@dataclass(frozen=True)
class TrainingOutcome:
    """How a training run ended: the installed model and its validation metrics (model.json's
    ``validation``: Dice and NSD per segment, mean Dice, best epoch), or why it did not."""

    model_name: str | None = None
    model_version: str | None = None
    bundle_folder: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    cancelled: bool = False
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return not self.cancelled and self.error is None


TrainingFinishedCallback = Callable[[TrainingOutcome], None]


@dataclass
class _Case:
    """One input of a run: a volume node (gets a segmentation node) or a file (gets an output file)."""

    label_path: Path
    volume_node: Any = None
    existing_node: Any = None


@dataclass
class _Job:
    model: ModelId
    label_map: LabelMap
    workdir: Path
    cases: list[_Case]
    replace: bool
    on_progress: ProgressCallback | None
    on_finished: FinishedCallback | None
    outcome: SegmentationOutcome | None = field(default=None)


@dataclass
class _TrainingJob:
    """One training run, and what its lines told so far (for the status text and the bundle)."""

    epochs: int | None
    replace_installed: bool
    on_progress: ProgressCallback | None
    on_finished: TrainingFinishedCallback | None
    mean_dice: float | None = None
    exported_bundle: str | None = None
    outcome: TrainingOutcome | None = None

    def handle(self, event: ProcessEvent) -> None:
        if isinstance(event, EpochValidated):
            self.mean_dice = event.mean_dice
        elif isinstance(event, CaseDone):
            self.exported_bundle = event.output
        elif self.on_progress is not None and event.epoch is not None and event.loss is not None:
            status = training_status(event.epoch, event.loss, self.epochs, self.mean_dice)
            self.on_progress(dataclasses.replace(event, stage=status))


class LungLiverSegLogic:
    """Segmentation, proposals and export on one MRML scene, with one run at a time."""

    def __init__(self, scene: Any, runner: ProcessRunner | None = None, python: str | None = None) -> None:
        self.scene = scene
        self.runner = runner if runner is not None else ThreadedProcessRunner()
        self.python = python or slicer_python()
        self._proposals: dict[str, Proposal] = {}

    @property
    def is_running(self) -> bool:
        return self.runner.is_running

    def poll(self) -> bool:
        """Deliver progress and the result on this thread (call from a QTimer); True while running."""
        return self.runner.poll()

    def cancel(self) -> None:
        """Stop the running segmentation or training; its ``on_finished`` reports ``cancelled``."""
        self.runner.cancel()

    def process(
        self,
        input_volume_node: Any,
        model_name: str,
        device: str = "auto",
        output_segmentation_node: Any = None,
        replace: bool = True,
        waitForCompletion: bool = False,  # noqa: N803  (Slicer's spelling, as in its module logics)
        on_progress: ProgressCallback | None = None,
        on_finished: FinishedCallback | None = None,
    ) -> SegmentationOutcome | None:
        """Segment one volume into ``output_segmentation_node`` or a new "<volume> segmentation".

        ``replace`` False keeps the output node's segments that the model does not produce.
        Returns the outcome with ``waitForCompletion``; otherwise None at once, and the outcome
        goes to ``on_finished`` from a later ``poll()``.
        """
        job = self._new_job(model_name, replace, on_progress, on_finished)
        input_path = job.workdir / "input.nrrd"
        case = _Case(job.workdir / "labels.nrrd", input_volume_node, output_segmentation_node)
        job.cases.append(case)
        with _removed_on_error(job.workdir):
            write_image(input_path, mrml_bridge.image_from_volume_node(input_volume_node))
        command = segmentation_command(self.python, input_path, case.label_path, model_name, device)
        return self._run(job, command, waitForCompletion)

    def process_batch(
        self,
        inputs: Sequence[Any],
        model_name: str,
        device: str = "auto",
        output_folder: str | Path | None = None,
        replace: bool = True,
        overwrite: bool = False,
        waitForCompletion: bool = False,  # noqa: N803
        on_progress: ProgressCallback | None = None,
        on_finished: FinishedCallback | None = None,
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
            job.cases = _stage_batch(inputs, input_folder, outputs)
        command = segmentation_command(
            self.python,
            input_folder,
            outputs,
            model_name,
            device,
            output_format=".seg.nrrd",
            overwrite=overwrite,
        )
        return self._run(job, command, waitForCompletion)

    def train(
        self,
        dataset_dir: str | Path,
        config: str,
        out_dir: str | Path,
        *,
        device: str = "auto",
        epochs: int | None = None,
        init_from: str | Path | None = None,
        resume: bool = False,
        threads: int | None = None,
        replace_installed: bool = False,
        waitForCompletion: bool = False,  # noqa: N803
        on_progress: ProgressCallback | None = None,
        on_finished: TrainingFinishedCallback | None = None,
    ) -> TrainingOutcome | None:
        """Train on an exported dataset in a child process and install the resulting bundle.

        ``config`` is a preset name or a JSON config file; ``init_from`` the model to fine-tune
        (a catalogue name, ``name@version``, or a bundle folder or .zip); ``resume`` continues the
        run in ``out_dir`` from its last checkpoint (which a cancelled run keeps). An installed
        model of the same name and version is replaced only with ``replace_installed``. Progress
        statuses read "epoch 12/200, loss 0.31, val Dice 0.93". Returns the outcome with
        ``waitForCompletion``; otherwise None, and ``on_finished`` gets it.
        """
        self._check_idle()
        job = _TrainingJob(_total_epochs(config, epochs, resume), replace_installed, on_progress, on_finished)
        command = training_command(
            self.python,
            Path(dataset_dir).resolve(),
            config,
            Path(out_dir).resolve(),
            device=device,
            epochs=epochs,
            init_from=_bundle_folder(init_from) if init_from is not None else None,
            resume=resume,
            threads=threads,
        )
        self.runner.start(
            command, job.handle, lambda result: self._finish_training(job, result), env=child_environment()
        )
        return self._outcome_when_done(job, waitForCompletion)

    def proposal_of(self, segmentation_node: Any) -> Proposal | None:
        """The model's labels for this node as first produced (None if no model filled it)."""
        return self._proposals.get(segmentation_node.GetID())

    def export_for_training(
        self,
        volume_node: Any,
        segmentation_node: Any,
        dataset_dir: str | Path,
        case_id: str,
        model_name: str | None = None,
        proposal_labels: Image | None = None,
        overwrite: bool = False,
    ) -> CaseRecord:
        """Write the volume and its approved (corrected) labels as a training case.

        The labels take the model's label values (segments matched by name or terminology; one
        the model does not know is refused by name). Without a model, segments are numbered in
        order. The model's proposal for this node, if any, is stored beside the approved labels
        so that the correction effort can be measured.
        """
        from LungLiverSegLib.dataset.export import export_case

        proposal = self.proposal_of(segmentation_node)
        if proposal is not None and proposal.volume_node_id != volume_node.GetID():
            proposal = None  # made for another volume: not a proposal for this image
        if proposal_labels is None and proposal is not None:
            proposal_labels = proposal.labels
        model_key = model_name or (_model_key(proposal.model) if proposal else None)
        label_map, model = _model_labels(model_key) if model_key else ({}, None)
        approved, label_map = mrml_bridge.labels_from_segmentation(
            segmentation_node, volume_node, label_map, map_unknown=model is None
        )
        return export_case(
            dataset_dir,
            case_id,
            mrml_bridge.image_from_volume_node(volume_node),
            approved,
            label_map,
            proposal=proposal_labels,
            source=_source_of(volume_node),
            model=model if proposal_labels is not None else None,
            overwrite=overwrite,
        )

    def _new_job(
        self,
        model_name: str,
        replace: bool,
        on_progress: ProgressCallback | None,
        on_finished: FinishedCallback | None,
    ) -> _Job:
        """Checks before anything is written: one run at a time, and a model that exists."""
        self._check_idle()
        label_map, model = _model_labels(model_name)
        workdir = Path(tempfile.mkdtemp(prefix="lunglivseg-"))
        return _Job(model, label_map, workdir, [], replace, on_progress, on_finished)

    def _check_idle(self) -> None:
        if self.is_running:
            raise RuntimeError(
                "a segmentation or training is already running; cancel it or wait for it first"
            )

    def _run(self, job: _Job, command: list[str], wait: bool) -> SegmentationOutcome | None:
        with _removed_on_error(job.workdir):
            self.runner.start(
                command,
                lambda event: _report_progress(job, event),
                lambda result: self._finish(job, result),
                env=child_environment(),
            )
        return self._outcome_when_done(job, wait)

    def _outcome_when_done(self, job: _Job | _TrainingJob, wait: bool) -> Any:
        """The job's outcome once the child ended, with ``wait``; else None at once."""
        if not wait:
            return None
        self.runner.wait()
        return job.outcome

    def _finish_training(self, job: _TrainingJob, result: ProcessResult) -> None:
        job.outcome = _training_outcome(job, result)
        if job.on_finished is not None:
            job.on_finished(job.outcome)

    def _finish(self, job: _Job, result: ProcessResult) -> None:
        try:
            job.outcome = self._outcome_of(job, result)
        finally:
            shutil.rmtree(job.workdir, ignore_errors=True)
        if job.on_finished is not None:
            job.on_finished(job.outcome)

    def _outcome_of(self, job: _Job, result: ProcessResult) -> SegmentationOutcome:
        if not result.succeeded:
            return SegmentationOutcome(cancelled=result.cancelled, error=result.error)
        try:
            nodes = self._import_labels(job)
        except Exception as error:  # any failure must still end the run (the GUI waits for it)
            return SegmentationOutcome(error=str(error))
        files = tuple(case.label_path for case in job.cases if case.volume_node is None)
        return SegmentationOutcome(segmentation_nodes=nodes, output_files=files)

    def _import_labels(self, job: _Job) -> tuple[Any, ...]:
        """One segmentation node per volume node; on any failure the nodes added so far go."""
        nodes = []
        with _rolled_back_on_error(self.scene):
            for case in job.cases:
                if case.volume_node is None:
                    continue
                labels = read_image(case.label_path)
                node = mrml_bridge.segmentation_from_labels(
                    self.scene,
                    labels,
                    job.label_map,
                    case.volume_node,
                    name=case.volume_node.GetName() + SEGMENTATION_SUFFIX,
                    existing_node=case.existing_node,
                    replace=job.replace,
                )
                self._proposals[node.GetID()] = Proposal(labels, job.model, case.volume_node.GetID())
                nodes.append(node)
        return tuple(nodes)


def _report_progress(job: _Job, event: ProcessEvent) -> None:
    if job.on_progress is not None and isinstance(event, ProgressUpdate):
        job.on_progress(event)


def _total_epochs(config: str, epochs: int | None, resume: bool) -> int | None:
    """The run's number of epochs for the status text; unknown when resuming without ``epochs``
    (the run's own config, in its checkpoint, decides). An unknown config is refused here."""
    if epochs is not None or resume:
        return epochs
    from LungLiverSegTraining.config import load_config

    return load_config(config).epochs


def _bundle_folder(model: str | Path) -> Path:
    """The folder of a catalogue model or bundle path: what ``--init-from`` reads."""
    from LungLiverSegLib.bundle.catalogue import find_model

    return find_model(model).folder


def _training_outcome(job: _TrainingJob, result: ProcessResult) -> TrainingOutcome:
    """Install the exported bundle; any failure to do so is the run's error (the GUI waits for it)."""
    if not result.succeeded:
        return TrainingOutcome(cancelled=result.cancelled, error=result.error)
    if not job.exported_bundle:
        return TrainingOutcome(error="the training finished without reporting its bundle")
    from LungLiverSegLib.bundle.catalogue import import_model
    from LungLiverSegLib.bundle.model_json import load_bundle

    try:
        entry = import_model(job.exported_bundle, overwrite=job.replace_installed)
        metrics = load_bundle(entry.folder, verify_checksum=False).validation
    except Exception as error:
        return TrainingOutcome(error=str(error))
    return TrainingOutcome(entry.name, entry.version, entry.folder, dict(metrics))


def _model_labels(model_name: str) -> tuple[LabelMap, ModelId]:
    """The label map and exact identity of a catalogue model (``name`` or ``name@version``)."""
    from LungLiverSegLib.bundle.catalogue import find_model

    bundle = find_model(model_name)
    return bundle.labels, {"name": bundle.name, "version": bundle.version}


def _model_key(model: ModelId) -> str:
    return f"{model['name']}@{model['version']}"


def _source_of(volume_node: Any) -> dict[str, str]:
    """Where the volume came from: its file when it was loaded from one, and its node name."""
    storage_node = volume_node.GetStorageNode()
    file_name = storage_node.GetFileName() if storage_node is not None else None
    return {"node": volume_node.GetName(), **({"path": file_name} if file_name else {})}


def _stage_batch(inputs: Sequence[Any], input_folder: Path, output_folder: Path) -> list[_Case]:
    """Put every input into ``input_folder`` under a unique name; return where its labels will be."""
    input_folder.mkdir(parents=True)
    cases, taken = [], set()
    for item in inputs:
        is_file = isinstance(item, str | Path)
        stem, suffix = _split_image_name(Path(item)) if is_file else (_safe_stem(item.GetName()), ".nrrd")
        stem = _unique(stem, taken)
        staged = input_folder / (stem + suffix)
        if is_file:
            _link_or_copy(Path(item), staged)
        else:
            write_image(staged, mrml_bridge.image_from_volume_node(item))
        cases.append(_Case(output_folder / f"{stem}.seg.nrrd", None if is_file else item))
    return cases


def _split_image_name(path: Path) -> tuple[str, str]:
    if not path.is_file():
        raise InputImageError(f"{path}: no such image file")
    name = path.name
    suffix = next((s for s in LINKABLE_SUFFIXES if name.lower().endswith(s)), None)
    if suffix is None:
        raise InputImageError(
            f"{path}: batch inputs must be single image files ({', '.join(LINKABLE_SUFFIXES)}); "
            "load other images into Slicer and pass the volume nodes"
        )
    return _safe_stem(name[: -len(suffix)]), suffix


def _safe_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"


def _unique(stem: str, taken: set[str]) -> str:
    candidate, number = stem, 1
    while candidate.casefold() in taken:
        number += 1
        candidate = f"{stem}_{number}"
    taken.add(candidate.casefold())
    return candidate


def _link_or_copy(source: Path, target: Path) -> None:
    """A link costs nothing for a large CT; where links are not allowed (Windows), a copy."""
    try:
        os.symlink(source.resolve(), target)
    except OSError:
        shutil.copyfile(source, target)


@contextmanager
def _removed_on_error(folder: Path) -> Iterator[None]:
    try:
        yield
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


@contextmanager
def _rolled_back_on_error(scene: Any) -> Iterator[None]:
    """Remove the nodes added inside the block if it raises: no partial result stays."""
    before = _node_ids(scene)
    try:
        yield
    except BaseException:
        for node_id in _node_ids(scene) - before:
            node = scene.GetNodeByID(node_id)
            if node is not None:
                scene.RemoveNode(node)
        raise


def _node_ids(scene: Any) -> set[str]:
    return {scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())}


# --------------------------------------------------------------------------------------------
# Models and devices, for the module's combo boxes
# --------------------------------------------------------------------------------------------


def available_models() -> list[Any]:
    """Catalogue entries that can run (broken user bundles are left out)."""
    from LungLiverSegLib.bundle.catalogue import list_models

    return [entry for entry in list_models() if entry.error is None]


def model_tooltip(entry: Any) -> str:
    """What a user needs to choose a model: organs, 2D/3D, expected time and licence."""
    times = ", ".join(
        f"{device} ~{seconds:.0f} s"
        for device, seconds in (("CPU", entry.cpu_time_s), ("GPU", entry.gpu_time_s))
        if seconds is not None
    )
    lines = [
        f"{entry.title} ({entry.name} {entry.version})",
        f"Segments: {', '.join(entry.segments)}",
        f"{entry.dims}D {entry.modality} model" + (f"; {times} per image" if times else ""),
        f"Licence: {entry.license}",
    ]
    return "\n".join(lines)


def describe_progress(update: ProgressUpdate) -> str:
    """The status line under the progress bar: stage, percent, time left and, in a batch, the case."""
    text = f"{update.stage} {update.fraction:.0%}"
    if update.eta_s is not None:
        minutes, seconds = divmod(round(update.eta_s), 60)
        text += f", about {minutes} min {seconds} s left" if minutes else f", about {seconds} s left"
    return f"{text} ({update.case})" if update.case else text


def training_presets() -> list[str]:
    """The training presets, for the module's config combo box (a JSON config path also works);
    none where the training package is not installed beside the core."""
    if importlib.util.find_spec("LungLiverSegTraining") is None:
        return []
    from LungLiverSegTraining.config import PRESETS

    return list(PRESETS)


def default_run_folder(dataset_dir: str | Path, config: str) -> Path:
    """``<dataset>-training/<config>`` beside the dataset: checkpoints, curves and the bundle."""
    dataset = Path(dataset_dir)
    return dataset.with_name(f"{dataset.name}-training") / Path(config).stem


def holds_training_run(run_folder: str | Path) -> bool:
    """True when the folder has a run's checkpoint: training there must resume (or go elsewhere)."""
    from LungLiverSegTraining.checkpoint import LAST

    return (Path(run_folder) / LAST).is_file()


def describe_training(outcome: TrainingOutcome) -> str:
    """The status line after a successful run: the installed model and its validation Dice."""
    text = f"Installed {outcome.model_name} {outcome.model_version}"
    metrics = outcome.metrics
    if "mean_dice" not in metrics:
        return text + "."
    per_segment = ", ".join(f"{name} {value:.3f}" for name, value in metrics.get("dice", {}).items())
    dice = f"validation Dice {metrics['mean_dice']:.3f} ({per_segment})"
    return f"{text}: {dice}, best epoch {metrics.get('epoch')}."


def device_choices() -> list[str]:
    """``auto``, ``cpu``, and ``cuda (<GPU>, <free> GiB free)`` when torch sees a GPU."""
    choices = ["auto", "cpu"]
    if importlib.util.find_spec("torch") is None:
        return choices
    import torch

    if torch.cuda.is_available():
        free_bytes, _ = torch.cuda.mem_get_info()
        choices.append(f"cuda ({torch.cuda.get_device_name()}, {free_bytes / 2**30:.1f} GiB free)")
    return choices


def device_argument(choice: str) -> str:
    """The CLI's ``--device`` value of a device choice (its first word)."""
    return choice.split()[0] if choice.strip() else "auto"


# --------------------------------------------------------------------------------------------
# Dependencies
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstallPlan:
    """torch through Slicer's PyTorch extension (it picks the CUDA build), the rest through pip."""

    torch_requirement: str | None
    pip_requirements: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return self.torch_requirement is None and not self.pip_requirements


def missing_dependencies() -> list[str]:
    """Import names of the required packages that this Python cannot import."""
    return [name for name in REQUIRED_IMPORTS if importlib.util.find_spec(name) is None]


def pinned_requirements(pyproject: Path | None = None) -> dict[str, str]:
    """The project's dependencies by lower-case name, as pinned in ``pyproject.toml``.

    Empty when the file is not there (an extension package that does not ship it): the
    packages are then installed unpinned, which beats not installing them.
    """
    import tomllib  # Python 3.11+, as in Slicer 5.8 and later

    pyproject = pyproject or paths.pyproject()
    if not pyproject.is_file():
        return {}
    with pyproject.open("rb") as file:
        dependencies = tomllib.load(file)["project"]["dependencies"]
    return {
        re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0].lower(): requirement
        for requirement in dependencies
    }


def install_plan(missing: Sequence[str], requirements: dict[str, str]) -> InstallPlan:
    """What to install for ``missing`` imports, versions from ``requirements``."""
    torch_requirement = None
    if "torch" in missing:  # PyTorchUtils takes the version part only, e.g. "==2.13.0"
        torch_requirement = requirements.get("torch", "torch").removeprefix("torch").strip()
    pip = tuple(
        requirements.get(name.lower(), name)
        for name in missing
        if name != "torch" and name not in PROVIDED_BY_SLICER
    )
    return InstallPlan(torch_requirement, pip)


def install_dependencies(plan: InstallPlan) -> None:
    """Install inside Slicer (only there: it needs ``slicer.util`` and the PyTorch extension)."""
    if plan.torch_requirement is not None:
        _install_torch(plan.torch_requirement)
    import slicer.util

    for requirement in plan.pip_requirements:
        slicer.util.pip_install(requirement)


def _install_torch(version_requirement: str) -> None:
    try:
        import PyTorchUtils
    except ModuleNotFoundError:
        raise DependencyError(
            "LungLiverSeg needs the PyTorch extension: install it from the Extensions Manager, "
            "restart Slicer and try again"
        ) from None
    torch_logic = PyTorchUtils.PyTorchUtilsLogic()
    if torch_logic.installTorch(askConfirmation=False, torchVersionRequirement=version_requirement) is None:
        raise DependencyError("PyTorch could not be installed; see the Python console for the reason")
