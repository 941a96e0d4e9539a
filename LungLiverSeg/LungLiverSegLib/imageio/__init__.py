"""Reading and writing images and label maps: NIfTI, NRRD, MetaImage, PNG/JPEG, DICOM series and
Slicer's ``.seg.nrrd``, always keeping the exact geometry.

``suffixes`` says which file names are images (``split_image_name``), ``images`` reads and writes
them, ``segnrrd`` converts a label map to Slicer's segment header and terminology and back.

May import: foundations only.
"""

from LungLiverSegLib.imageio.images import (
    DicomSeries,
    list_dicom_series,
    read_image,
    read_segmentation,
    write_image,
    write_segmentation,
)
from LungLiverSegLib.imageio.suffixes import (
    IMAGE_SUFFIXES,
    SEGMENTATION_SUFFIX,
    WRITABLE_SUFFIXES,
    split_image_name,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "SEGMENTATION_SUFFIX",
    "WRITABLE_SUFFIXES",
    "DicomSeries",
    "list_dicom_series",
    "read_image",
    "read_segmentation",
    "split_image_name",
    "write_image",
    "write_segmentation",
]
