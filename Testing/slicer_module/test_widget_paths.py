"""What the widget's handlers hand to the logic, on a real slicer-core scene with real child
processes (an executable standing in for Slicer's Python runs the child's side):

* the model item a user picks (its ``name@version`` key) is the model the child is told to run,
  even when a bundled model of the same name is newer;
* closing the scene stops a running segmentation (its nodes go) but not a training (it has none);
* an RGB chest X-ray (a ``vtkMRMLVectorVolumeNode``) is segmented, as gray;
* and the widget itself, in the Slicer-compatibility harness: the model items it lists, the
  question before replacing a trained model, and what closing the scene stops.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="needs slicer-core (pip install 'slicer-core==5.11.*')")

from factories import make_bundle, save_bundled_models, save_tiny_bundle  # noqa: E402
from LungLiverSegLib.bundle.importing import import_model  # noqa: E402
from LungLiverSegLib.cli.train_request import TrainRequest  # noqa: E402
from LungLiverSegLib.geometry import Image  # noqa: E402
from LungLiverSegLib.paths import BUNDLED_MODELS_ENV, USER_MODELS_ENV  # noqa: E402
from LungLiverSegLib.slicer_module import presentation  # noqa: E402
from LungLiverSegLib.slicer_module.logic import SceneLogic  # noqa: E402
from LungLiverSegLib.slicer_module.mrml_bridge import volume_node_from_image  # noqa: E402
from LungLiverSegLib.slicer_module.scene import create_headless_scene  # noqa: E402
from scene_helpers import rgb_volume_node  # noqa: E402
from slicer_module.slicer_harness.harness import (  # noqa: E402
    HARNESS_DIR,
    MODULE_FILE,
    SLICER_REFERENCE,
    SLICER_TAGS,
    run_in_harness,
)

pytestmark = [
    pytest.mark.slicer,
    pytest.mark.skipif(os.name == "nt", reason="the stand-in child is a POSIX script"),
]

WRITE_LABELS = """
import numpy as np
from LungLiverSegLib.imageio.images import read_image, write_image
image = read_image(args[0])
{check}
write_image(args[1], image.with_array(np.ones(image.array.shape, np.uint8)))
"""


def child(folder: Path, body: str) -> str:
    """An executable standing in for Slicer's Python: runs ``body`` with the CLI's arguments
    (``args``, after ``-m <package> <command>``), and records its whole command line."""
    script = folder / "fake_python"
    record = folder / "command.json"
    script.write_text(
        f"#!{sys.executable}\nimport json, sys\nargs = sys.argv[4:]\n"
        f"open({str(record)!r}, 'w').write(json.dumps(sys.argv))\n{body}\n"
    )
    script.chmod(0o755)
    return str(script)


def recorded_command(folder: Path) -> list[str]:
    return json.loads((folder / "command.json").read_text())


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Bundled: lungs-ct-3d 0.1.1 and a 2D chest X-ray model. The user's: lungs-ct-3d 0.1.0, as the
    lungs-ct-3d preset trains it."""
    bundled = save_bundled_models(
        tmp_path / "bundled",
        make_bundle(name="lungs-ct-3d", version="0.1.1"),
        make_bundle(dims=2, name="lungs-cxr-2d", version="0.1.0", modality="CXR"),
    )
    monkeypatch.setenv(BUNDLED_MODELS_ENV, str(bundled))
    monkeypatch.setenv(USER_MODELS_ENV, str(tmp_path / "user"))
    import_model(save_tiny_bundle(tmp_path / "run", make_bundle(name="lungs-ct-3d", version="0.1.0")))
    return tmp_path / "user"


@pytest.fixture
def scene():
    return create_headless_scene()


@pytest.fixture
def ct_node(scene):
    voxels = np.random.default_rng(0).integers(-1000, 500, size=(4, 5, 6), dtype=np.int16)
    return volume_node_from_image(scene, Image(voxels, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0)), "CT")


def test_the_picked_model_is_what_the_child_runs(scene, ct_node, user_dir: Path, tmp_path: Path):
    [yours] = [choice for choice in presentation.model_choices() if choice.text.endswith("(yours)")]
    logic = SceneLogic(scene, python=child(tmp_path, WRITE_LABELS.format(check="")))
    outcome = logic.process(ct_node, yours.key, waitForCompletion=True)

    assert outcome.succeeded, outcome.error
    command = recorded_command(tmp_path)
    assert command[command.index("--model") + 1] == "lungs-ct-3d@0.1.0"


def test_closing_the_scene_stops_a_segmentation_but_not_a_training(scene, ct_node, user_dir, tmp_path):
    logic = SceneLogic(scene, python=child(tmp_path, "import time; time.sleep(60)"))
    segmentations, trainings = [], []
    logic.process(ct_node, "lungs-ct-3d@0.1.0", on_finished=segmentations.append)
    logic.cancel_segmentation()
    logic.runner.wait(timeout=30)
    assert [outcome.cancelled for outcome in segmentations] == [True]

    request = TrainRequest(tmp_path / "dataset", tmp_path / "run", "lungs-ct-3d")
    logic.train(request, on_finished=trainings.append)
    logic.cancel_segmentation()
    assert logic.runner.wait(timeout=1) is None and logic.is_running and not trainings
    logic.cancel()
    logic.runner.wait(timeout=30)
    assert [outcome.cancelled for outcome in trainings] == [True]


def test_an_rgb_chest_xray_is_segmented_as_gray(scene, user_dir: Path, tmp_path: Path):
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0] = np.arange(48).reshape(6, 8)
    rgb[..., 1], rgb[..., 2] = 100, 30
    xray_node = rgb_volume_node(scene, rgb, tmp_path)
    gray_input = "assert image.array.shape == (1, 6, 8), image.array.shape"
    logic = SceneLogic(scene, python=child(tmp_path, WRITE_LABELS.format(check=gray_input)))
    outcome = logic.process(xray_node, "lungs-cxr-2d@0.1.0", waitForCompletion=True)

    assert outcome.succeeded, outcome.error
    [segmentation_node] = outcome.segmentation_nodes
    assert segmentation_node.GetName() == "RGB X-ray segmentation"
    assert segmentation_node.GetSegmentation().GetNumberOfSegments() == 1


DRIVE_PANEL = """
import json, sys
from pathlib import Path

sys.path.insert(0, {harness_dir!r})
import pythonqt
import run_module

temp = Path({temp!r})
slicer = run_module.install_slicer_layer(Path({layer!r}), temp)
module = run_module.load_like_slicer(Path({module_file!r}))
parent = pythonqt.ModuleParent({module_file!r})
slicer.modules.lungliverseg = parent
module.LungLiverSeg(parent)
widget = run_module.open_panel(slicer, module, parent)
questions = []
slicer.util.confirmOkCancelDisplay = lambda text, title=None, **options: questions.append(text) or False

import numpy as np
from LungLiverSegLib.bundle.catalogue import installed_model
from LungLiverSegLib.cli.train_request import TrainRequest
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.slicer_module.mrml_bridge import volume_node_from_image

combo = widget.ui.modelSelector
items = [[combo.itemText(index), combo.itemData(index)] for index in range(combo.count)]
widget.selectModel("lungs-cxr-2d@0.1.0")
widget.selectModel("lungs-ct-3d")  # as a scene saved before the items had versions stores it
bare = widget.selectedModel()
widget.selectModel("lungs-ct-3d@0.1.0")
selected = widget.selectedModel()
replaced = widget.confirmReplacingModel(installed_model("lungs-ct-3d", "0.1.0"))

logic = widget.logic
logic.python = {sleeper!r}
logic.train(TrainRequest(temp / "dataset", temp / "run", "lungs-ct-3d"))
slicer.mrmlScene.Clear(0)  # Slicer's File > Close Scene: StartCloseEvent, then EndCloseEvent
training_runs_on = logic.runner.wait(timeout=2) is None  # a cancelled child ends well within that
logic.cancel()
logic.runner.wait(30)

ct = Image(np.zeros((2, 3, 4), np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
volume = volume_node_from_image(slicer.mrmlScene, ct, "CT")
segmentations = []
logic.process(volume, selected, on_finished=segmentations.append)
slicer.mrmlScene.Clear(0)
logic.runner.wait(30)
print(json.dumps({{
    "steps": run_module.report["steps"],
    "items": items,
    "bare": bare,
    "selected": selected,
    "questions": questions,
    "replaced": replaced,
    "training_runs_on": training_runs_on,
    "segmentation_cancelled": [outcome.cancelled for outcome in segmentations],
}}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("tag", SLICER_TAGS)
def test_the_panel_lists_versions_asks_before_replacing_and_closing_the_scene_spares_training(
    slicer_python: Path, user_dir: Path, tmp_path: Path, tag: str
):
    """The widget itself, loaded as Slicer loads it, on Slicer's own Python layer at ``tag`` (the
    harness of test_slicer_harness.py): its model items, the question it asks, and scene close
    through a real StartCloseEvent of the real scene."""
    layer = SLICER_REFERENCE / tag / "Base" / "Python" / "slicer"
    if not (layer / "ScriptedLoadableModule.py").is_file():
        pytest.skip(f"Slicer's Python layer ({tag}) not found at {layer}")
    code = DRIVE_PANEL.format(
        harness_dir=str(HARNESS_DIR),
        temp=str(tmp_path),
        layer=str(layer),
        module_file=str(MODULE_FILE),
        sleeper=child(tmp_path, "import time; time.sleep(60)"),
    )
    result = run_in_harness(slicer_python, ["-c", code], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.splitlines()[-1])

    assert report["steps"]["widget_setup"] == "ok", report["steps"]["widget_setup"]
    assert report["items"] == [
        ["lungs-ct-3d 0.1.1", "lungs-ct-3d@0.1.1"],
        ["lungs-cxr-2d 0.1.0", "lungs-cxr-2d@0.1.0"],
        ["lungs-ct-3d 0.1.0 (yours)", "lungs-ct-3d@0.1.0"],
    ]
    assert (report["bare"], report["selected"]) == ("lungs-ct-3d@0.1.1", "lungs-ct-3d@0.1.0")
    [question] = report["questions"]
    assert question.startswith("Your model lungs-ct-3d 0.1.0 is installed already") and not report["replaced"]
    assert report["training_runs_on"] is True
    assert report["segmentation_cancelled"] == [True]
