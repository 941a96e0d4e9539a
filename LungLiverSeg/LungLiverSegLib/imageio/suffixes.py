"""Which file names are images: the one list of suffixes, and the one way to split them off.

Suffixes are lower case; names match them in any case. DICOM is absent on purpose: a DICOM
series is read as a folder, so a folder of ``.dcm`` slices must not count as many images.
"""

from __future__ import annotations

from pathlib import Path

SEGMENTATION_SUFFIX = ".seg.nrrd"
"""3D Slicer's segmentation file: a label map plus segment names, colours and terminology."""

NIFTI_SUFFIXES = (".nii.gz", ".nii")
NRRD_SUFFIXES = (SEGMENTATION_SUFFIX, ".nrrd")
METAIMAGE_SUFFIXES = (".mha", ".mhd")
VOLUME_SUFFIXES = (*NIFTI_SUFFIXES, ".nrrd", *METAIMAGE_SUFFIXES)
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
IMAGE_SUFFIXES = (SEGMENTATION_SUFFIX, *VOLUME_SUFFIXES, *PICTURE_SUFFIXES)
"""Every single-file image ``read_image`` reads (a ``.seg.nrrd`` reads as its label image)."""

WRITABLE_SUFFIXES = (SEGMENTATION_SUFFIX, ".nii.gz", ".nii", ".nrrd", ".mha", ".png")
"""What ``write_image``/``write_segmentation`` write: lossless, one file, geometry kept (PNG: 2D)."""

_LONGEST_FIRST = tuple(sorted(IMAGE_SUFFIXES, key=len, reverse=True))  # ".seg.nrrd" before ".nrrd"


def split_image_name(path: str | Path) -> tuple[str, str]:
    """``(stem, suffix)`` of an image file name: ``"ct.nii.gz"`` -> ``("ct", ".nii.gz")``.

    The suffix comes back in lower case, as listed in ``IMAGE_SUFFIXES``; a name without an image
    suffix comes back whole, with ``""``.
    """
    name = Path(path).name
    lowered = name.lower()
    for suffix in _LONGEST_FIRST:
        if lowered.endswith(suffix):
            return name[: -len(suffix)], suffix
    return name, ""
