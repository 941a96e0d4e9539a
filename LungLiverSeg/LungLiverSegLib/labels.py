"""What a label value means: segment name, colour and DICOM/SNOMED-CT terminology.

A model bundle's label map is a ``dict[int, LabelInfo]``; the same objects name and colour the
segments of a ``.seg.nrrd`` file and of a Slicer segmentation node, so label values never get
shuffled between the model, the files and the scene.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CodeTriple = tuple[str, str, str]  # (coding scheme designator, code value, code meaning)

# SNOMED-CT codes of what the models segment (DICOM CID 7151 / Slicer's General Anatomy list)
ANATOMICAL_STRUCTURE: CodeTriple = ("SCT", "123037004", "Anatomical Structure")
ALTERED_STRUCTURE: CodeTriple = ("SCT", "49755003", "Morphologically Altered Structure")
LUNG: CodeTriple = ("SCT", "39607008", "Lung")
LIVER: CodeTriple = ("SCT", "10200004", "Liver")
NEOPLASM: CodeTriple = ("SCT", "108369006", "Neoplasm")
RIGHT: CodeTriple = ("SCT", "24028007", "Right")
LEFT: CodeTriple = ("SCT", "7771000", "Left")

# Slicer's terminology contexts, as written in .seg.nrrd files and segmentation nodes
TERMINOLOGY_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"


@dataclass(frozen=True)
class LabelInfo:
    """One segment of a label map. ``color`` is RGB in 0..1."""

    value: int
    name: str
    color: tuple[float, float, float] = (0.5, 0.5, 0.5)
    category: CodeTriple = ANATOMICAL_STRUCTURE
    type: CodeTriple | None = None
    modifier: CodeTriple | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


LabelMap = dict[int, LabelInfo]


def default_label_name(value: int) -> str:
    """Name of a label value nobody named (a plain label file, an unmapped value): ``label_<value>``."""
    return f"label_{value}"
