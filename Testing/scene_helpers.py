"""Helpers for tests on a real slicer-core scene: segment edits as the Segment Editor makes them."""

from __future__ import annotations

import numpy as np
import slicer
import vtk
from LungLiverSegLib.geometry import Image
from vtk.util import numpy_support


def segment_id_named(segmentation_node, name: str) -> str:
    return segmentation_node.GetSegmentation().GetSegmentIdBySegmentName(name)


def edit_segment(  # noqa: PLR0913  (the Segment Editor's inputs: nodes, segment, mask, modes)
    segmentation_node, volume_node, segment_id: str, mask: np.ndarray, mode: str, overwrite: bool = True
) -> None:
    """Edit as the Segment Editor does, through slicer-core's Qt-free segment editor logic."""
    scene = segmentation_node.GetScene()
    modifier = slicer.vtkOrientedImageData()
    modifier.SetDimensions(*volume_node.GetImageData().GetDimensions())
    ijk_to_ras = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(ijk_to_ras)
    modifier.SetImageToWorldMatrix(ijk_to_ras)
    modifier.GetPointData().SetScalars(numpy_support.numpy_to_vtk(mask.astype(np.uint8).ravel(), deep=True))
    editor_node = scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
    if not overwrite:
        editor_node.SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteNone)
    editor = slicer.vtkSlicerSegmentEditorLogic()
    editor.SetMRMLScene(scene)
    editor.SetMRMLApplicationLogic(scene.module_logics["Application"])
    editor.SetSegmentEditorNode(editor_node)
    editor.SetSegmentationNode(segmentation_node)
    editor.SetSourceVolumeNode(volume_node)
    editor.ModifySegmentByLabelmap(segmentation_node, segment_id, modifier, getattr(editor, mode), True, True)


def add_segment(segmentation_node, volume_node, name: str, mask: np.ndarray) -> str:
    segment_id = segmentation_node.GetSegmentation().AddEmptySegment("", name)
    edit_segment(segmentation_node, volume_node, segment_id, mask, "ModificationModeAdd")
    return segment_id


def assert_same_geometry(actual: Image, expected: Image) -> None:
    np.testing.assert_allclose(actual.spacing, expected.spacing, atol=1e-9)
    np.testing.assert_allclose(actual.origin, expected.origin, atol=1e-9)
    np.testing.assert_allclose(actual.direction, expected.direction, atol=1e-9)
