"""Reading and writing images and label maps: NIfTI, NRRD, MetaImage, PNG/JPEG, DICOM series and
Slicer's ``.seg.nrrd``, always keeping the exact geometry.

May import: foundations only.
"""

from LungLiverSegLib.imageio.images import (
    SEGMENTATION_SUFFIX,
    WRITABLE_SUFFIXES,
    DicomSeries,
    list_dicom_series,
    read_image,
    read_segmentation,
    write_image,
    write_segmentation,
)

__all__ = [
    "SEGMENTATION_SUFFIX",
    "WRITABLE_SUFFIXES",
    "DicomSeries",
    "list_dicom_series",
    "read_image",
    "read_segmentation",
    "write_image",
    "write_segmentation",
]
