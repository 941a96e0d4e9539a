"""Images and label maps to and from MRML nodes, and the scene rollback: the module's MRML code
(the logic only passes nodes through and reads their names, IDs and storage files).

The core works on ``geometry.Image`` (LPS) and ``labels.LabelMap``; the Slicer module hands nodes
of its scene to these functions and gets nodes back. The scene and nodes are always passed in, so
the same code runs in Slicer and on a headless ``slicer-core`` scene (``scene.py``). Only static
logic methods are used: they need no registered module and no Qt.

Segments are matched to label values by name (case-insensitive), then by terminology type and
type modifier, never by segment order or ID: users rename, reorder, hide and add segments in the
Segment Editor, and the exported labels must still carry the bundle's values.

The model's proposal for a segmentation node is kept in the scene, so that it is saved and
reloaded with it (scene save, ``.mrb``): a labelmap volume node referenced from the segmentation
node, which names the model (``name@version``) and references the volume it was made for.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import slicer
import slicer.util
import vtk
from vtk.util import numpy_support

from LungLiverSegLib.errors import InputImageError, LungLiverSegError
from LungLiverSegLib.geometry import Image, as_volume, ijk_to_ras_matrix, image_from_ijk_to_ras
from LungLiverSegLib.imageio.segnrrd import terminology_codes, terminology_entry
from LungLiverSegLib.labels import ANATOMICAL_STRUCTURE, CodeTriple, LabelInfo, LabelMap

PROPOSAL_ROLE = "LungLiverSegProposal"
"""Node reference from a segmentation node to the labelmap node holding its model's proposal."""
PROPOSAL_VOLUME_ROLE = "LungLiverSegProposalVolume"
"""Node reference from a proposal's labelmap node to the volume node it was made for."""
PROPOSAL_MODEL_ATTRIBUTE = "LungLiverSeg.model"
"""Attribute of a proposal's labelmap node: the model that made it, ``name@version``."""


class SlicerOperationError(LungLiverSegError, RuntimeError):
    """Slicer refused an import or export of segments (its log says why)."""


LUMINANCE_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma of red, green and blue, as Pillow's ``convert("L")``."""
PICTURE_COMPONENTS = 4
"""At most gray, gray + alpha, RGB or RGBA per voxel: a picture; more is another kind of data."""


def image_from_volume_node(volume_node: slicer.vtkMRMLScalarVolumeNode) -> Image:
    """Voxels and exact geometry (oblique included, linear parent transforms applied) of a volume.

    A vector volume, which is what Slicer makes of an RGB PNG or JPEG chest X-ray, becomes gray
    (``_gray_voxels``): the models read gray images.
    """
    voxels = slicer.util.arrayFromVolume(volume_node).copy()
    if voxels.ndim == 4:  # [k, j, i, component]
        voxels = _gray_voxels(voxels, volume_node.GetName())
    return image_from_ijk_to_ras(voxels, _ijk_to_world_ras(volume_node))


def _gray_voxels(voxels: np.ndarray, name: str) -> np.ndarray:
    """A gray picture saved as colour keeps its values (as the CLI reads such a file); a coloured
    one becomes its luminance; alpha is dropped."""
    components = voxels.shape[-1]
    if components > PICTURE_COMPONENTS:
        raise InputImageError(
            f"{name}: {components} values per voxel is not a gray or colour picture; "
            "choose a scalar volume (or one frame of it)"
        )
    rgb = len(LUMINANCE_WEIGHTS)
    colour = voxels[..., :rgb] if components >= rgb else voxels[..., :1]
    if np.all(colour == colour[..., :1]):
        return np.ascontiguousarray(colour[..., 0])
    return colour.astype(np.float32) @ np.asarray(LUMINANCE_WEIGHTS, dtype=np.float32)


def volume_node_from_image(
    scene: slicer.vtkMRMLScene, image: Image, name: str
) -> slicer.vtkMRMLScalarVolumeNode:
    """Add a scalar volume node showing ``image`` (with display nodes, as Slicer's loaders do).

    For tests and headless scripts on a ``create_headless_scene`` scene, which have no Slicer
    loaders; the module itself gets its volume nodes from Slicer. A 2D image becomes a one-slice
    volume, as Slicer loads 2D files.
    """
    volume_node = _add_volume_node(scene, image, name, "vtkMRMLScalarVolumeNode")
    volume_node.CreateDefaultDisplayNodes()
    return volume_node


def store_proposal(
    segmentation_node: slicer.vtkMRMLSegmentationNode,
    labels: Image,
    volume_node: slicer.vtkMRMLScalarVolumeNode,
    model: str,
) -> slicer.vtkMRMLLabelMapVolumeNode:
    """Keep ``model``'s labels for ``segmentation_node`` in the scene, replacing an older proposal.

    A labelmap node "<segmentation> proposal" beside the volume, without display nodes (nothing
    to see in the views), but not hidden from editors: Slicer's Save Data dialog must list it for
    it to be saved with the scene.
    """
    scene = segmentation_node.GetScene()
    previous = proposal_node(segmentation_node)
    if previous is not None:
        scene.RemoveNode(previous)
    name = f"{segmentation_node.GetName()} proposal"
    labelmap_node = _add_volume_node(scene, labels, name, "vtkMRMLLabelMapVolumeNode")
    labelmap_node.SetAttribute(PROPOSAL_MODEL_ATTRIBUTE, model)
    labelmap_node.SetNodeReferenceID(PROPOSAL_VOLUME_ROLE, volume_node.GetID())
    segmentation_node.SetNodeReferenceID(PROPOSAL_ROLE, labelmap_node.GetID())
    _place_beside(labelmap_node, volume_node)
    return labelmap_node


def proposal_node(
    segmentation_node: slicer.vtkMRMLSegmentationNode,
) -> slicer.vtkMRMLLabelMapVolumeNode | None:
    """The labelmap node holding the model's proposal for this segmentation node, if any."""
    return segmentation_node.GetNodeReference(PROPOSAL_ROLE)


def _add_volume_node(
    scene: slicer.vtkMRMLScene, image: Image, name: str, class_name: str
) -> slicer.vtkMRMLScalarVolumeNode:
    volume = as_volume(image)
    volume_node = scene.AddNewNodeByClass(class_name, name)
    slicer.util.updateVolumeFromArray(volume_node, _vtk_compatible(volume.array))
    volume_node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijk_to_ras_matrix(volume)))
    return volume_node


def segmentation_from_labels(
    labels: Image,
    label_map: LabelMap,
    reference_volume_node: slicer.vtkMRMLScalarVolumeNode,
    *,
    into: str | slicer.vtkMRMLSegmentationNode,
    replace: bool = True,
) -> slicer.vtkMRMLSegmentationNode:
    """One segment per label value present in ``labels``, named, coloured and coded from ``label_map``.

    ``into`` is the name of a new segmentation node, or an existing node to update: with ``replace``
    all its segments go, otherwise only those named like a label of ``label_map``, so that a re-run
    replaces the model's segments (absent labels included) while the user's own segments stay.
    The reference geometry is the reference volume, and the node goes beside that volume (in its
    scene, under its study in the subject hierarchy).
    """
    present_values = _present_label_values(labels.array, label_map)
    segmentation_node = (
        _new_segmentation_node(reference_volume_node.GetScene(), into) if isinstance(into, str) else into
    )
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    segmentation = segmentation_node.GetSegmentation()
    if replace:
        segmentation.RemoveAllSegments()
    else:
        _remove_segments_named(segmentation, {info.name for info in label_map.values()})
    previous_ids = set(segmentation.GetSegmentIDs())
    if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
        _oriented_labelmap(labels), segmentation_node, "", ""
    ):
        raise SlicerOperationError(
            f"Slicer could not import the labels into '{segmentation_node.GetName()}'."
        )
    new_ids = [segment_id for segment_id in segmentation.GetSegmentIDs() if segment_id not in previous_ids]
    # Slicer adds one segment per label value, in increasing value order.
    for segment_id, value in zip(new_ids, present_values, strict=True):
        _describe_segment(segmentation.GetSegment(segment_id), label_map[value])
    _place_beside(segmentation_node, reference_volume_node)
    return segmentation_node


def labels_from_segmentation(
    segmentation_node: slicer.vtkMRMLSegmentationNode,
    reference_volume_node: slicer.vtkMRMLScalarVolumeNode,
    label_map: LabelMap,
    *,
    map_unknown: bool = False,
) -> tuple[Image, LabelMap]:
    """Label image on the reference volume's grid, with the values of ``label_map``.

    Hidden segments count. A segment that matches no label raises ``InputImageError`` naming it,
    or with ``map_unknown`` gets the next free value and joins the returned label map. Where
    segments overlap, the one whose label comes later in the label map wins (unknown segments
    last): Slicer paints exported segments in the order given, later over earlier.
    """
    values_by_id, full_label_map = _match_segments(segmentation_node, label_map, map_unknown)
    rank = {value: position for position, value in enumerate(full_label_map)}
    ordered_ids = sorted(values_by_id, key=lambda segment_id: rank[values_by_id[segment_id]])
    positions = _export_segments(segmentation_node, ordered_ids, reference_volume_node)
    value_at_position = np.array([0, *(values_by_id[segment_id] for segment_id in ordered_ids)])
    value_at_position = value_at_position.astype(np.min_scalar_type(value_at_position.max()))
    labels = image_from_ijk_to_ras(value_at_position[positions], _ijk_to_world_ras(reference_volume_node))
    return labels, full_label_map


def _ijk_to_world_ras(volume_node: slicer.vtkMRMLScalarVolumeNode) -> np.ndarray:
    ijk_to_ras = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(ijk_to_ras)
    matrix = slicer.util.arrayFromVTKMatrix(ijk_to_ras)
    transform_node = volume_node.GetParentTransformNode()
    if transform_node is None:
        return matrix
    if not transform_node.IsTransformToWorldLinear():
        raise InputImageError(
            f"Volume '{volume_node.GetName()}' is under a non-linear transform: harden the "
            "transform (Data module, right-click the volume) and run again."
        )
    return slicer.util.arrayFromTransformMatrix(transform_node, toWorld=True) @ matrix


def _vtk_compatible(array: np.ndarray) -> np.ndarray:
    """Narrow what VTK volumes reject (bool, 64-bit integers) to the smallest lossless type."""
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype.kind in "iu" and array.dtype.itemsize == 8 and array.size:
        return array.astype(
            np.promote_types(np.min_scalar_type(array.min()), np.min_scalar_type(array.max()))
        )
    return array


def _oriented_labelmap(labels: Image) -> slicer.vtkOrientedImageData:
    """Labels as Slicer's in-memory labelmap, so the import needs no temporary volume node."""
    volume = as_volume(labels)
    oriented = slicer.vtkOrientedImageData()
    oriented.SetDimensions(*volume.size)
    voxels = numpy_support.numpy_to_vtk(_vtk_compatible(volume.array).ravel(), deep=True)
    oriented.GetPointData().SetScalars(voxels)
    oriented.SetImageToWorldMatrix(slicer.util.vtkMatrixFromArray(ijk_to_ras_matrix(volume)))
    return oriented


def _present_label_values(array: np.ndarray, label_map: LabelMap) -> list[int]:
    present = [int(value) for value in np.unique(array) if value != 0]
    unknown = [value for value in present if value not in label_map]
    if unknown:
        raise InputImageError(
            f"Label values {unknown} are not in the label map (values {sorted(label_map)}): "
            "these labels were not made by this model."
        )
    return present


def _new_segmentation_node(scene: slicer.vtkMRMLScene, name: str) -> slicer.vtkMRMLSegmentationNode:
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation_node.CreateDefaultDisplayNodes()
    return segmentation_node


def _remove_segments_named(segmentation: slicer.vtkSegmentation, names: set[str]) -> None:
    folded_names = {name.casefold() for name in names}
    for segment_id in segmentation.GetSegmentIDs():
        if segmentation.GetSegment(segment_id).GetName().casefold() in folded_names:
            segmentation.RemoveSegment(segment_id)


def _describe_segment(segment: slicer.vtkSegment, info: LabelInfo) -> None:
    """Name, colour and codes from the label map; without a type code Slicer's default stays."""
    segment.SetName(info.name)
    segment.SetNameAutoGenerated(False)
    segment.SetColor(*info.color)
    segment.SetColorAutoGenerated(False)
    if info.type is not None:
        segment.SetTerminology(terminology_entry(info))


def _place_beside(node: slicer.vtkMRMLNode, reference_node: slicer.vtkMRMLNode) -> None:
    """Same subject-hierarchy parent (the study) as the reference, if the reference has an item."""
    hierarchy = node.GetScene().GetSubjectHierarchyNode()
    reference_item = hierarchy.GetItemByDataNode(reference_node) if hierarchy else 0
    if not reference_item:
        return
    parent_item = hierarchy.GetItemParent(reference_item)
    item = hierarchy.GetItemByDataNode(node)
    if item:
        hierarchy.SetItemParent(item, parent_item)
    else:
        hierarchy.CreateItem(parent_item, node)


def _match_segments(
    segmentation_node: slicer.vtkMRMLSegmentationNode, label_map: LabelMap, map_unknown: bool
) -> tuple[dict[str, int], LabelMap]:
    """Label value of every segment, and the label map extended by the unknown segments."""
    segmentation = segmentation_node.GetSegmentation()
    full_label_map = dict(label_map)
    values_by_id = {}
    for segment_id in segmentation.GetSegmentIDs():
        segment = segmentation.GetSegment(segment_id)
        value = _matching_label_value(segment, full_label_map)
        if value is None:
            if not map_unknown:
                raise InputImageError(
                    f"Segment '{segment.GetName()}' of '{segmentation_node.GetName()}' matches no "
                    f"label of the model ({', '.join(info.name for info in label_map.values())}): "
                    "rename it to one of these or delete it."
                )
            value = max(full_label_map, default=0) + 1
            full_label_map[value] = _label_info_from_segment(segment, value)
        values_by_id[segment_id] = value
    return values_by_id, full_label_map


def _matching_label_value(segment: slicer.vtkSegment, label_map: LabelMap) -> int | None:
    name = segment.GetName().casefold()
    by_name = [value for value, info in label_map.items() if info.name.casefold() == name]
    if by_name:
        return by_name[0]
    _, type_code, modifier_code = terminology_codes(segment.GetTerminology())
    by_codes = [
        value
        for value, info in label_map.items()
        if type_code and _same_code(info.type, type_code) and _same_code(info.modifier, modifier_code)
    ]
    return by_codes[0] if by_codes else None


def _same_code(first: CodeTriple | None, second: CodeTriple | None) -> bool:
    """Scheme and value decide; the meaning is free text that differs between lists."""
    return (first or ("", ""))[:2] == (second or ("", ""))[:2]


def _label_info_from_segment(segment: slicer.vtkSegment, value: int) -> LabelInfo:
    category, type_code, modifier_code = terminology_codes(segment.GetTerminology())
    return LabelInfo(
        value=value,
        name=segment.GetName(),
        color=tuple(segment.GetColor()),
        category=category or ANATOMICAL_STRUCTURE,
        type=type_code,
        modifier=modifier_code,
    )


def _export_segments(
    segmentation_node: slicer.vtkMRMLSegmentationNode,
    segment_ids: list[str],
    reference_volume_node: slicer.vtkMRMLScalarVolumeNode,
) -> np.ndarray:
    """Voxels of the reference grid: 1 + position in ``segment_ids`` of the segment there, 0 = none."""
    if not segment_ids:  # Slicer's export of nothing yields an image without voxels
        return np.zeros(reference_volume_node.GetImageData().GetDimensions()[::-1], np.uint8)
    scene = segmentation_node.GetScene()
    with removing_added_nodes(scene):  # the export adds a labelmap, its display node, a colour table
        labelmap_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation_node,
            segment_ids,
            labelmap_node,
            reference_volume_node,
            slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY,
        ):
            raise SlicerOperationError(
                f"Slicer could not export the segments of '{segmentation_node.GetName()}'."
            )
        return slicer.util.arrayFromVolume(labelmap_node).copy()


@contextmanager
def removing_added_nodes(scene: slicer.vtkMRMLScene, *, keep_on_success: bool = False) -> Iterator[None]:
    """Remove the nodes added to ``scene`` inside the block: always (temporary nodes), or with
    ``keep_on_success`` only when the block raises, so that no partial result stays."""
    existing_ids = _node_ids(scene)
    try:
        yield
    except BaseException:
        _remove_nodes_except(scene, existing_ids)
        raise
    if not keep_on_success:
        _remove_nodes_except(scene, existing_ids)


def _remove_nodes_except(scene: slicer.vtkMRMLScene, kept_ids: set[str]) -> None:
    for node_id in _node_ids(scene) - kept_ids:
        node = scene.GetNodeByID(node_id)
        if node is not None:  # removing a node can remove the nodes it owns
            scene.RemoveNode(node)


def _node_ids(scene: slicer.vtkMRMLScene) -> set[str]:
    return {scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())}
