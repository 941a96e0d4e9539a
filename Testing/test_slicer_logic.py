"""The module's logic on a real headless MRML scene, with the real CLI in a real child process.

The model is a real bundle whose network ignores its input (zero weights, one winning bias), so
its labels are known without trusting the pipeline: "lungs" over the whole image. What the tests
check is the plumbing around it: files, process, nodes, segments, geometry, edits, export.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="needs slicer-core (pip install 'slicer-core==5.11.*')")

import torch  # noqa: E402
from conftest import SHARED_DATA  # noqa: E402
from LungLiverSegLib.bundle import (  # noqa: E402
    ArchitectureSpec,
    InferenceSpec,
    IntensitySpec,
    ModelBundle,
    PostprocessingSpec,
    PreprocessingSpec,
    save_bundle,
)
from LungLiverSegLib.catalogue import USER_MODELS_ENV  # noqa: E402
from LungLiverSegLib.dataset_export import DatasetExportError, read_dataset  # noqa: E402
from LungLiverSegLib.geometry import Image  # noqa: E402
from LungLiverSegLib.imageio import read_image  # noqa: E402
from LungLiverSegLib.mrml_bridge import labels_from_segmentation, volume_node_from_image  # noqa: E402
from LungLiverSegLib.networks import build_network  # noqa: E402
from LungLiverSegLib.phantom import PHANTOM_LABELS, make_phantom  # noqa: E402
from LungLiverSegLib.slicer_logic import LungLiverSegLogic, SegmentationOutcome  # noqa: E402
from LungLiverSegLib.slicer_scene import create_headless_scene  # noqa: E402
from test_mrml_bridge import add_segment, assert_same_geometry, edit_segment, segment_id_named  # noqa: E402

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
def logic(scene) -> LungLiverSegLogic:
    return LungLiverSegLogic(scene)


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
def test_segment_edit_export_story(scene, ct: Image, ct_node, logic, isolated: Path, tmp_path: Path):
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
    edit_segment(scene, segmentation_node, ct_node, lungs_id, erased, "ModificationModeRemove")
    liver = np.zeros(ct.array.shape, bool)
    liver[2:8, 10:30, 10:30] = True
    add_segment(scene, segmentation_node, ct_node, "Liver", liver)
    expected = np.where(erased, 0, LUNGS)
    expected[liver] = 2  # later in the label map: wins the overlap with lungs
    assert logic.proposal_of(segmentation_node) is proposal, "edits must not change the proposal"

    dataset = tmp_path / "dataset"
    record = logic.export_for_training(ct_node, segmentation_node, dataset, "cip_001")
    assert record.model == {"name": MODEL, "version": "0.0.1"}
    assert record.source["node"] == "CT"
    assert record.label_values == (1, 2)
    assert record.correction["lungs"]["changed_voxels"] == int(np.count_nonzero(erased | liver))
    assert record.correction["liver"]["dice"] == pytest.approx(0.0)
    assert 0.5 < record.correction["lungs"]["dice"] < 1.0
    assert record.correction[PHANTOM_LABELS[3].name]["changed_voxels"] == 0

    info = read_dataset(dataset)
    assert [case.case_id for case in info.cases] == ["cip_001"]
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
        logic.export_for_training(ct_node, segmentation_node, dataset, "cip_001")
    logic.export_for_training(ct_node, segmentation_node, dataset, "cip_001", overwrite=True)
    assert len(read_dataset(dataset).cases) == 1
