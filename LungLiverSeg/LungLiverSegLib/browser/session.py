"""What the browser app does, without trame: open an image into the scene, segment it, export the
corrected labels, train, and say how each ended in one line.

A thin layer over the Slicer module's ``SceneLogic`` (the same child processes, protocol, proposal
and exporter), holding only what a page needs besides: the files it may open (``--data``), where
datasets and training runs go (``--work``), and ``page``, the plain values the page shows. The app
(``app.py``) calls these methods from its widgets and copies ``page`` into trame's state; the tests
call them directly on a headless scene.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from LungLiverSegLib.browser.curve import TrainingCurve
from LungLiverSegLib.browser.security import AccessError, check_upload_size, confined, upload_name
from LungLiverSegLib.browser.settings import Settings
from LungLiverSegLib.cli.train_request import TrainRequest, preset_names
from LungLiverSegLib.dataset.export import CaseRecord
from LungLiverSegLib.errors import LungLiverSegError
from LungLiverSegLib.imageio import read_image, split_image_name
from LungLiverSegLib.slicer_module import mrml_bridge
from LungLiverSegLib.slicer_module.logic import ExportOutcome, SceneLogic, SegmentationOutcome
from LungLiverSegLib.slicer_module.presentation import describe_progress, describe_training, model_choices
from LungLiverSegLib.slicer_module.process import Outcome, ProgressUpdate
from LungLiverSegLib.slicer_module.staging import safe_stem
from LungLiverSegLib.slicer_module.training_job import (
    TrainingOutcome,
    default_run_folder,
    holds_training_run,
    model_folder,
)

if TYPE_CHECKING:
    import slicer

INFO, WARNING, ERROR = "info", "warning", "error"
SEGMENT, EXPORT, TRAIN = "segment", "export", "train"
DATASETS_FOLDER = "datasets"
FINISHED_RUN_FOLDER = "bundle"
"""What a training run folder holds once its model is exported (Training's ``_finish``)."""
UPLOADS_FOLDER = "uploads"


@dataclass
class Page:
    """Everything the page shows that is not MRML: one message line (and its kind), the running job
    with its progress, the model choices, the correction table of the last export and the curve."""

    message: str = ""
    message_kind: str = INFO
    job: str = ""
    progress: float = 0.0
    progress_text: str = ""
    models: list[dict[str, str]] = field(default_factory=list)
    model: str = ""
    presets: list[str] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)
    correction: list[dict[str, Any]] = field(default_factory=list)
    curve_svg: str = ""
    series: list[dict[str, str]] = field(default_factory=list)
    worklist: list[dict[str, Any]] = field(default_factory=list)
    case: str = ""
    effort_svg: str = ""
    advice: str = ""

    def as_state(self) -> dict[str, Any]:
        return asdict(self)


VolumeShown = Callable[["slicer.vtkMRMLScalarVolumeNode"], None]
SegmentationShown = Callable[["slicer.vtkMRMLSegmentationNode", "slicer.vtkMRMLScalarVolumeNode"], None]


class AppSession:
    """One page's work on one scene: one image at a time, one job at a time (``SceneLogic``'s rule)."""

    def __init__(
        self, scene: slicer.vtkMRMLScene, settings: Settings, logic: SceneLogic | None = None
    ) -> None:
        self.scene = scene
        self.settings = settings
        self.device = settings.device
        self.logic = logic if logic is not None else SceneLogic(scene)
        self.page = Page(presets=preset_names())
        self.volume_node: slicer.vtkMRMLScalarVolumeNode | None = None
        self.segmentation_node: slicer.vtkMRMLSegmentationNode | None = None
        self.curve = TrainingCurve()
        self.on_volume: VolumeShown | None = None
        self.on_segmentation: SegmentationShown | None = None
        self.on_model_installed: Callable[[str], None] | None = None
        self.refresh_models()

    # --- images ------------------------------------------------------------------------------

    def open_data_file(self, relative: str, series_uid: str | None = None) -> None:
        """Open an image or DICOM series folder of the data folder (a page names it relatively)."""

        def open_file() -> None:
            if series_uid is not None and not isinstance(series_uid, str):
                raise AccessError("a DICOM series UID is text")
            self._open(confined(self.settings.data, relative), series_uid)

        self.attempt(open_file)

    def open_upload(self, files: list[dict[str, Any]]) -> None:
        """Open uploaded files (one image, or the slices of one DICOM series) checked as images.

        The files are written under safe names into a folder of ``--work`` that is removed after
        reading, so nothing a client sends is kept or lands outside it.
        """
        self.attempt(lambda: self._open_upload(files))

    def open_upload_refused(self, total_bytes: int) -> None:
        """The page saw the files are too large and sent none: the same message as the server's check."""
        self.attempt(lambda: check_upload_size(total_bytes, self.settings.max_upload_mb))

    def _open_upload(self, files: list[dict[str, Any]]) -> None:
        if not isinstance(files, list) or not all(isinstance(item, dict) for item in files):
            raise AccessError("the upload is not a list of files")
        contents = [_content(item) for item in files]  # chunked uploads joined once
        check_upload_size(sum(map(len, contents)), self.settings.max_upload_mb)
        if not files:
            raise AccessError("the upload holds no file")
        uploads = self.settings.work / UPLOADS_FOLDER
        uploads.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="upload-", dir=uploads))
        try:
            names = [upload_name(item.get("name")) for item in files]
            if len(set(names)) != len(names):
                raise AccessError("the upload holds two files of the same name")
            for name, content in zip(names, contents, strict=True):
                (folder / name).write_bytes(content)
            path = folder / names[0] if len(names) == 1 and split_image_name(names[0])[1] else folder
            self._open(path, None, name=split_image_name(names[0])[0] if path != folder else "DICOM series")
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _open(self, path: Path, series_uid: str | None, name: str | None = None) -> None:
        if self.logic.is_running:
            raise LungLiverSegError("a segmentation or training is running; cancel it or wait before opening")
        image = read_image(path, series_uid)
        self.scene.Clear(0)
        node_name = name or split_image_name(path)[0] or path.name
        self.show(mrml_bridge.volume_node_from_image(self.scene, image, safe_stem(node_name)))
        self.say(f"Opened {node_name}: {' x '.join(map(str, image.array.shape[::-1]))} voxels")

    def show(
        self,
        volume_node: slicer.vtkMRMLScalarVolumeNode,
        segmentation_node: slicer.vtkMRMLSegmentationNode | None = None,
    ) -> None:
        """Make ``volume_node`` (and its segmentation, when it comes with one) the page's image."""
        self.volume_node, self.segmentation_node = volume_node, segmentation_node
        self.page.correction, self.page.series = [], []
        self.page.segments = self.segment_summary()
        if self.on_volume is not None:
            self.on_volume(volume_node)
        if segmentation_node is not None and self.on_segmentation is not None:
            self.on_segmentation(segmentation_node, volume_node)

    # --- segmentation ------------------------------------------------------------------------

    def refresh_models(self, select: str | None = None) -> None:
        choices = model_choices()
        self.page.models = [{"value": c.key, "title": c.text, "details": c.tooltip} for c in choices]
        keys = [c.key for c in choices]
        if select in keys:
            self.page.model = select or ""
        elif self.page.model not in keys:
            self.page.model = keys[0] if keys else ""

    def segment(self, segmentation_node: slicer.vtkMRMLSegmentationNode | None = None) -> None:
        """Run the chosen model on the open image into ``segmentation_node`` (the editor's), in the
        background; ``poll`` delivers progress and the result."""

        def start() -> None:
            if self.volume_node is None:
                raise LungLiverSegError("open an image first")
            self.logic.process(
                self.volume_node,
                self.page.model,
                device=self.device,
                output_segmentation_node=segmentation_node,
                on_progress=self.show_progress,
                on_finished=self._segmented,
            )
            self.start_job(SEGMENT, f"Segmenting with {self.page.model}")

        self.attempt(start)

    def _segmented(self, outcome: SegmentationOutcome) -> None:
        if self.end_job(outcome, "Segmentation"):
            return
        (node,) = outcome.segmentation_nodes
        self.segmentation_node = node
        self.page.segments = self.segment_summary()
        volumes = ", ".join(f"{row['name']} {row['size']:.1f} {row['unit']}" for row in self.page.segments)
        self.say(f"Segmented with {self.page.model}: {volumes or 'nothing found'}", *outcome.warnings)
        if self.on_segmentation is not None and self.volume_node is not None:
            self.on_segmentation(node, self.volume_node)

    def segment_summary(self) -> list[dict[str, Any]]:
        """Per segment of the current segmentation: name, voxels on the image's grid, and its volume
        (mL), or its area (cm²) on a one-slice image such as a chest X-ray."""
        if self.segmentation_node is None or self.volume_node is None:
            return []
        labels, label_map = mrml_bridge.labels_from_segmentation(
            self.segmentation_node, self.volume_node, {}, map_unknown=True
        )
        flat = labels.array.ndim == 2 or labels.array.shape[0] == 1  # an X-ray: areas, not volumes
        spacing = labels.spacing[:2] if flat else labels.spacing
        unit, per_voxel = (
            ("cm²", float(np.prod(spacing)) / 100.0) if flat else ("mL", float(np.prod(spacing)) / 1000.0)
        )
        counts = np.bincount(labels.array.ravel(), minlength=max(label_map, default=0) + 1)
        return [
            {"name": info.name, "voxels": int(counts[value]), "size": counts[value] * per_voxel, "unit": unit}
            for value, info in sorted(label_map.items())
        ]

    # --- export and training -----------------------------------------------------------------

    def dataset_folder(self, dataset: str) -> Path:
        """``<work>/datasets/<dataset>``: datasets live in the work folder, named, never a path."""
        name = safe_stem(dataset)
        if name != dataset:
            raise AccessError(f"a dataset name is letters, digits, '.', '_' and '-' only (not {dataset!r})")
        return self.settings.work / DATASETS_FOLDER / name

    def export(
        self, dataset: str, case_id: str, segmentation_node: slicer.vtkMRMLSegmentationNode | None = None
    ) -> None:
        """Export the open image and its (corrected) segmentation as a training case: the editor's
        ``segmentation_node``, annotated from scratch or corrected, or the last one segmented."""

        def start() -> None:
            if segmentation_node is not None:
                self.segmentation_node = segmentation_node
            if self.volume_node is None or self.segmentation_node is None:
                raise LungLiverSegError("segment the image (or add segments) before exporting")
            self.logic.export_for_training(
                self.volume_node,
                self.segmentation_node,
                self.dataset_folder(dataset),
                safe_stem(case_id),
                on_finished=self._exported,
            )
            self.start_job(EXPORT, f"Exporting {case_id} into {dataset}")

        self.attempt(start)

    def _exported(self, outcome: ExportOutcome) -> None:
        if self.end_job(outcome, "Export") or outcome.record is None:
            return
        record = outcome.record
        self.page.correction = correction_rows(record)
        effort = "; ".join(
            f"{row['segment']}: Dice {row['dice']:.3f}, {row['changed_ml']:.1f} mL changed"
            for row in self.page.correction
        )
        corrected = f" (correction: {effort})" if effort else " (no model proposal: annotated from scratch)"
        self.say(f"Exported case {record.case_id}{corrected}")

    def train(self, dataset: str, preset: str, *, epochs: int | None = None, fine_tune: bool = False) -> None:
        """Train ``preset`` on a dataset of the work folder (resuming its run when one was stopped);
        with ``fine_tune`` from the chosen model's weights. The model is installed when it ends."""

        def start() -> None:
            if preset not in self.page.presets:  # --config also reads a JSON file: no server path
                raise AccessError(f"{preset!r} is not a training preset ({', '.join(self.page.presets)})")
            dataset_dir = self.dataset_folder(dataset)
            if not (dataset_dir / "dataset.json").is_file():
                raise LungLiverSegError(f"there is no dataset {dataset!r} yet: export a case into it first")
            out = run_folder(dataset_dir, preset)
            resume = holds_training_run(out)
            request = TrainRequest(
                dataset_dir,
                out,
                config=None if resume else preset,
                init_from=model_folder(self.page.model) if fine_tune and not resume else None,
                device=self.device,
                epochs=None if resume else epochs,  # a resumed run keeps its own length
                resume=resume,
            )
            self.curve = TrainingCurve()
            self.page.curve_svg = ""
            self.logic.train(
                request,
                replace_installed=True,
                on_progress=self._training_progress,
                on_finished=self._trained,
            )
            self.start_job(TRAIN, f"{'Resuming' if resume else 'Training'} {preset} on {dataset}")

        self.attempt(start)

    def _training_progress(self, update: ProgressUpdate) -> None:
        self.curve.add(update)
        self.page.curve_svg = self.curve.svg()
        self.show_progress(update)

    def _trained(self, outcome: TrainingOutcome) -> None:
        if self.end_job(outcome, "Training", resumable=True):
            return
        self.refresh_models(select=outcome.model_key)
        self.say(describe_training(outcome), *outcome.warnings)
        if self.on_model_installed is not None and outcome.model_key and not outcome.kept_installed:
            self.on_model_installed(outcome.model_key)

    # --- jobs --------------------------------------------------------------------------------

    def cancel(self) -> None:
        self.logic.cancel()

    def poll(self) -> bool:
        """Deliver the running job's progress and outcome (the app calls this on a timer)."""
        return self.logic.poll()

    def start_job(self, job: str, text: str) -> None:
        self.page.job, self.page.progress, self.page.progress_text = job, 0.0, text
        self.say(text)

    def show_progress(self, update: ProgressUpdate) -> None:
        self.page.progress = update.fraction
        self.page.progress_text = describe_progress(update)

    def end_job(
        self,
        outcome: Outcome,
        what: str,
        *,
        resumable: bool = False,
    ) -> bool:
        """Clear the progress; True (and the message said) when the job did not succeed."""
        self.page.job, self.page.progress, self.page.progress_text = "", 0.0, ""
        if outcome.cancelled:
            self.say(f"{what} cancelled" + (": start it again to resume" if resumable else ""), kind=WARNING)
        elif outcome.error is not None:
            self.say(outcome.error.removeprefix("lunglivseg: error: "), kind=ERROR)
        return not outcome.succeeded

    def attempt(self, action: Callable[[], None]) -> None:
        """Run a page's action; a user error becomes the page's one-line message, not a traceback."""
        try:
            action()
        except LungLiverSegError as error:
            self.say(str(error), kind=ERROR)

    def say(self, text: str, *warnings: str, kind: str = INFO) -> None:
        self.page.message = " ".join([text, *(f"Warning: {w}" for w in warnings)])
        self.page.message_kind = WARNING if warnings and kind == INFO else kind


def run_folder(dataset_dir: Path, preset: str) -> Path:
    """Where Train runs ``preset`` on a dataset: its stopped run, to resume; else the first folder
    that holds no finished run (``<preset>``, ``<preset>-2``, ...): training again after more
    exports must not resume, nor overwrite, the run that made the installed model."""
    first = default_run_folder(dataset_dir, preset)
    for number in itertools.count(1):
        folder = first if number == 1 else first.with_name(f"{first.name}-{number}")
        if not (folder / FINISHED_RUN_FOLDER).exists():
            return folder
    raise AssertionError("unreachable")


def correction_rows(record: CaseRecord) -> list[dict[str, Any]]:
    """The export's correction effort per segment, as the page's table rows."""
    return [
        {"segment": name, "dice": values["dice"], "changed_ml": values["changed_ml"], "hd95": values["hd95"]}
        for name, values in (record.correction or {}).items()
    ]


def _content(item: dict[str, Any]) -> bytes:
    content = item.get("content")
    if isinstance(content, list):
        return b"".join(content)
    if not isinstance(content, bytes):
        raise AccessError(f"the uploaded file {item.get('name')!r} arrived without its content")
    return content
