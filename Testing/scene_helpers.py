"""Helpers for tests on a real slicer-core scene: segment edits as the Segment Editor makes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
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


def rgb_volume_node(scene, rgb: np.ndarray, folder: Path, name: str = "RGB X-ray"):
    """A ``vtkMRMLVectorVolumeNode``, what Slicer makes of an RGB PNG or JPEG: ``rgb`` ``[j, i, 3]``
    written as a colour file (spacing 0.5 x 0.6 mm, origin (3, -4)) and read by slicer-core's own
    volume storage node, as Slicer's loader reads it (slicer-core has no PNG reader, hence NRRD)."""
    picture = sitk.GetImageFromArray(rgb, isVector=True)
    picture.SetSpacing((0.5, 0.6))
    picture.SetOrigin((3.0, -4.0))
    path = folder / f"{name}.nrrd"
    sitk.WriteImage(picture, str(path))
    volume_node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", name)
    storage_node = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage_node.SetFileName(str(path))
    volume_node.SetAndObserveStorageNodeID(storage_node.GetID())
    assert storage_node.ReadData(volume_node), f"slicer-core could not read {path}"
    return volume_node
