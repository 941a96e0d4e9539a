"""Reading and writing images and segmentations, with exact geometry and user-facing errors.

Every reader returns a ``geometry.Image`` (LPS, array ``[k, j, i]``); every failure a user can fix
(missing file, empty folder, several DICOM series, not an image, a grid or voxels ITK would
silently replace: ``headers``, ``nifti``, ``dicom``) raises ``InputImageError`` naming the file.
ITK's own warning lines are silenced while it reads (``itk``): these checks say what matters.
Writers are atomic (temporary file in the target folder, then ``os.replace``) so an interrupted
run never leaves half a file behind, and they refuse to overwrite unless asked.

``.seg.nrrd`` files are 3D Slicer segmentations: one label map layer whose header
(``segnrrd``) names, colours and codes each segment.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LungLiverSegLib.errors import InputImageError, LungLiverSegError, OutputWriteError
from LungLiverSegLib.files import atomic_output, exists_error
from LungLiverSegLib.geometry import Image, as_volume, from_sitk, to_sitk
from LungLiverSegLib.imageio import dicom, itk, nifti
from LungLiverSegLib.imageio.headers import check_text_header
from LungLiverSegLib.imageio.segnrrd import (
    is_segmentation,
    label_map_from_header,
    segmentation_header,
    unnamed_segments,
)
from LungLiverSegLib.imageio.suffixes import (
    NIFTI_SUFFIXES,
    SEGMENTATION_SUFFIX,
    WRITABLE_SUFFIXES,
    split_image_name,
)
from LungLiverSegLib.labels import LabelMap


def read_image(path: str | Path, series_uid: str | None = None) -> Image:
    """Read a NIfTI/NRRD/MetaImage/PNG/JPEG/BMP/TIFF file, a DICOM file or a DICOM series folder.

    ``series_uid`` picks one series when a folder holds several. 2D pictures stay 2D (``[j, i]``);
    colour pictures keep a trailing RGB axis unless all colour channels are equal (then gray).
    """
    path = Path(path)
    if not path.exists():
        raise InputImageError(f"{path}: no such file or folder")
    if path.is_dir():
        return _read_dicom_folder(path, series_uid)
    if split_image_name(path)[1] == SEGMENTATION_SUFFIX:
        return read_segmentation(path)[0]
    return _read_file(path)


def write_image(path: str | Path, image: Image, *, overwrite: bool = False, compress: bool = True) -> Path:
    """Write ``image`` in the format its extension names (atomic, no silent overwrite); compressed
    unless ``compress`` is False: a file handed to a child process and deleted after is written
    and read twice as fast raw."""
    path = Path(path)
    if _writable_suffix(path) == ".png":
        _check_png_compatible(path, image)
    _write_atomically(path, to_sitk(image), overwrite, compress)
    return path


def check_output_path(path: str | Path, *, overwrite: bool = False) -> Path:
    """Refuse, before any work, an output that could not be written: a format we cannot write, an
    existing file without ``overwrite``, a folder in its place, or a parent that is a file or that
    this user cannot write to. The write itself still checks everything (a disk can fill up)."""
    path = Path(path)
    if path.is_dir():
        raise LungLiverSegError(f"{path}: is a folder; give the output file's name")
    _writable_suffix(path)
    if path.exists() and not overwrite:
        raise exists_error(path)
    parent = next(folder for folder in path.absolute().parents if folder.exists())
    if not parent.is_dir():
        raise OutputWriteError(f"{path}: cannot be written: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        reason = f"no permission to write in {parent} (or it is read-only)"
        raise OutputWriteError(f"{path}: cannot be written: {reason}")
    return path


def write_segmentation(
    path: str | Path, labels: Image, label_map: LabelMap, *, overwrite: bool = False
) -> Path:
    """Write a label map; ``.seg.nrrd`` becomes a Slicer segmentation named after ``label_map``.

    Label values present in the voxels but missing from ``label_map`` still get a (generic)
    segment, so nothing segmented is lost. Other extensions get the plain label image.
    """
    path = Path(path)
    compact = labels.with_array(_compact_label_array(labels.array))
    if _writable_suffix(path) != SEGMENTATION_SUFFIX:
        return write_image(path, compact, overwrite=overwrite)
    volume = as_volume(compact)
    converted = to_sitk(volume)
    for key, value in segmentation_header(volume, label_map).items():
        converted.SetMetaData(key, value)
    _write_atomically(path, converted, overwrite)
    return path


def read_segmentation(path: str | Path) -> tuple[Image, LabelMap]:
    """Label image and segment descriptions of a ``.seg.nrrd`` (or generic names for a label file)."""
    path = Path(path)
    if not path.is_file():
        raise InputImageError(f"{path}: no such file")
    reader = sitk.ImageFileReader()
    labels = _image_with_metadata(_read_checked(path, reader), path, modality="")
    if not is_segmentation(reader.GetMetaDataKeys()):
        return labels, unnamed_segments(labels.array)
    if labels.array.ndim > labels.ndim:
        raise InputImageError(
            f"{path}: segments overlap ({labels.array.shape[-1]} layers); "
            "make them non-overlapping in Slicer's Segment Editor and save again"
        )
    header = {key: reader.GetMetaData(key) for key in reader.GetMetaDataKeys()}
    return labels, label_map_from_header(path, header)


def _read_file(path: Path) -> Image:
    reader = sitk.ImageFileReader()
    image = _gray_if_colourless(_read_checked(path, reader))
    modality = (
        reader.GetMetaData(dicom.MODALITY_TAG).strip() if reader.HasMetaDataKey(dicom.MODALITY_TAG) else ""
    )
    image = _image_with_metadata(image, path, modality)
    if reader.HasMetaDataKey(dicom.SERIES_UID_TAG):
        image.metadata["series_uid"] = reader.GetMetaData(dicom.SERIES_UID_TAG).strip()
    return image


def _read_checked(path: Path, reader: sitk.ImageFileReader) -> Image:
    """Read one file with ``reader``, refusing what ITK would hide: a grid in the header that ITK
    would replace or let through (checked before ITK reads the file: a sheared or NaN grid makes it
    print raw lines) and a cut-off NIfTI file; NaN voxels niftilib read as 0 are put back."""
    suffix = split_image_name(path)[1]
    if not suffix:  # a DICOM file, or no image
        dicom.check_file(path)
    image_io = sitk.ImageFileReader.GetImageIOFromFileName(str(path))
    if not image_io:
        raise InputImageError(f"{path}: not an image file SimpleITK can read (corrupt, or wrong extension)")
    reader.SetImageIO(image_io)  # found once: Execute would probe every format again
    header = nifti.read_header(path) if suffix in NIFTI_SUFFIXES else None
    if header is not None:
        nifti.check_header(path, header)
    check_text_header(path, suffix)
    reader.SetFileName(str(path))
    image = from_sitk(itk.checked(f"{path}: could not be read as an image", reader.Execute))
    if header is not None:
        nifti.check_voxels(path, header, image)
    return image


def _gray_if_colourless(image: Image) -> Image:
    """Drop alpha; collapse colour channels that are all equal (a gray picture saved as RGB)."""
    if image.array.ndim == image.ndim:
        return image
    colour = image.array[..., :3] if image.array.shape[-1] >= 3 else image.array[..., :1]
    if all(np.array_equal(colour[..., 0], colour[..., channel]) for channel in range(colour.shape[-1])):
        return image.with_array(np.ascontiguousarray(colour[..., 0]))
    return image.with_array(np.ascontiguousarray(colour))


def _image_with_metadata(image: Image, path: Path, modality: str) -> Image:
    image.metadata.update({"source_path": str(path), "modality": modality})
    return image


def _read_dicom_folder(folder: Path, series_uid: str | None) -> Image:
    series = dicom.checked_series(folder, series_uid)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(series.files))
    img = itk.checked(f"{folder}: DICOM series {series.uid!r} could not be read", reader.Execute)
    image = _image_with_metadata(from_sitk(img), folder, series.modality)
    image.metadata.update({"series_uid": series.uid, "series_description": series.description})
    return image


def _writable_suffix(path: Path) -> str:
    suffix = split_image_name(path)[1]
    if suffix in WRITABLE_SUFFIXES:
        return suffix
    raise LungLiverSegError(f"{path}: cannot write this format; use one of {', '.join(WRITABLE_SUFFIXES)}")


def _check_png_compatible(path: Path, image: Image) -> None:
    if image.ndim != 2 or image.array.dtype not in (np.uint8, np.uint16):
        raise LungLiverSegError(
            f"{path}: PNG holds only 2D 8- or 16-bit images, this is {image.ndim}D {image.array.dtype}; "
            "write .nii.gz or .nrrd instead"
        )


def _write_atomically(path: Path, img: sitk.Image, overwrite: bool, compress: bool = True) -> None:
    """SimpleITK infers the format from the name, so the temporary file keeps the extension.

    The file is read back before it takes the target's place: ITK's NIfTI writer reports a full
    disk only in a log line ("wrote only 4096 of ... bytes"), leaving a short file, and other
    formats raise ITK's multi-line exception; both become one ``OutputWriteError`` line.
    """
    suffix = _writable_suffix(path)
    with atomic_output(
        path, overwrite=overwrite, suffix=suffix, verify=_check_written(path, img)
    ) as temporary:
        try:
            sitk.WriteImage(img, str(temporary), useCompression=compress)
        except RuntimeError as error:  # ITK's reason names the temporary file: name the target
            reason = itk.reason(error).replace(str(temporary), path.name)
            raise OutputWriteError(f"{path}: could not be written: {reason}") from None


def _check_written(path: Path, img: sitk.Image) -> Callable[[Path], None]:
    """A check that the written file holds ``img``'s whole grid (header read back; NIfTI voxels
    counted, since ITK reads a cut-off NIfTI without complaint)."""

    def check(written: Path) -> None:
        try:
            if split_image_name(path)[1] in NIFTI_SUFFIXES:
                nifti.check_written(written)
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(written))
            reader.ReadImageInformation()
        except (InputImageError, RuntimeError, EOFError) as error:
            raise OutputWriteError(f"{path}: could not be written completely (is the disk full?)") from error
        if reader.GetSize() != img.GetSize():
            raise OutputWriteError(f"{path}: the written file does not hold the whole image")

    return check


def _compact_label_array(array: np.ndarray) -> np.ndarray:
    """Smallest unsigned type holding the labels (uint8 for < 256 labels), refusing non-labels."""
    if array.size and (array.min() < 0 or not np.array_equal(array, np.round(array))):
        raise ValueError("label values must be non-negative integers")
    largest = int(array.max()) if array.size else 0
    dtype = np.uint8 if largest < 2**8 else np.uint16 if largest < 2**16 else np.uint32
    return array.astype(dtype)
