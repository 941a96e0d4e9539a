"""Reading and writing images and label maps: NIfTI, NRRD, MetaImage, PNG/JPEG, DICOM series and
Slicer's ``.seg.nrrd``, always keeping the exact geometry.

``suffixes`` says which file names are images (``split_image_name``), ``images`` reads and writes
them, ``segnrrd`` converts a label map to Slicer's segment header and terminology and back.
``headers``, ``nifti`` and ``dicom`` refuse, while reading, what ITK would silently replace: a
bad spacing, origin or direction in a header, NaN voxels read as 0, cut-off files, and DICOM
slices that do not stack into one regular volume.

May import: foundations only.
"""

from LungLiverSegLib.imageio.dicom import DicomSeries, list_dicom_series
from LungLiverSegLib.imageio.images import (
    check_output_path,
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
    "check_output_path",
    "list_dicom_series",
    "read_image",
    "read_segmentation",
    "split_image_name",
    "write_image",
    "write_segmentation",
]
