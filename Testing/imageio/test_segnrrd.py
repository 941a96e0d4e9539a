"""Slicer's segmentation header and terminology, checked against 3D Slicer's own code (slicer-core)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from LungLiverSegLib.errors import InputImageError
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.imageio import segnrrd, write_segmentation
from LungLiverSegLib.labels import (
    ANATOMIC_CONTEXT,
    ANATOMICAL_STRUCTURE,
    LEFT,
    LIVER,
    LUNG,
    TERMINOLOGY_CONTEXT,
    LabelInfo,
)

LEFT_LUNG = LabelInfo(2, "left lung", (0.5, 0.6, 0.8), type=LUNG, modifier=LEFT)
LIVER_LABEL = LabelInfo(1, "liver", (0.87, 0.47, 0.35), type=LIVER)


def slicer_module():
    return pytest.importorskip("slicer", reason="needs slicer-core (pip install 'slicer-core==5.11.*')")


def test_terminology_codes_reads_back_what_terminology_entry_writes():
    entry = segnrrd.terminology_entry(LEFT_LUNG)
    assert segnrrd.terminology_codes(entry) == (ANATOMICAL_STRUCTURE, LUNG, LEFT)
    assert segnrrd.terminology_codes(segnrrd.terminology_entry(LIVER_LABEL)) == (
        ANATOMICAL_STRUCTURE,
        LIVER,
        None,
    )


@pytest.mark.parametrize(
    "entry", ["", "context only", "ctx~SCT^^~^^", "ctx~SCT^^Anatomical Structure~^^Lung"]
)
def test_codes_without_a_code_value_count_as_absent(entry):
    assert segnrrd.terminology_codes(entry) == (None, None, None)


@pytest.mark.slicer
def test_terminology_entry_is_what_slicer_serialises():
    slicer = slicer_module()

    def value_scheme_meaning(code):
        return (code[1], code[0], code[2]) if code else ("", "", "")

    expected = slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(
        TERMINOLOGY_CONTEXT,
        *value_scheme_meaning(LEFT_LUNG.category),
        *value_scheme_meaning(LEFT_LUNG.type),
        *value_scheme_meaning(LEFT_LUNG.modifier),
        ANATOMIC_CONTEXT,
        *[""] * 6,
    )
    assert segnrrd.terminology_entry(LEFT_LUNG) == expected


@pytest.mark.parametrize("color", ["0.5 0.5", "0.5 0.5 0.5 1", "red"])
def test_a_segment_colour_that_is_not_three_numbers_is_refused(tmp_path, color):
    header = {"Segment0_ID": "Segment_1", "Segment0_LabelValue": "1", "Segment0_Color": color}
    with pytest.raises(
        InputImageError, match=re.escape(f"segment 0 has the colour {color!r}, not 3 numbers")
    ):
        segnrrd.label_map_from_header(tmp_path / "x.seg.nrrd", header)
    header["Segment0_Color"] = "0.25 0.5 1"
    assert segnrrd.label_map_from_header(tmp_path / "x.seg.nrrd", header)[1].color == (0.25, 0.5, 1.0)


@pytest.mark.slicer
def test_slicer_reads_the_segments_of_a_written_seg_nrrd(tmp_path):
    slicer_module()
    from LungLiverSegLib.slicer_module.scene import create_headless_scene

    labels = np.zeros((4, 5, 6), np.uint8)
    labels[1:3, 1:4, 1:3], labels[1:3, 1:4, 4:6] = 1, 2
    path = write_segmentation(
        tmp_path / "x.seg.nrrd",
        Image(labels, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0)),
        {1: LIVER_LABEL, 2: LEFT_LUNG},
    )
    scene = create_headless_scene()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    segmentation = node.GetSegmentation()
    segments = [segmentation.GetNthSegment(n) for n in range(segmentation.GetNumberOfSegments())]
    assert [(s.GetName(), s.GetLabelValue()) for s in segments] == [("liver", 1), ("left lung", 2)]
    assert segments[1].GetColor() == pytest.approx(LEFT_LUNG.color, abs=1e-6)
    assert segments[1].GetTerminology() == segnrrd.terminology_entry(LEFT_LUNG)
