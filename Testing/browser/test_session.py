"""The browser app's work without a browser: ``AppSession`` on a real headless MRML scene.

Segmentation and training run in a real child process, but the child is a stand-in for Slicer's
Python (as in ``slicer_module/test_logic.py``) whose output is known without trusting any model:
it writes fixed labels, or prints fixed training lines. Exports go through the real exporter.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="needs slicer-core (pip install 'slicer-core==5.11.*')")

from factories import make_bundle, save_tiny_bundle, write_dicom_series  # noqa: E402
from LungLiverSegLib.browser import session as session_module  # noqa: E402
from LungLiverSegLib.browser.security import AccessError  # noqa: E402
from LungLiverSegLib.browser.session import ERROR, INFO, WARNING, AppSession  # noqa: E402
from LungLiverSegLib.browser.settings import Settings  # noqa: E402
from LungLiverSegLib.dataset.export import read_dataset  # noqa: E402
from LungLiverSegLib.geometry import Image  # noqa: E402
from LungLiverSegLib.imageio import read_image, write_image  # noqa: E402
from LungLiverSegLib.paths import BUNDLED_MODELS_ENV, USER_MODELS_ENV  # noqa: E402
from LungLiverSegLib.slicer_module.logic import SceneLogic  # noqa: E402
from LungLiverSegLib.slicer_module.scene import create_headless_scene  # noqa: E402
from scene_helpers import edit_segment, segment_id_named  # noqa: E402

pytestmark = pytest.mark.slicer

MODEL = "tiny-lungs@1.0.0"  # factories.make_bundle: 1 "right lung", 2 "left lung"
SHAPE = (6, 8, 10)  # [z, y, x]
SPACING = (1.5, 2.0, 2.5)  # x, y, z in mm: 7.5 mm^3 = 0.0075 mL a voxel
VOXEL_ML = 1.5 * 2.0 * 2.5 / 1000
RIGHT_VOXELS = 2 * 8 * 10  # the stand-in's labels: slices z 0-1 right lung,
LEFT_VOXELS = 3 * 4 * 10  # z 3-5, y 0-3 left lung
WRITE_LABELS = """
import numpy as np
from LungLiverSegLib.imageio import read_image, write_image
image = read_image(args[0])
labels = np.zeros(image.array.shape, np.uint8)
labels[0:2] = 1
labels[3:6, 0:4] = 2
write_image(args[1], image.with_array(labels))
"""
STUDY_UID = "1.2.826.0.1.3680043.2.1125.8"


def fake_cli(folder: Path, body: str) -> str:
    """An executable standing in for Slicer's Python: runs ``body`` with the CLI's arguments
    (``segment INPUT OUTPUT ...`` or ``train ...``: ``args`` starts after the command)."""
    script = folder / "fake_python"
    script.write_text(f"#!{sys.executable}\nimport sys\nargs = sys.argv[4:]\n{body}\n")
    script.chmod(0o755)
    return str(script)


def expected_labels() -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint8)
    labels[0:2] = 1
    labels[3:6, 0:4] = 2
    return labels


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    save_tiny_bundle(folder / "tiny-lungs-v1.0.0")
    return folder


@pytest.fixture(autouse=True)
def isolated(models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's own user models (a copy: training installs into it), no bundled models, and its
    own temporary folder, watched for debris."""
    user_models = tmp_path / "user-models"
    user_models.mkdir()
    for bundle in models_dir.iterdir():
        (user_models / bundle.name).symlink_to(bundle, target_is_directory=True)
    monkeypatch.setenv(USER_MODELS_ENV, str(user_models))
    monkeypatch.setenv(BUNDLED_MODELS_ENV, str(tmp_path / "no-bundled-models"))
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return temp


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    data.mkdir()
    return Settings(data=data, work=tmp_path / "work", max_upload_mb=1.0, device="cpu")


@pytest.fixture
def ct() -> Image:
    rng = np.random.default_rng(3)
    array = rng.integers(-1000, 400, SHAPE).astype(np.int16)
    return Image(array, SPACING, (-10.0, 20.0, 30.0))


def new_session(settings: Settings, python: str | None = None) -> AppSession:
    scene = create_headless_scene()
    return AppSession(scene, settings, SceneLogic(scene, python=python or sys.executable))


def wait(session: AppSession, timeout_s: float = 60.0) -> None:
    """Poll as the app's timer does, until the job's outcome was delivered."""
    deadline = time.monotonic() + timeout_s
    while session.poll():
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.02)


def wait_for(session: AppSession, condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true"
        session.poll()
        time.sleep(0.02)


def assert_one_line_error(session: AppSession, *parts: str) -> None:
    message = session.page.message
    assert session.page.message_kind == ERROR, message
    assert message and "\n" not in message and "Traceback" not in message
    for part in parts:
        assert part in message, message


def files_under(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if path.is_file()}


def assert_volume_like(session: AppSession, image: Image) -> None:
    node = session.volume_node
    assert node is not None and session.scene.IsNodePresent(node)
    assert node.GetImageData().GetDimensions() == image.array.shape[::-1]
    np.testing.assert_allclose(node.GetSpacing(), image.spacing)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), image.array)


# --- opening images ------------------------------------------------------------------------------------


def test_a_data_file_opens_as_a_volume_with_its_grid(settings: Settings, ct: Image):
    (settings.data / "cases").mkdir()
    write_image(settings.data / "cases" / "ct.nii.gz", ct)
    session = new_session(settings)
    shown: list = []
    session.on_volume = shown.append
    session.open_data_file("cases/ct.nii.gz")
    assert_volume_like(session, ct)
    assert session.volume_node.GetName() == "ct"
    assert shown == [session.volume_node]
    assert (session.page.message, session.page.message_kind) == ("Opened ct: 10 x 8 x 6 voxels", INFO)
    assert session.segmentation_node is None and session.page.segments == []


def test_opening_a_second_image_replaces_the_first(settings: Settings, ct: Image):
    write_image(settings.data / "a.nrrd", ct)
    small = Image(np.zeros((2, 3, 4), np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    write_image(settings.data / "b.nii.gz", small)
    session = new_session(settings)
    session.open_data_file("a.nrrd")
    session.open_data_file("b.nii.gz")
    assert_volume_like(session, small)
    assert session.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 1


@pytest.mark.parametrize(
    ("relative", "says"),
    [
        ("../x", "not a path inside the data folder"),
        ("/etc/passwd", "not a path inside the data folder"),
        ("missing.nii.gz", "does not exist"),
        ("ct\x00.nii.gz", "not a path inside the data folder"),
    ],
)
def test_a_bad_data_path_is_a_one_line_error(settings: Settings, relative: str, says: str):
    session = new_session(settings)
    session.open_data_file(relative)
    assert_one_line_error(session, says)
    assert session.volume_node is None


def test_a_data_file_that_is_no_image_is_a_one_line_error(settings: Settings):
    (settings.data / "broken.nii.gz").write_bytes(b"this is no NIfTI file")
    session = new_session(settings)
    session.open_data_file("broken.nii.gz")
    assert_one_line_error(session)
    assert session.volume_node is None


def assert_dicom_volume(session: AppSession, slices: int) -> None:
    node = session.volume_node
    assert node is not None
    assert node.GetImageData().GetDimensions() == (5, 4, slices)
    np.testing.assert_allclose(node.GetSpacing(), (0.8, 0.8, 2.5), atol=1e-6)
    voxels = slicer.util.arrayFromVolume(node)
    assert sorted(np.unique(voxels[k]).item() for k in range(slices)) == [
        k * 10 - 1000 for k in range(slices)
    ]


def test_a_dicom_series_of_the_data_folder_opens_by_its_uid(settings: Settings):
    write_dicom_series(settings.data / "study", f"{STUDY_UID}.31", 3)
    write_dicom_series(settings.data / "study", f"{STUDY_UID}.32", 2)
    session = new_session(settings)
    session.open_data_file("study", f"{STUDY_UID}.32")
    assert_dicom_volume(session, 2)
    session.open_data_file("study", f"{STUDY_UID}.31")
    assert_dicom_volume(session, 3)


# --- uploads -------------------------------------------------------------------------------------------


def image_bytes(image: Image, folder: Path, name: str = "ct.nii.gz") -> bytes:
    folder.mkdir(parents=True, exist_ok=True)
    return write_image(folder / name, image).read_bytes()


def test_an_uploaded_image_opens_and_leaves_no_file(settings: Settings, ct: Image, tmp_path: Path):
    content = image_bytes(ct, tmp_path / "client")
    session = new_session(settings)
    session.open_upload([{"name": "ct.nii.gz", "content": content}])
    assert_volume_like(session, ct)
    assert session.volume_node.GetName() == "ct"
    assert session.page.message_kind == INFO and session.page.message.startswith("Opened ct:")
    assert list((settings.work / "uploads").iterdir()) == []


def test_an_upload_in_chunks_is_joined(settings: Settings, ct: Image, tmp_path: Path):
    content = image_bytes(ct, tmp_path / "client", "scan.nrrd")
    session = new_session(settings)
    session.open_upload([{"name": "scan.nrrd", "content": [content[:100], content[100:]]}])
    assert_volume_like(session, ct)


def test_an_uploaded_dicom_series_opens_as_one_volume(settings: Settings, tmp_path: Path):
    files = write_dicom_series(tmp_path / "client", f"{STUDY_UID}.41", 3)
    session = new_session(settings)
    session.open_upload([{"name": f"series/{path.name}", "content": path.read_bytes()} for path in files])
    assert_dicom_volume(session, 3)
    assert session.page.message == "Opened DICOM series: 5 x 4 x 3 voxels"
    assert list((settings.work / "uploads").iterdir()) == []


@pytest.mark.parametrize(
    "files",
    [
        [{"name": "notes.txt", "content": b"remember the milk"}],
        [{"name": "ct.nii.gz", "content": b"\x1f\x8b garbage, not a gzip stream"}],
        [{"name": "ct.nrrd", "content": b"NRRD0004\ntype: short\ndimension: 3\n"}],
        [{"name": "..", "content": b"x"}],
        [{"name": "ct.nii.gz"}],
        [{"name": "ct.nii.gz", "content": "text, not bytes"}],
        [{"name": "a.dcm", "content": b"x"}, {"name": "dir/a.dcm", "content": b"y"}],
        [],
    ],
)
def test_an_upload_that_is_no_image_is_a_one_line_error(settings: Settings, files: list):
    session = new_session(settings)
    session.open_upload(files)
    assert_one_line_error(session)
    assert session.volume_node is None
    uploads = settings.work / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []


def test_an_upload_over_the_limit_is_refused_before_anything_is_written(settings: Settings):
    session = new_session(replace(settings, max_upload_mb=0.001))  # 1000 bytes
    session.open_upload(
        [{"name": "a.nii.gz", "content": b"x" * 600}, {"name": "b.nii.gz", "content": b"y" * 401}]
    )
    assert_one_line_error(session, "over the app's limit", "--max-upload-mb")
    assert not (settings.work / "uploads").exists()
    session.open_upload_refused(2_000_000)
    assert_one_line_error(session, "the upload is 2 MB, over the app's limit of 0 MB")
    session.open_upload_refused(1000)
    assert session.page.message_kind == ERROR, "a size within the limit changes nothing"


def test_an_upload_named_as_a_path_is_written_only_inside_the_uploads_folder(
    settings: Settings, ct: Image, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    content = image_bytes(ct, tmp_path / "client")
    before = files_under(tmp_path)
    written: list[Path] = []
    real_read_image = session_module.read_image

    def spy(path: Path, series_uid: str | None = None) -> Image:
        written.extend(files_under(Path(path).parent))
        return real_read_image(path, series_uid)

    monkeypatch.setattr(session_module, "read_image", spy)
    session = new_session(settings)
    session.open_upload([{"name": "../../evil.nii.gz", "content": content}])
    assert_volume_like(session, ct)
    (upload,) = written
    assert upload.name == "evil.nii.gz"
    assert upload.parent.parent == settings.work / "uploads"
    assert files_under(tmp_path) == before, "nothing written or left anywhere else"


# --- segmentation --------------------------------------------------------------------------------------


def segmented(settings: Settings, ct: Image, tmp_path: Path) -> AppSession:
    write_image(settings.data / "ct.nii.gz", ct)
    session = new_session(settings, fake_cli(tmp_path, WRITE_LABELS))
    session.refresh_models(select=MODEL)
    session.open_data_file("ct.nii.gz")
    session.segment()
    assert session.page.job == "segment" and session.page.message == f"Segmenting with {MODEL}"
    wait(session)
    return session


def test_segmenting_lists_the_segments_with_their_voxels(
    settings: Settings, ct: Image, tmp_path: Path, isolated: Path
):
    session = segmented(settings, ct, tmp_path)
    assert session.page.segments == [
        {
            "name": "right lung",
            "voxels": RIGHT_VOXELS,
            "size": pytest.approx(RIGHT_VOXELS * VOXEL_ML),
            "unit": "mL",
        },
        {
            "name": "left lung",
            "voxels": LEFT_VOXELS,
            "size": pytest.approx(LEFT_VOXELS * VOXEL_ML),
            "unit": "mL",
        },
    ]
    assert session.page.message == f"Segmented with {MODEL}: right lung 1.2 mL, left lung 0.9 mL"
    assert session.page.message_kind == INFO
    assert (session.page.job, session.page.progress, session.page.progress_text) == ("", 0.0, "")
    node = session.segmentation_node
    assert node is not None and session.scene.IsNodePresent(node)
    assert session.logic.proposal_of(node).model == {"name": "tiny-lungs", "version": "1.0.0"}
    assert list(isolated.iterdir()) == [], "temporary files were left behind"


def test_the_segmentation_is_shown_through_the_callback(settings: Settings, ct: Image, tmp_path: Path):
    write_image(settings.data / "ct.nii.gz", ct)
    session = new_session(settings, fake_cli(tmp_path, WRITE_LABELS))
    session.refresh_models(select=MODEL)
    shown: list = []
    session.on_segmentation = lambda segmentation, volume: shown.append((segmentation, volume))
    session.open_data_file("ct.nii.gz")
    session.segment()
    wait(session)
    assert shown == [(session.segmentation_node, session.volume_node)]


def test_segmenting_without_an_image_is_a_one_line_error(settings: Settings):
    session = new_session(settings)
    session.refresh_models(select=MODEL)
    session.segment()
    assert_one_line_error(session, "open an image first")
    assert session.page.job == "" and not session.logic.is_running


def test_a_failing_child_is_a_one_line_error_without_its_prefix(
    settings: Settings, ct: Image, tmp_path: Path
):
    write_image(settings.data / "ct.nii.gz", ct)
    fail = "print('lunglivseg: error: not enough memory', file=sys.stderr); sys.exit(2)"
    session = new_session(settings, fake_cli(tmp_path, fail))
    session.refresh_models(select=MODEL)
    session.open_data_file("ct.nii.gz")
    session.segment()
    wait(session)
    assert (session.page.message, session.page.message_kind) == ("not enough memory", ERROR)
    assert session.segmentation_node is None and session.page.segments == []


def test_opening_while_a_job_runs_is_refused(settings: Settings, ct: Image, tmp_path: Path):
    write_image(settings.data / "ct.nii.gz", ct)
    session = new_session(settings, fake_cli(tmp_path, "import time; time.sleep(60)"))
    session.refresh_models(select=MODEL)
    session.open_data_file("ct.nii.gz")
    volume = session.volume_node
    session.segment()
    session.open_data_file("ct.nii.gz")
    assert_one_line_error(session, "cancel it or wait")
    assert session.volume_node is volume
    session.segment()
    assert_one_line_error(session, "already running")
    session.cancel()
    wait(session)
    assert (session.page.message, session.page.message_kind) == ("Segmentation cancelled", WARNING)


# --- export --------------------------------------------------------------------------------------------


def test_export_after_a_correction_writes_the_case_and_the_correction_table(
    settings: Settings, ct: Image, tmp_path: Path
):
    session = segmented(settings, ct, tmp_path)
    erased = np.zeros(SHAPE, bool)
    erased[0] = True  # half of the right lung: 80 of its 160 voxels
    right = segment_id_named(session.segmentation_node, "right lung")
    edit_segment(session.segmentation_node, session.volume_node, right, erased, "ModificationModeRemove")

    session.export("lungs", "case 1")
    assert session.page.job == "export"
    wait(session)
    dataset = settings.work / "datasets" / "lungs"
    assert json.loads((dataset / "dataset.json").read_text())["channel_names"] == {"0": "CT"}
    assert [case.case_id for case in read_dataset(dataset).cases] == ["case_1"]
    approved = np.where(erased, 0, expected_labels())
    np.testing.assert_array_equal(read_image(dataset / "labelsTr" / "case_1.nii.gz").array, approved)
    np.testing.assert_array_equal(
        read_image(dataset / "predictions" / "case_1.nii.gz").array, expected_labels()
    )

    rows = {row["segment"]: row for row in session.page.correction}
    assert set(rows) == {"right lung", "left lung"}
    assert rows["right lung"]["dice"] == pytest.approx(2 * 80 / (160 + 80))
    assert rows["right lung"]["changed_ml"] == pytest.approx(80 * VOXEL_ML)
    assert rows["left lung"]["dice"] == pytest.approx(1.0)
    assert rows["left lung"]["changed_ml"] == pytest.approx(0.0)
    assert session.page.message_kind == INFO
    assert session.page.message.startswith("Exported case case_1 (correction: ")
    assert "right lung: Dice 0.667, 0.6 mL changed" in session.page.message


def test_exporting_the_same_case_twice_is_a_one_line_error(settings: Settings, ct: Image, tmp_path: Path):
    session = segmented(settings, ct, tmp_path)
    session.export("lungs", "c1")
    wait(session)
    session.export("lungs", "c1")
    wait(session)
    assert_one_line_error(session, "already exists")
    assert len(read_dataset(settings.work / "datasets" / "lungs").cases) == 1


def test_export_without_a_segmentation_is_a_one_line_error(settings: Settings, ct: Image):
    write_image(settings.data / "ct.nii.gz", ct)
    session = new_session(settings)
    session.export("lungs", "c1")
    assert_one_line_error(session, "segment the image")
    session.open_data_file("ct.nii.gz")
    session.export("lungs", "c1")
    assert_one_line_error(session, "segment the image")
    assert not (settings.work / "datasets").exists()


def test_datasets_are_named_folders_of_the_work_folder(settings: Settings):
    session = new_session(settings)
    assert session.dataset_folder("lungs") == settings.work / "datasets" / "lungs"
    assert session.dataset_folder("my-set_2.v1") == settings.work / "datasets" / "my-set_2.v1"


@pytest.mark.parametrize(
    "name", ["a/b", "..", ".", "../lungs", "lungs/..", "/tmp/x", "a\\b", "", "a b", "C:x"]
)
def test_a_dataset_name_that_is_a_path_is_refused(settings: Settings, name: str):
    session = new_session(settings)
    with pytest.raises(AccessError):
        session.dataset_folder(name)


def test_export_into_a_dataset_named_as_a_path_writes_nothing(settings: Settings, ct: Image, tmp_path: Path):
    session = segmented(settings, ct, tmp_path)
    before = files_under(tmp_path)
    session.export("../../escape", "c1")
    assert_one_line_error(session, "a dataset name is")
    assert not session.logic.is_exporting
    assert files_under(tmp_path) == before


# --- training ------------------------------------------------------------------------------------------


def make_dataset(settings: Settings, name: str = "lungs") -> Path:
    """A dataset folder as the session checks it (the stand-in child never reads it)."""
    folder = settings.work / "datasets" / name
    folder.mkdir(parents=True)
    (folder / "dataset.json").write_text("{}")
    return folder


def training_lines(go_file: Path, bundle: Path) -> str:
    """Two epochs of steps and one validation, then (once ``go_file`` exists) the exported bundle."""
    lines = [
        {"event": "step", "epoch": 1, "epochs": 2, "step": 1, "steps": 1, "loss": 0.8, "fraction": 0.25},
        {"event": "validation", "epoch": 1, "dice": {"right lung": 0.5}, "mean_dice": 0.5},
        {
            "event": "step",
            "epoch": 2,
            "epochs": 2,
            "step": 1,
            "steps": 1,
            "loss": 0.4,
            "fraction": 0.75,
            "eta_s": 5,
        },
    ]
    done = {"event": "done", "bundle": str(bundle), "best_epoch": 2, "best_mean_dice": 0.5}
    return (
        "import json, os, time\n"
        f"for line in {lines!r}:\n    print(json.dumps(line), flush=True)\n"
        f"for _ in range(3000):  # at most a minute: a failed test never touches the file\n"
        f"    if os.path.exists({str(go_file)!r}):\n        break\n    time.sleep(0.02)\n"
        f"print(json.dumps({done!r}), flush=True)\n"
    )


def test_training_draws_its_curve_and_installs_the_model(settings: Settings, tmp_path: Path):
    make_dataset(settings)
    bundle = save_tiny_bundle(
        tmp_path / "run" / "tiny-trained-v0.1.0", make_bundle(name="tiny-trained", version="0.1.0")
    )
    go = tmp_path / "go"
    session = new_session(settings, fake_cli(tmp_path, training_lines(go, bundle)))
    assert "lungs-ct-3d" in session.page.presets
    session.train("lungs", "lungs-ct-3d", epochs=2)
    assert (session.page.job, session.page.message) == ("train", "Training lungs-ct-3d on lungs")

    wait_for(session, lambda: session.page.progress == 0.75)
    assert session.page.progress_text == "epoch 2/2, loss 0.40, val Dice 0.50 75%, about 5 s left"
    assert session.curve.loss == {1: 0.8, 2: 0.4}
    assert session.curve.dice == {1: 0.5}, "epoch 1's validation is drawn at epoch 1"
    assert session.page.curve_svg == session.curve.svg()
    assert 'points="8.0,8.0 292.0,56.0"' in session.page.curve_svg, "loss: 0.8 at the top, 0.4 half way"
    assert 'points="8.0,56.0"' in session.page.curve_svg, "Dice 0.5 half way up, at epoch 1"

    go.touch()
    wait(session)
    assert (session.page.message, session.page.message_kind) == ("Installed tiny-trained 0.1.0.", INFO)
    assert session.page.model == "tiny-trained@0.1.0"
    assert "tiny-trained@0.1.0" in [model["value"] for model in session.page.models]
    assert session.page.curve_svg, "the curve stays after the run"
    assert session.page.job == "" and session.page.progress == 0.0


def test_the_training_command_names_the_dataset_and_its_run_folder(settings: Settings, tmp_path: Path):
    dataset = make_dataset(settings)
    record = tmp_path / "argv.json"
    body = f"import json; json.dump(args, open({str(record)!r}, 'w')); sys.exit(3)"
    session = new_session(settings, fake_cli(tmp_path, body))
    session.train("lungs", "lungs-ct-3d", epochs=7)
    wait(session)
    argv = json.loads(record.read_text())
    assert str(dataset.resolve()) in argv
    assert str((settings.work / "datasets" / "lungs-training" / "lungs-ct-3d").resolve()) in argv
    assert argv[argv.index("--epochs") + 1] == "7" and argv[argv.index("--device") + 1] == "cpu"
    assert session.page.message_kind == ERROR and "\n" not in session.page.message


def test_training_without_a_dataset_is_a_one_line_error(settings: Settings):
    session = new_session(settings)
    session.train("lungs", "lungs-ct-3d")
    assert_one_line_error(session, "there is no dataset 'lungs' yet")
    assert session.page.job == "" and not session.logic.is_running
    session.train("../lungs", "lungs-ct-3d")
    assert_one_line_error(session, "a dataset name is")


@pytest.mark.parametrize("preset", ["/etc/passwd", "../../config.json", "no-such-preset", ""])
def test_training_takes_only_a_preset_the_page_offers(settings: Settings, tmp_path: Path, preset: str):
    """``--config`` also reads a JSON file: a page must not make the child read any file of the server."""
    make_dataset(settings)
    (tmp_path / "config.json").write_text("{}")
    started = tmp_path / "started"
    session = new_session(settings, fake_cli(tmp_path, f"open({str(started)!r}, 'w')"))
    session.train("lungs", preset)
    assert_one_line_error(session, "preset")
    assert not session.logic.is_running and session.page.job == ""
    wait(session)
    assert not started.exists(), "no child was started"


def test_segmenting_without_any_model_is_a_one_line_error(
    settings: Settings, ct: Image, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(USER_MODELS_ENV, str(tmp_path / "no-models"))
    write_image(settings.data / "ct.nii.gz", ct)
    session = new_session(settings)
    assert (session.page.models, session.page.model) == ([], "")
    session.open_data_file("ct.nii.gz")
    session.segment()
    assert_one_line_error(session)
    assert not session.logic.is_running and session.page.job == ""


def test_cancelling_a_training_says_it_can_resume(settings: Settings, tmp_path: Path):
    make_dataset(settings)
    step = {"event": "step", "epoch": 1, "epochs": 9, "loss": 0.9, "fraction": 0.1}
    body = f"import json, time\nprint(json.dumps({step!r}), flush=True)\ntime.sleep(60)"
    session = new_session(settings, fake_cli(tmp_path, body))
    session.train("lungs", "lungs-ct-3d")
    wait_for(session, lambda: session.page.progress == 0.1)
    pid = session.logic.runner.pid
    session.train("lungs", "lungs-ct-3d")
    assert_one_line_error(session, "already running")
    session.cancel()
    wait(session, timeout_s=30)
    assert session.page.message == "Training cancelled: start it again to resume"
    assert session.page.message_kind == WARNING
    assert (session.page.job, session.page.progress) == ("", 0.0)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def recorded_training_argv(settings: Settings, tmp_path: Path) -> list[str]:
    record = tmp_path / "argv.json"
    body = f"import json; json.dump(args, open({str(record)!r}, 'w')); sys.exit(3)"
    session = new_session(settings, fake_cli(tmp_path, body))
    session.train("lungs", "lungs-ct-3d", epochs=7)
    wait(session)
    return json.loads(record.read_text())


def test_a_stopped_run_resumes_and_a_finished_one_gets_a_new_folder(settings: Settings, tmp_path: Path):
    """Train again after a cancel continues the run (its checkpoint, its own length); after a run
    that exported its model, it starts a new run beside it instead of resuming or overwriting it."""
    make_dataset(settings)
    runs = settings.work / "datasets" / "lungs-training"
    (runs / "lungs-ct-3d").mkdir(parents=True)
    (runs / "lungs-ct-3d" / "checkpoint_last.pt").write_bytes(b"checkpoint")
    argv = recorded_training_argv(settings, tmp_path)
    assert "--resume" in argv and "--config" not in argv and "--epochs" not in argv
    assert str((runs / "lungs-ct-3d").resolve()) in argv

    for finished in ("lungs-ct-3d", "lungs-ct-3d-2"):
        (runs / finished / "bundle").mkdir(parents=True)
        (runs / finished / "checkpoint_last.pt").write_bytes(b"checkpoint")
    argv = recorded_training_argv(settings, tmp_path)
    assert "--resume" not in argv and argv[argv.index("--config") + 1] == "lungs-ct-3d"
    assert argv[argv.index("--out") + 1] == str((runs / "lungs-ct-3d-3").resolve())


@pytest.mark.parametrize("files", ["ct.nii.gz", [b"bytes"], [["ct.nii.gz", b""]]])
def test_an_upload_that_is_not_a_list_of_files_is_a_one_line_error(settings: Settings, files: object):
    session = new_session(settings)
    session.open_upload(files)  # type: ignore[arg-type]
    assert_one_line_error(session, "not a list of files")
    assert session.volume_node is None


def test_the_childs_warnings_are_part_of_the_one_line_result(settings: Settings, ct: Image, tmp_path: Path):
    """An input unlike the training data (the CLI's warning line) is said with the result, and the
    message is a warning, not a plain success."""
    warn = "print('lunglivseg: warning: the input is unlike the training data', file=sys.stderr)\n"
    write_image(settings.data / "ct.nii.gz", ct)
    session = new_session(settings, fake_cli(tmp_path, warn + WRITE_LABELS))
    session.refresh_models(select=MODEL)
    session.open_data_file("ct.nii.gz")
    session.segment()
    wait(session)
    assert session.page.message.startswith(f"Segmented with {MODEL}: ")
    assert session.page.message.endswith(" Warning: the input is unlike the training data")
    assert (session.page.message_kind, "\n" in session.page.message) == (WARNING, False)
