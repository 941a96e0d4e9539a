"""The MRML bridge against a real (headless) Slicer scene from slicer-core, never a mock."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="needs slicer-core (pip install 'slicer-core==5.11.*')")

import vtk  # noqa: E402  (comes with slicer-core)
from factories import require_file  # noqa: E402
from LungLiverSegLib import geometry  # noqa: E402
from LungLiverSegLib.errors import InputImageError  # noqa: E402
from LungLiverSegLib.geometry import Image  # noqa: E402
from LungLiverSegLib.imageio import read_image  # noqa: E402
from LungLiverSegLib.labels import LabelInfo  # noqa: E402
from LungLiverSegLib.slicer_module.mrml_bridge import (  # noqa: E402
    PROPOSAL_MODEL_ATTRIBUTE,
    PROPOSAL_VOLUME_ROLE,
    image_from_volume_node,
    labels_from_segmentation,
    proposal_node,
    removing_added_nodes,
    segmentation_from_labels,
    store_proposal,
    volume_node_from_image,
)
from LungLiverSegLib.slicer_module.scene import create_headless_scene  # noqa: E402
from scene_helpers import (  # noqa: E402
    add_segment,
    assert_same_geometry,
    edit_segment,
    rgb_volume_node,
    segment_id_named,
)

pytestmark = pytest.mark.slicer

LUNG = ("SCT", "39607008", "Lung")
RIGHT = ("SCT", "24028007", "Right")
LEFT = ("SCT", "7771000", "Left")
LIVER = ("SCT", "10200004", "Liver")
LABEL_MAP = {
    1: LabelInfo(1, "right lung", (0.8, 0.6, 0.0), type=LUNG, modifier=RIGHT),
    2: LabelInfo(2, "left lung", (0.5, 0.6, 0.8), type=LUNG, modifier=LEFT),
    5: LabelInfo(5, "liver", (0.87, 0.47, 0.35), type=LIVER),
    6: LabelInfo(6, "liver tumour", (0.9, 0.9, 0.2)),
}
LIVER_TERMINOLOGY = (
    "Segmentation category and type - 3D Slicer General Anatomy list"
    "~SCT^123037004^Anatomical Structure~SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^"
)


def oblique_direction() -> np.ndarray:
    """Columns: rotations about two axes, so no index axis lies along a patient axis."""
    about_z, about_x = np.deg2rad(30.0), np.deg2rad(-20.0)
    rotate_z = np.array(
        [[np.cos(about_z), -np.sin(about_z), 0], [np.sin(about_z), np.cos(about_z), 0], [0, 0, 1]]
    )
    rotate_x = np.array(
        [[1, 0, 0], [0, np.cos(about_x), -np.sin(about_x)], [0, np.sin(about_x), np.cos(about_x)]]
    )
    return rotate_z @ rotate_x


@pytest.fixture
def scene():
    return create_headless_scene()


@pytest.fixture
def ct() -> Image:
    rng = np.random.default_rng(0)
    voxels = rng.integers(-1000, 1500, size=(6, 7, 8), dtype=np.int16)  # [k, j, i]
    return Image(voxels, (0.7, 1.3, 2.5), (-12.0, 20.5, 33.0), oblique_direction())


@pytest.fixture
def labels(ct: Image) -> Image:
    """Right lung, left lung and liver blocks; label 6 of the label map is absent."""
    array = np.zeros(ct.array.shape, np.uint8)
    array[1:4, 1:4, 1:3] = 1
    array[1:4, 1:4, 5:7] = 2
    array[4:6, 3:6, 2:6] = 5
    return ct.with_array(array)


@pytest.fixture
def ct_node(scene, ct: Image):
    return volume_node_from_image(scene, ct, "CT")


@pytest.fixture
def segmentation_node(labels: Image, ct_node):
    return segmentation_from_labels(labels, LABEL_MAP, ct_node, into="CT segmentation")


def segments(segmentation_node) -> list:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetSegment(segment_id) for segment_id in segmentation.GetSegmentIDs()]


def test_volume_round_trip_keeps_oblique_geometry_and_voxels(ct: Image, ct_node):
    back = image_from_volume_node(ct_node)
    assert back.array.dtype == ct.array.dtype
    np.testing.assert_array_equal(back.array, ct.array)
    assert_same_geometry(back, ct)
    np.testing.assert_allclose(ct_node.GetSpacing(), ct.spacing)


def test_node_points_are_simpleitk_points_in_ras(scene, ct: Image, tmp_path: Path):
    path = tmp_path / "oblique.nrrd"
    sitk.WriteImage(geometry.to_sitk(ct), str(path))
    read = sitk.ReadImage(str(path))
    node = volume_node_from_image(scene, geometry.from_sitk(read), "read back")
    ijk_to_ras = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijk_to_ras)
    for ijk in [(0, 0, 0), (7, 0, 0), (0, 6, 0), (0, 0, 5), (7, 6, 5), (3, 2, 4)]:
        ras = ijk_to_ras.MultiplyPoint((*ijk, 1.0))[:3]
        lps = read.TransformIndexToPhysicalPoint(ijk)
        np.testing.assert_allclose(ras, (-lps[0], -lps[1], lps[2]), atol=1e-6)


def test_linear_parent_transform_moves_the_image(scene, ct: Image, ct_node):
    transform_node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift_ras = vtk.vtkMatrix4x4()
    shift_ras.SetElement(0, 3, 10.0)  # 10 mm towards Right = -10 in L
    transform_node.SetMatrixTransformToParent(shift_ras)
    ct_node.SetAndObserveTransformNodeID(transform_node.GetID())
    moved = image_from_volume_node(ct_node)
    np.testing.assert_allclose(moved.origin, np.add(ct.origin, (-10.0, 0.0, 0.0)))


def test_nested_rotating_transforms_apply_outermost_last(scene, ct: Image, ct_node):
    """The world matrix is parent-of-parent @ parent @ IJK-to-RAS: the order matters for rotations."""
    outer, inner = np.eye(4), np.eye(4)
    outer[:3, :3], outer[:3, 3] = oblique_direction(), (5.0, -3.0, 12.0)
    inner[:3, :3], inner[:3, 3] = oblique_direction().T, (-20.0, 1.0, 0.0)
    outer_node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    outer_node.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(outer))
    inner_node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    inner_node.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(inner))
    inner_node.SetAndObserveTransformNodeID(outer_node.GetID())
    ct_node.SetAndObserveTransformNodeID(inner_node.GetID())
    moved = image_from_volume_node(ct_node)
    expected = outer @ inner @ geometry.ijk_to_ras_matrix(geometry.as_volume(ct))
    np.testing.assert_allclose(geometry.ijk_to_ras_matrix(geometry.as_volume(moved)), expected, atol=1e-9)
    np.testing.assert_array_equal(moved.array, ct.array)


def test_rollback_removes_what_the_block_added_always_or_only_on_error(scene, ct_node):
    before = node_ids(scene)
    with removing_added_nodes(scene):
        scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode").CreateDefaultDisplayNodes()
    assert node_ids(scene) == before
    with removing_added_nodes(scene, keep_on_success=True):
        kept = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "kept")
        kept.CreateDefaultDisplayNodes()
    with_kept = node_ids(scene)
    assert kept.GetID() in with_kept and len(with_kept) == len(before) + 2
    with pytest.raises(InputImageError), removing_added_nodes(scene, keep_on_success=True):
        scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "partial").CreateDefaultDisplayNodes()
        raise InputImageError("failed half-way")
    assert node_ids(scene) == with_kept


def node_ids(scene) -> set[str]:
    return {scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())}


def test_2d_image_and_labels_become_one_slice_volumes(scene):
    xray = Image(np.arange(12, dtype=np.int16).reshape(3, 4), (0.5, 0.6), (3.0, -4.0))
    xray_node = volume_node_from_image(scene, xray, "X-ray")
    back = image_from_volume_node(xray_node)
    np.testing.assert_array_equal(back.array, xray.array[None])
    assert_same_geometry(back, geometry.as_volume(xray))
    lungs = xray.with_array((xray.array % 5 == 1).astype(np.uint8))
    segmentation_node = segmentation_from_labels(lungs, LABEL_MAP, xray_node, into="lungs")
    back_labels, _ = labels_from_segmentation(segmentation_node, xray_node, LABEL_MAP)
    np.testing.assert_array_equal(back_labels.array, lungs.array[None])


def test_an_rgb_xray_node_becomes_its_luminance_on_its_own_grid(scene, tmp_path: Path):
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[..., 0] = np.arange(12).reshape(3, 4) * 20
    rgb[..., 1], rgb[..., 2] = 7, 200
    rgb_node = rgb_volume_node(scene, rgb, tmp_path)
    assert rgb_node.IsA("vtkMRMLVectorVolumeNode")

    gray = image_from_volume_node(rgb_node)
    expected = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    np.testing.assert_allclose(gray.array, expected[None], rtol=1e-6)
    assert_same_geometry(gray, geometry.as_volume(Image(expected, (0.5, 0.6), (3.0, -4.0))))


def test_a_gray_xray_saved_as_rgb_keeps_its_values_as_the_cli_reads_it(scene, tmp_path: Path):
    picture = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    rgb_node = rgb_volume_node(scene, np.repeat(picture[..., None], 3, axis=-1), tmp_path)
    gray = image_from_volume_node(rgb_node)
    assert gray.array.dtype == np.uint8
    np.testing.assert_array_equal(gray.array, picture[None])
    np.testing.assert_array_equal(read_image(tmp_path / "RGB X-ray.nrrd").array, picture)


def test_a_volume_of_more_values_per_voxel_than_a_picture_is_refused(scene):
    vectors = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "displacements")
    slicer.util.updateVolumeFromArray(vectors, np.ones((2, 3, 4, 5), np.float32))
    with pytest.raises(InputImageError, match=r"^displacements: 5 values per voxel is not a gray or colour"):
        image_from_volume_node(vectors)


def test_one_described_segment_per_present_label(segmentation_node, ct_node):
    found = segments(segmentation_node)
    assert [segment.GetName() for segment in found] == ["right lung", "left lung", "liver"]
    for segment, value in zip(found, (1, 2, 5), strict=True):
        np.testing.assert_allclose(segment.GetColor(), LABEL_MAP[value].color)
    liver = found[2]
    terminology_tag = vtk.reference("")
    assert liver.GetTag(liver.GetTerminologyEntryTagName(), terminology_tag)
    assert str(terminology_tag) == LIVER_TERMINOLOGY
    assert "^24028007^Right~" in found[0].GetTerminology()
    reference_role = slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()
    assert segmentation_node.GetNodeReference(reference_role) is ct_node


def test_labels_round_trip_identical_and_leaves_no_temporary_nodes(
    scene, labels: Image, segmentation_node, ct_node
):
    node_count = scene.GetNumberOfNodes()
    back, label_map = labels_from_segmentation(segmentation_node, ct_node, LABEL_MAP)
    np.testing.assert_array_equal(back.array, labels.array)
    assert_same_geometry(back, labels)
    assert label_map == LABEL_MAP
    assert scene.GetNumberOfNodes() == node_count


def test_empty_segmentation_gives_empty_labels_on_the_reference_grid(ct: Image, ct_node):
    nothing = ct.with_array(np.zeros(ct.array.shape, np.uint8))
    segmentation_node = segmentation_from_labels(nothing, LABEL_MAP, ct_node, into="nothing found")
    assert not segments(segmentation_node)
    back, _ = labels_from_segmentation(segmentation_node, ct_node, LABEL_MAP)
    np.testing.assert_array_equal(back.array, nothing.array)
    assert_same_geometry(back, ct)
    segmentation_node.GetSegmentation().AddEmptySegment("", "liver")
    back, _ = labels_from_segmentation(segmentation_node, ct_node, LABEL_MAP)
    np.testing.assert_array_equal(back.array, nothing.array)


def test_renamed_segments_are_matched_by_terminology(labels: Image, segmentation_node, ct_node):
    segment_named = segmentation_node.GetSegmentation().GetSegment
    segment_named(segment_id_named(segmentation_node, "liver")).SetName("Leber")
    segment_named(segment_id_named(segmentation_node, "right lung")).SetName("RL")
    back, _ = labels_from_segmentation(segmentation_node, ct_node, LABEL_MAP)
    np.testing.assert_array_equal(back.array, labels.array)


def test_reordered_hidden_and_recased_segments_keep_their_values(labels: Image, segmentation_node, ct_node):
    segmentation = segmentation_node.GetSegmentation()
    liver_id = segment_id_named(segmentation_node, "liver")
    segmentation.SetSegmentIndex(liver_id, 0)
    segmentation_node.GetDisplayNode().SetSegmentVisibility(liver_id, False)
    segmentation.GetSegment(segment_id_named(segmentation_node, "left lung")).SetName("Left Lung")
    back, _ = labels_from_segmentation(segmentation_node, ct_node, LABEL_MAP)
    np.testing.assert_array_equal(back.array, labels.array)


def test_unknown_segment_is_named_in_the_error(labels: Image, segmentation_node, ct_node):
    add_segment(segmentation_node, ct_node, "spleen", labels.array == 0)
    with pytest.raises(InputImageError, match="spleen"):
        labels_from_segmentation(segmentation_node, ct_node, LABEL_MAP)


def test_unknown_segment_gets_the_next_value_when_mapped(labels: Image, segmentation_node, ct_node):
    spleen = np.zeros(labels.array.shape, bool)
    spleen[0, 0:2, 0:3] = True
    add_segment(segmentation_node, ct_node, "spleen", spleen)
    back, label_map = labels_from_segmentation(segmentation_node, ct_node, LABEL_MAP, map_unknown=True)
    assert label_map[7].name == "spleen" and set(label_map) == {*LABEL_MAP, 7}
    np.testing.assert_array_equal(back.array, np.where(spleen, 7, labels.array))


def test_segment_editor_edits_change_the_exported_labels(labels: Image, segmentation_node, ct_node):
    grown_liver = np.zeros(labels.array.shape, bool)
    grown_liver[5, 0:2, 0:2] = True
    edit_segment(
        segmentation_node,
        ct_node,
        segment_id_named(segmentation_node, "liver"),
        grown_liver,
        "ModificationModeAdd",
    )
    erased_lung = labels.array == 1
    erased_lung[1:3] = False
    edit_segment(
        segmentation_node,
        ct_node,
        segment_id_named(segmentation_node, "right lung"),
        erased_lung,
        "ModificationModeRemove",
    )
    expected = np.where(grown_liver, 5, labels.array)
    expected[erased_lung] = 0
    back, _ = labels_from_segmentation(segmentation_node, ct_node, LABEL_MAP)
    np.testing.assert_array_equal(back.array, expected)


def test_overlap_goes_to_the_label_later_in_the_label_map(labels: Image, segmentation_node, ct_node):
    into_liver = labels.array == 5
    edit_segment(
        segmentation_node,
        ct_node,
        segment_id_named(segmentation_node, "right lung"),
        into_liver,
        "ModificationModeAdd",
        overwrite=False,
    )
    liver_last, _ = labels_from_segmentation(segmentation_node, ct_node, LABEL_MAP)
    np.testing.assert_array_equal(liver_last.array, labels.array)
    lungs_last = {value: LABEL_MAP[value] for value in (5, 6, 2, 1)}
    right_lung_last, _ = labels_from_segmentation(segmentation_node, ct_node, lungs_last)
    np.testing.assert_array_equal(right_lung_last.array, np.where(into_liver, 1, labels.array))


def test_rerun_without_replace_keeps_only_the_users_segments(labels: Image, segmentation_node, ct_node):
    add_segment(segmentation_node, ct_node, "my notes", labels.array == 0)
    segmentation_node.GetSegmentation().AddEmptySegment("", "Liver Tumour")  # from an earlier run
    again = segmentation_from_labels(labels, LABEL_MAP, ct_node, into=segmentation_node, replace=False)
    assert again is segmentation_node
    assert sorted(segment.GetName() for segment in segments(again)) == sorted(
        ["my notes", "right lung", "left lung", "liver"]
    )
    segmentation_from_labels(labels, LABEL_MAP, ct_node, into=again)
    assert [segment.GetName() for segment in segments(again)] == ["right lung", "left lung", "liver"]


def test_label_value_missing_from_the_label_map_is_refused(labels: Image, ct_node):
    with pytest.raises(InputImageError, match=r"\[9\]"):
        segmentation_from_labels(
            labels.with_array(np.where(labels.array == 5, 9, labels.array)), LABEL_MAP, ct_node, into="x"
        )


def test_segmentation_goes_under_the_volume_study(scene, labels: Image, ct_node):
    hierarchy = scene.GetSubjectHierarchyNode()
    patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Patient")
    study = hierarchy.CreateStudyItem(patient, "Study")
    hierarchy.CreateItem(study, ct_node)
    segmentation_node = segmentation_from_labels(labels, LABEL_MAP, ct_node, into="seg")
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(segmentation_node)) == study


@pytest.mark.realdata
def test_cip_ct_through_a_volume_node(scene, shared_data: Path):
    read = sitk.ReadImage(str(require_file(shared_data / "ct_lung_cip_64" / "ct-64.nrrd")))
    image = geometry.from_sitk(read)
    back = image_from_volume_node(volume_node_from_image(scene, image, "CIP CT"))
    np.testing.assert_array_equal(back.array, image.array)
    assert_same_geometry(back, image)


@pytest.mark.realdata
def test_dicom_series_and_its_on_grid_label(scene, shared_data: Path):
    folder = shared_data / "ct_abdomen_totalseg_example"
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(require_file(folder / "example_ct_dicom"))))
    ct = geometry.from_sitk(reader.Execute())
    labels = geometry.from_sitk(
        sitk.ReadImage(str(require_file(folder / "example_seg_dicom_on_dicom_grid.nii.gz")))
    )
    ct_node = volume_node_from_image(scene, ct, "abdomen CT")
    label_map = {int(v): LabelInfo(int(v), f"organ {v}") for v in np.unique(labels.array) if v}
    segmentation_node = segmentation_from_labels(labels, label_map, ct_node, into="TotalSegmentator")
    assert len(segments(segmentation_node)) == len(label_map)
    back, _ = labels_from_segmentation(segmentation_node, ct_node, label_map)
    assert_same_geometry(back, ct)
    np.testing.assert_array_equal(back.array, labels.array)


def test_a_proposal_is_a_labelmap_node_of_the_scene_and_a_new_one_replaces_it(
    scene, labels: Image, segmentation_node, ct_node
):
    assert proposal_node(segmentation_node) is None
    first = store_proposal(segmentation_node, labels, ct_node, "lungs@1.0.0")
    assert proposal_node(segmentation_node) is first
    assert first.IsA("vtkMRMLLabelMapVolumeNode") and first.GetName() == "CT segmentation proposal"
    assert first.GetAttribute(PROPOSAL_MODEL_ATTRIBUTE) == "lungs@1.0.0"
    assert first.GetNodeReference(PROPOSAL_VOLUME_ROLE) is ct_node
    stored = image_from_volume_node(first)
    np.testing.assert_array_equal(stored.array, labels.array)
    assert_same_geometry(stored, labels)

    second = store_proposal(segmentation_node, labels.with_array(labels.array * 0), ct_node, "lungs@1.1.0")
    assert proposal_node(segmentation_node) is second
    assert scene.GetNodesByClass("vtkMRMLLabelMapVolumeNode").GetNumberOfItems() == 1
