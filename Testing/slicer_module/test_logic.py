"""The module's logic on a real headless MRML scene, with the real CLI in a real child process.

The model is a real bundle whose network ignores its input (zero weights, one winning bias), so
its labels are known without trusting the pipeline: "lungs" over the whole image. What the tests
check is the plumbing around it: files, process, nodes, segments, geometry, edits, export.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="needs slicer-core (pip install 'slicer-core==5.11.*')")

import torch  # noqa: E402
from factories import SHARED_DATA  # noqa: E402
from LungLiverSegLib.bundle.catalogue import list_models  # noqa: E402
from LungLiverSegLib.bundle.networks import build_network  # noqa: E402
from LungLiverSegLib.bundle.spec import (  # noqa: E402
    ArchitectureSpec,
    InferenceSpec,
    IntensitySpec,
    ModelBundle,
    PostprocessingSpec,
    PreprocessingSpec,
)
from LungLiverSegLib.bundle.weights import save_bundle  # noqa: E402
from LungLiverSegLib.cli.train_request import TrainRequest  # noqa: E402
from LungLiverSegLib.dataset.export import DatasetExportError, read_dataset  # noqa: E402
from LungLiverSegLib.demo.phantom import PHANTOM_LABELS, make_phantom  # noqa: E402
from LungLiverSegLib.errors import BundleError, InputImageError, LungLiverSegError  # noqa: E402
from LungLiverSegLib.geometry import Image  # noqa: E402
from LungLiverSegLib.imageio.images import read_image, read_segmentation, write_image  # noqa: E402
from LungLiverSegLib.paths import USER_MODELS_ENV  # noqa: E402
from LungLiverSegLib.slicer_module.logic import ExportOutcome, SceneLogic, SegmentationOutcome  # noqa: E402
from LungLiverSegLib.slicer_module.mrml_bridge import labels_from_segmentation, volume_node_from_image  # noqa: E402
from LungLiverSegLib.slicer_module.process import JobRunningError  # noqa: E402
from LungLiverSegLib.slicer_module.scene import create_headless_scene  # noqa: E402
from scene_helpers import add_segment, assert_same_geometry, edit_segment, segment_id_named  # noqa: E402

pytestmark = pytest.mark.slicer

MODEL = "constant-lungs"
LUNGS = 1
CIP_CT = SHARED_DATA / "ct_lung_cip_64" / "ct-64.nrrd"


def constant_bundle() -> ModelBundle:
    return ModelBundle(
        name=MODEL,
        version="0.0.1",
        title="Constant test model",
        description="Says 'lungs' everywhere: zero weights and one winning bias.",
        license="Apache-2.0",
        modality="CT",
        dims=3,
        in_channels=1,
        architecture=ArchitectureSpec("UNet", {"channels": [4, 8], "strides": [2], "num_res_units": 0}),
        preprocessing=PreprocessingSpec(
            orientation="RAS", spacing=(4.0, 4.0, 4.0), intensity=IntensitySpec("window", -1000.0, 500.0)
        ),
        inference=InferenceSpec(patch_size=(32, 32, 32), overlap=0.25, batch_size=2),
        labels=PHANTOM_LABELS,
        postprocessing=PostprocessingSpec(),
        validation={"cpu_time_s": 2.0},
    )


def constant_state_dict(bundle: ModelBundle) -> dict[str, torch.Tensor]:
    network = build_network(bundle.architecture, bundle.dims, bundle.in_channels, bundle.out_channels)
    state = {key: torch.zeros_like(tensor) for key, tensor in network.state_dict().items()}
    final_bias = list(state)[-1]
    state[final_bias][LUNGS] = 5.0
    return state


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    bundle = constant_bundle()
    save_bundle(folder / f"{MODEL}-v0.0.1", bundle, constant_state_dict(bundle))
    return folder


@pytest.fixture(autouse=True)
def isolated(models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's models folder (inherited by the child) and its own temp folder, watched for debris."""
    monkeypatch.setenv(USER_MODELS_ENV, str(models_dir))
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return temp


@pytest.fixture
def scene():
    return create_headless_scene()


@pytest.fixture(scope="module")
def ct() -> Image:
    """The real CIP chest CT when ../shared/data has it, else a small generated phantom."""
    if CIP_CT.is_file():
        return read_image(CIP_CT)
    return make_phantom(size=(64, 64, 48), spacing=(4.0, 4.0, 4.0), noise_hu=0.0)[0]


@pytest.fixture
def ct_node(scene, ct: Image):
    return volume_node_from_image(scene, ct, "CT")


@pytest.fixture
def logic(scene) -> SceneLogic:
    return SceneLogic(scene)


def segment_names(segmentation_node) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetSegment(segment_id).GetName() for segment_id in segmentation.GetSegmentIDs()]


def nodes_of_class(scene, class_name: str) -> list:
    return [
        scene.GetNthNodeByClass(index, class_name)
        for index in range(scene.GetNumberOfNodesByClass(class_name))
    ]


def assert_no_debris(temp: Path) -> None:
    assert list(temp.iterdir()) == [], "temporary files were left behind"


@pytest.mark.slow
def test_segment_edit_export_story(  # noqa: PLR0913  (pytest fixtures)
    scene, ct: Image, ct_node, logic, isolated: Path, tmp_path: Path
):
    progress: list = []
    finished: list[SegmentationOutcome] = []
    outcome = logic.process(
        ct_node,
        MODEL,
        device="cpu",
        waitForCompletion=True,
        on_progress=progress.append,
        on_finished=finished.append,
    )
    assert outcome.succeeded, outcome.error
    assert outcome.warnings == (), "a CT like the training data gets no warning dialog"
    assert finished == [outcome] and not logic.is_running
    fractions = [update.fraction for update in progress]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert_no_debris(isolated)

    (segmentation_node,) = outcome.segmentation_nodes
    assert segmentation_node.GetName() == "CT segmentation"
    assert nodes_of_class(scene, "vtkMRMLSegmentationNode") == [segmentation_node]
    assert segment_names(segmentation_node) == ["lungs"]
    lungs_id = segment_id_named(segmentation_node, "lungs")
    lungs = segmentation_node.GetSegmentation().GetSegment(lungs_id)
    np.testing.assert_allclose(lungs.GetColor(), PHANTOM_LABELS[LUNGS].color)
    assert "^39607008^Lung~" in lungs.GetTerminology()
    proposal = logic.proposal_of(segmentation_node)
    assert proposal.model == {"name": MODEL, "version": "0.0.1"}
    assert_same_geometry(proposal.labels, ct)
    assert set(np.unique(proposal.labels.array)) == {LUNGS}
    labels, _ = labels_from_segmentation(segmentation_node, ct_node, PHANTOM_LABELS)
    np.testing.assert_array_equal(labels.array, proposal.labels.array)
    assert_same_geometry(labels, ct)

    # The annotator erases the top slab of "lungs" and paints a liver block.
    erased = np.zeros(ct.array.shape, bool)
    erased[-5:] = True
    edit_segment(segmentation_node, ct_node, lungs_id, erased, "ModificationModeRemove")
    liver = np.zeros(ct.array.shape, bool)
    liver[2:8, 10:30, 10:30] = True
    add_segment(segmentation_node, ct_node, "Liver", liver)
    expected = np.where(erased, 0, LUNGS)
    expected[liver] = 2  # later in the label map: wins the overlap with lungs
    unchanged = logic.proposal_of(segmentation_node)
    assert unchanged.model == proposal.model, "edits must not change the proposal"
    np.testing.assert_array_equal(unchanged.labels.array, proposal.labels.array)

    dataset = tmp_path / "dataset"
    record = logic.export_for_training(ct_node, segmentation_node, dataset, "cip_001", waitForCompletion=True)
    assert record.model == {"name": MODEL, "version": "0.0.1"}
    assert record.source["node"] == "CT"
    assert record.label_values == (1, 2)
    assert record.correction["lungs"]["changed_voxels"] == int(np.count_nonzero(erased | liver))
    assert record.correction["liver"]["dice"] == pytest.approx(0.0)
    assert 0.5 < record.correction["lungs"]["dice"] < 1.0
    assert record.correction[PHANTOM_LABELS[3].name]["changed_voxels"] == 0

    info = read_dataset(dataset)
    assert [case.case_id for case in info.cases] == ["cip_001"]
    assert json.loads((dataset / "dataset.json").read_text())["channel_names"] == {"0": "CT"}
    assert {value: label.name for value, label in info.label_map.items()} == {
        value: label.name for value, label in PHANTOM_LABELS.items()
    }
    approved = read_image(dataset / "labelsTr" / "cip_001.nii.gz")
    np.testing.assert_array_equal(approved.array, expected)
    assert_same_geometry(approved, ct)
    stored_proposal = read_image(dataset / "predictions" / "cip_001.nii.gz")
    np.testing.assert_array_equal(stored_proposal.array, proposal.labels.array)
    image = read_image(dataset / "imagesTr" / "cip_001_0000.nii.gz")
    np.testing.assert_array_equal(image.array, ct.array)
    assert_same_geometry(image, ct)

    with pytest.raises(DatasetExportError, match="already exists"):
        logic.export_for_training(ct_node, segmentation_node, dataset, "cip_001", waitForCompletion=True)
    logic.export_for_training(
        ct_node, segmentation_node, dataset, "cip_001", overwrite=True, waitForCompletion=True
    )
    assert len(read_dataset(dataset).cases) == 1


def fake_cli(folder: Path, body: str) -> str:
    """An executable standing in for Slicer's Python: runs ``body`` with the CLI's arguments."""
    script = folder / "fake_python"
    script.write_text(f"#!{sys.executable}\nimport sys\nargs = sys.argv[4:]\n{body}\n")
    script.chmod(0o755)
    return str(script)


WRITE_LABELS = """
import numpy as np
from LungLiverSegLib.imageio.images import read_image, write_image
image = read_image(args[0])
write_image(args[1], image.with_array(np.full(image.array.shape, {value}, np.uint8)))
"""


def test_failure_reports_the_cli_error_and_leaves_the_scene_alone(scene, ct_node, isolated: Path, tmp_path):
    python = fake_cli(tmp_path, "print('lunglivseg: error: not enough memory', file=sys.stderr); sys.exit(2)")
    node_count = scene.GetNumberOfNodes()
    outcome = SceneLogic(scene, python=python).process(ct_node, MODEL, waitForCompletion=True)
    assert outcome == SegmentationOutcome(error="lunglivseg: error: not enough memory")
    assert scene.GetNumberOfNodes() == node_count
    assert_no_debris(isolated)


def test_labels_the_model_does_not_know_add_no_node(scene, ct_node, isolated: Path, tmp_path):
    python = fake_cli(tmp_path, WRITE_LABELS.format(value=9))
    node_count = scene.GetNumberOfNodes()
    outcome = SceneLogic(scene, python=python).process(ct_node, MODEL, waitForCompletion=True)
    assert "[9]" in outcome.error and not outcome.segmentation_nodes
    assert scene.GetNumberOfNodes() == node_count
    assert_no_debris(isolated)


def test_rerun_into_a_node_keeps_the_users_segments_unless_replacing(scene, ct: Image, ct_node, tmp_path):
    logic = SceneLogic(scene, python=fake_cli(tmp_path, WRITE_LABELS.format(value=2)))
    mine = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
    mine.CreateDefaultDisplayNodes()
    add_segment(mine, ct_node, "my notes", ct.array > 0)
    add_segment(mine, ct_node, "liver", ct.array > 0)
    kept = logic.process(ct_node, MODEL, output_segmentation_node=mine, replace=False, waitForCompletion=True)
    assert kept.segmentation_nodes == (mine,)
    assert sorted(segment_names(mine)) == ["liver", "my notes"]
    logic.process(ct_node, MODEL, output_segmentation_node=mine, waitForCompletion=True)
    assert segment_names(mine) == ["liver"]
    assert logic.proposal_of(mine).model["name"] == MODEL


WARN = "print('lunglivseg: warning: the input is unlike the training data (CT?)', file=sys.stderr)\n"


def test_the_childs_warnings_reach_the_outcome(scene, ct_node, isolated: Path, tmp_path):
    """A warning line of the CLI (e.g. its out-of-distribution check) is for the user, not the log."""
    logic = SceneLogic(scene, python=fake_cli(tmp_path, WARN + WRITE_LABELS.format(value=LUNGS)))
    outcome = logic.process(ct_node, MODEL, waitForCompletion=True)
    assert outcome.succeeded, outcome.error
    assert outcome.warnings == ("the input is unlike the training data (CT?)",)
    logic.python = fake_cli(
        tmp_path, WARN + "print('lunglivseg: error: out of memory', file=sys.stderr); sys.exit(2)"
    )
    failed = logic.process(ct_node, MODEL, waitForCompletion=True)
    assert failed.error == "lunglivseg: error: out of memory"
    assert failed.warnings == outcome.warnings


@pytest.mark.slow
def test_the_clis_warning_about_an_input_unlike_ct_reaches_the_outcome(scene, ct: Image, logic):
    """The real CLI's input check: no air below -500 HU means this is no CT in Hounsfield units."""
    not_hounsfield = ct.with_array((np.clip(ct.array, -1000, 3000) + 1100).astype(np.int16))
    volume_node = volume_node_from_image(scene, not_hounsfield, "not HU")
    outcome = logic.process(volume_node, MODEL, device="cpu", waitForCompletion=True)
    assert outcome.succeeded, outcome.error
    (warning,) = outcome.warnings
    assert "do not look like CT in Hounsfield units" in warning


def test_the_childs_warnings_reach_a_training_outcome(scene, tmp_path):
    fail = "print('lunglivseg: error: the dataset has no cases', file=sys.stderr); sys.exit(2)"
    logic = SceneLogic(scene, python=fake_cli(tmp_path, WARN + fail))
    request = TrainRequest(tmp_path / "dataset", tmp_path / "run", config="lungs-ct-3d")
    outcome = logic.train(request, waitForCompletion=True)
    assert outcome.error == "lunglivseg: error: the dataset has no cases"
    assert outcome.warnings == ("the input is unlike the training data (CT?)",)


def save_and_reload(scene, folder: Path):
    """The scene saved as a ``.mrb`` the way Slicer does it (its application logic writes every
    storable node and the MRML file, then zips them), and opened into a new scene."""
    bundle_folder, unpacked = folder / "bundle", folder / "unpacked"
    bundle_folder.mkdir(parents=True)
    unpacked.mkdir()
    application_logic = scene.module_logics["Application"]
    assert application_logic.SaveSceneToSlicerDataBundleDirectory(str(bundle_folder), None)
    assert application_logic.Zip(str(folder / "scene.mrb"), str(bundle_folder))
    reloaded = create_headless_scene()
    assert reloaded.module_logics["Application"].OpenSlicerDataBundle(
        str(folder / "scene.mrb"), str(unpacked)
    )
    return reloaded


def segmented_then_corrected(
    scene, ct: Image, ct_node, tmp_path: Path, slices: int
) -> tuple[SceneLogic, slicer.vtkMRMLSegmentationNode, np.ndarray]:
    """A proposal of all "lungs" from a stand-in CLI, then the top ``slices`` erased by hand."""
    logic = SceneLogic(scene, python=fake_cli(tmp_path, WRITE_LABELS.format(value=LUNGS)))
    (segmentation_node,) = logic.process(ct_node, MODEL, waitForCompletion=True).segmentation_nodes
    erased = np.zeros(ct.array.shape, bool)
    erased[-slices:] = True
    lungs = segment_id_named(segmentation_node, "lungs")
    edit_segment(segmentation_node, ct_node, lungs, erased, "ModificationModeRemove")
    return logic, segmentation_node, erased


def test_the_proposal_survives_saving_and_reloading_the_scene(scene, ct: Image, ct_node, tmp_path):
    *_, erased = segmented_then_corrected(scene, ct, ct_node, tmp_path, slices=5)

    reloaded = save_and_reload(scene, tmp_path / "saved")
    volume_node = reloaded.GetFirstNodeByName("CT")
    reloaded_segmentation = reloaded.GetFirstNodeByName("CT segmentation")
    proposal = SceneLogic(reloaded).proposal_of(reloaded_segmentation)
    assert proposal.model == {"name": MODEL, "version": "0.0.1"}
    assert proposal.volume_node_id == volume_node.GetID()
    assert_same_geometry(proposal.labels, ct)
    assert set(np.unique(proposal.labels.array)) == {LUNGS}

    record = SceneLogic(reloaded).export_for_training(
        volume_node, reloaded_segmentation, tmp_path / "dataset", "c1", waitForCompletion=True
    )
    assert record.model == {"name": MODEL, "version": "0.0.1"}
    assert record.correction["lungs"]["changed_voxels"] == int(np.count_nonzero(erased))
    predictions = read_image(tmp_path / "dataset" / "predictions" / "c1.nii.gz")
    np.testing.assert_array_equal(predictions.array, np.full(ct.array.shape, LUNGS))


def test_export_without_a_proposal_says_the_record_has_none(scene, ct: Image, ct_node, logic, tmp_path):
    """A segmentation painted by hand (or made before proposals were kept): no model, no
    correction metrics, no predictions/ (what the panel tells the user)."""
    hand_made = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "by hand")
    hand_made.CreateDefaultDisplayNodes()
    add_segment(hand_made, ct_node, "lungs", ct.array > 0)
    assert logic.proposal_of(hand_made) is None
    record = logic.export_for_training(
        ct_node, hand_made, tmp_path / "dataset", "c1", model_name=MODEL, waitForCompletion=True
    )
    assert record.model is None and record.correction is None
    assert not (tmp_path / "dataset" / "predictions").exists()


def test_export_runs_off_the_callers_thread_and_delivers_its_outcome_through_poll(
    scene, ct: Image, ct_node, tmp_path
):
    """The files and metrics are written in a worker thread (seconds on a full CT: the GUI must not
    freeze); the outcome comes once, from ``poll()`` on the caller's thread, as a run's does. An
    export error arrives in the outcome; the blocking mode still raises it."""
    logic, segmentation_node, erased = segmented_then_corrected(scene, ct, ct_node, tmp_path, slices=3)
    dataset = tmp_path / "dataset"
    delivered: list[tuple[int, ExportOutcome]] = []

    def on_finished(outcome: ExportOutcome) -> None:
        delivered.append((threading.get_ident(), outcome))

    assert (
        logic.export_for_training(ct_node, segmentation_node, dataset, "c1", on_finished=on_finished) is None
    )
    assert delivered == [] and logic.is_exporting
    with pytest.raises(JobRunningError, match="an export is already running"):
        logic.export_for_training(ct_node, segmentation_node, dataset, "c2", on_finished=on_finished)
    while logic.poll():
        time.sleep(0.01)
    assert not logic.is_exporting
    assert not logic.poll() and len(delivered) == 1
    thread, outcome = delivered[0]
    assert thread == threading.get_ident(), "on_finished must run on the caller's thread"
    assert outcome.succeeded and outcome.record == read_dataset(dataset).cases[0]
    assert outcome.record.correction["lungs"]["changed_voxels"] == int(np.count_nonzero(erased))
    approved = read_image(dataset / "labelsTr" / "c1.nii.gz")
    np.testing.assert_array_equal(approved.array, np.where(erased, 0, LUNGS))

    logic.export_for_training(ct_node, segmentation_node, dataset, "c1", on_finished=on_finished)
    while logic.poll():
        time.sleep(0.01)
    _, failed = delivered[1]
    assert failed.record is None and "already exists" in failed.error
    with pytest.raises(DatasetExportError, match="already exists"):
        logic.export_for_training(ct_node, segmentation_node, dataset, "c1", waitForCompletion=True)
    assert len(delivered) == 2 and [case.case_id for case in read_dataset(dataset).cases] == ["c1"]


def test_cancel_right_after_start_stops_the_child(scene, ct_node, isolated: Path, tmp_path):
    logic = SceneLogic(scene, python=fake_cli(tmp_path, "import time; time.sleep(60)"))
    finished: list[SegmentationOutcome] = []
    node_count = scene.GetNumberOfNodes()
    assert logic.process(ct_node, MODEL, on_finished=finished.append) is None
    assert logic.is_running
    with pytest.raises(LungLiverSegError, match="already running"):
        logic.process(ct_node, MODEL)
    pid = logic.runner.pid
    logic.cancel()
    logic.runner.wait(15)
    assert finished == [SegmentationOutcome(cancelled=True)]
    assert not process_exists(pid)
    assert scene.GetNumberOfNodes() == node_count
    assert_no_debris(isolated)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_unknown_model_is_refused_before_anything_starts(scene, ct_node, logic, isolated: Path):
    with pytest.raises(BundleError, match="unknown model 'no-such-model'"):
        logic.process(ct_node, "no-such-model")
    assert not logic.is_running
    assert_no_debris(isolated)


@pytest.mark.slow
def test_cancel_mid_run_leaves_no_process_and_no_partial_node(scene, ct_node, logic, isolated: Path):
    node_count = scene.GetNumberOfNodes()
    progress: list = []

    def cancel_on_first_update(update) -> None:
        progress.append(update)
        logic.cancel()

    outcome = logic.process(ct_node, MODEL, waitForCompletion=True, on_progress=cancel_on_first_update)
    assert outcome.cancelled and not outcome.segmentation_nodes and outcome.error is None
    assert progress, "the run was cancelled before it reported progress"
    assert not process_exists(logic.runner.pid)
    assert scene.GetNumberOfNodes() == node_count
    assert_no_debris(isolated)


@pytest.mark.slow
def test_cancel_through_a_launcher_reaches_the_clis_cooperative_stop(
    scene, ct_node, isolated: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """Slicer runs the CLI through ``PythonSlicer``, a launcher that forwards no signal and dies
    at SIGTERM; the CLI behind it must still end its own way (and say so), not by SIGKILL."""
    launcher = tmp_path / "PythonSlicer"
    launcher.write_text(f'#!/bin/sh\n"{sys.executable}" "$@"\n')
    launcher.chmod(0o755)
    logic = SceneLogic(scene, python=str(launcher))
    node_count = scene.GetNumberOfNodes()
    caplog.set_level(logging.INFO, logger="LungLiverSegLib.slicer_module.process")
    outcome = logic.process(
        ct_node, MODEL, device="cpu", waitForCompletion=True, on_progress=lambda update: logic.cancel()
    )
    assert outcome.cancelled and outcome.error is None
    assert "lunglivseg: cancelled; nothing was written" in caplog.text
    assert scene.GetNumberOfNodes() == node_count
    assert_no_debris(isolated)


@pytest.mark.slow
def test_batch_runs_one_process_for_volume_nodes_and_files(scene, ct: Image, ct_node, logic, tmp_path):
    second = volume_node_from_image(scene, ct, "CT")  # same name: staged under a unique one
    image_file = write_image(tmp_path / "from disk.nii.gz", ct)
    progress: list = []
    outcome = logic.process_batch(
        [ct_node, second, image_file],
        MODEL,
        output_folder=tmp_path / "out",
        waitForCompletion=True,
        on_progress=progress.append,
    )
    assert outcome.succeeded, outcome.error
    assert {update.case.split()[0] for update in progress} == {"1/3", "2/3", "3/3"}
    assert [node.GetName() for node in outcome.segmentation_nodes] == ["CT segmentation"] * 2
    assert outcome.output_files == (tmp_path / "out" / "from_disk.seg.nrrd",)
    labels, label_map = read_segmentation(outcome.output_files[0])
    assert label_map[LUNGS].name == "lungs"
    assert_same_geometry(labels, ct)
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        "CT.seg.nrrd",
        "CT_2.seg.nrrd",
        "from_disk.seg.nrrd",
    ]


def test_batch_with_files_needs_an_output_folder(logic, tmp_path):
    with pytest.raises(InputImageError, match="output folder"):
        logic.process_batch([tmp_path / "ct.nii.gz"], MODEL)


@pytest.mark.slow
def test_bundled_demo_model_finds_the_phantom_organs(scene, logic):
    """With the extension's trained demo model (when Training has shipped it): real segmentation."""
    if not any(entry.name == "phantom-ct-3d" for entry in list_models()):
        pytest.skip("the bundled demo model phantom-ct-3d is not in Resources/Models yet")
    ct, truth, _ = make_phantom(seed=7)
    volume_node = volume_node_from_image(scene, ct, "phantom")
    outcome = logic.process(volume_node, "phantom-ct-3d", waitForCompletion=True)
    assert outcome.succeeded, outcome.error
    labels = logic.proposal_of(outcome.segmentation_nodes[0]).labels.array
    for value in (1, 2):
        found, expected = labels == value, truth.array == value
        assert 2 * np.count_nonzero(found & expected) / (found.sum() + expected.sum()) > 0.8


BUNDLED_CASES = {
    # model: (image, reference labels, {model label: reference values}, Dice above), all in ../shared/data
    "lungs-cxr-2d": (  # CHNCXR_0021_0 is a validation image of lungs-cxr-2d v0.1.0
        "cxr_lung_shenzhen/images/CHNCXR_0021_0.png",
        "cxr_lung_shenzhen/masks_lr/CHNCXR_0021_0.png",
        {1: (1,), 2: (2,)},
        0.9,
    ),
    "lungs-ct-3d": (  # Case_009 is a validation case of lungs-ct-3d
        "ct_lung_lctsc_2mm/Case_009_ct.nii.gz",
        "ct_lung_lctsc_2mm/Case_009_lungs.nii.gz",
        {1: (1,)},
        0.96,
    ),
    "liver-ct-2d": (  # a whole 3D CT, slice by slice; reference: TotalSegmentator's liver (5)
        "ct_abdomen_totalseg_example/example_ct.nii.gz",
        "ct_abdomen_totalseg_example/example_seg_fast_force_split.nii.gz",
        {1: (5,)},
        0.85,
    ),
}


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("model", list(BUNDLED_CASES))
def test_bundled_models_through_the_module(scene, logic, model, tmp_path: Path):
    """Each bundled model, run by the module on a node loaded as Slicer loads the file (a 2D
    X-ray is a one-slice volume), returns named segments on the input's exact geometry; its
    export is a dataset whose channel name is the model's modality (nnU-Net's normalisation)."""
    image_path, truth_path, values, minimum = BUNDLED_CASES[model]
    if not (SHARED_DATA / image_path).is_file():
        pytest.skip(f"real data not found at {SHARED_DATA / image_path}")
    image = read_image(SHARED_DATA / image_path)
    volume_node = volume_node_from_image(scene, image, Path(image_path).name.split(".")[0])
    outcome = logic.process(volume_node, model, waitForCompletion=True)
    assert outcome.succeeded, outcome.error
    segmentation = outcome.segmentation_nodes[0].GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    bundle_names = next(entry.segments for entry in list_models() if entry.name == model)
    assert names == list(bundle_names)
    labels = logic.proposal_of(outcome.segmentation_nodes[0]).labels
    assert labels.array.shape[-2:] == image.array.shape[-2:]
    if image.ndim == 3:
        assert labels.array.shape == image.array.shape
        np.testing.assert_allclose(labels.spacing, image.spacing, atol=1e-5)
        np.testing.assert_allclose(labels.origin, image.origin, atol=1e-4)
        np.testing.assert_allclose(labels.direction, image.direction, atol=1e-6)
    truth = read_image(SHARED_DATA / truth_path).array
    found_array = labels.array.reshape(truth.shape)
    for value, reference in values.items():
        found, expected = found_array == value, np.isin(truth, reference)
        assert 2 * np.count_nonzero(found & expected) / (found.sum() + expected.sum()) > minimum
    dataset = tmp_path / "dataset"
    logic.export_for_training(
        volume_node, outcome.segmentation_nodes[0], dataset, "case_1", waitForCompletion=True
    )
    description = json.loads((dataset / "dataset.json").read_text())
    assert description["channel_names"] == {"0": "CXR" if model == "lungs-cxr-2d" else "CT"}
