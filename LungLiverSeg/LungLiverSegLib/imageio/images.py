"""Reading and writing images and segmentations, with exact geometry and user-facing errors.

Every reader returns a ``geometry.Image`` (LPS, array ``[k, j, i]``); every failure a user can fix
(missing file, empty folder, several DICOM series, not an image) raises ``InputImageError`` naming
the file. Writers are atomic (temporary file in the target folder, then ``os.replace``) so an
interrupted run never leaves half a file behind, and they refuse to overwrite unless asked.

``.seg.nrrd`` files are 3D Slicer segmentations: one label map layer whose header
(``segnrrd``) names, colours and codes each segment.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LungLiverSegLib.errors import InputImageError, LungLiverSegError, OutputWriteError
from LungLiverSegLib.files import atomic_output
from LungLiverSegLib.geometry import Image, as_volume, from_sitk, to_sitk
from LungLiverSegLib.imageio.segnrrd import (
    is_segmentation,
    label_map_from_header,
    segmentation_header,
    unnamed_segments,
)
from LungLiverSegLib.imageio.suffixes import SEGMENTATION_SUFFIX, WRITABLE_SUFFIXES, split_image_name
from LungLiverSegLib.labels import LabelMap

NIFTI_SUFFIXES = (".nii.gz", ".nii")
NIFTI1_HEADER_BYTES = 348
READ_CHUNK_BYTES = 1 << 24
MODALITY_TAG, SERIES_UID_TAG, SERIES_DESCRIPTION_TAG = "0008|0060", "0020|000e", "0008|103e"


@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series found in a folder; ``files`` are sorted along the slice normal."""

    uid: str
    description: str
    modality: str
    files: tuple[str, ...]


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


def list_dicom_series(folder: str | Path) -> list[DicomSeries]:
    """Every DICOM series directly inside ``folder`` (not its subfolders)."""
    reader = sitk.ImageSeriesReader
    uids = reader.GetGDCMSeriesIDs(str(folder))
    return [_describe_series(reader.GetGDCMSeriesFileNames(str(folder), uid), uid) for uid in uids]


def write_image(path: str | Path, image: Image, *, overwrite: bool = False) -> Path:
    """Write ``image`` in the format its extension names (compressed, atomic, no silent overwrite)."""
    path = Path(path)
    if _writable_suffix(path) == ".png":
        _check_png_compatible(path, image)
    _write_atomically(path, to_sitk(image), overwrite)
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
    img = _execute_reader(path)
    labels = _image_with_metadata(from_sitk(img), path, modality="")
    if not is_segmentation(img.GetMetaDataKeys()):
        return labels, unnamed_segments(labels.array)
    if labels.array.ndim > labels.ndim:
        raise InputImageError(
            f"{path}: segments overlap ({labels.array.shape[-1]} layers); "
            "make them non-overlapping in Slicer's Segment Editor and save again"
        )
    header = {key: img.GetMetaData(key) for key in img.GetMetaDataKeys()}
    return labels, label_map_from_header(path, header)


def _read_file(path: Path) -> Image:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    if not sitk.ImageFileReader.GetImageIOFromFileName(str(path)):
        raise InputImageError(f"{path}: not an image file SimpleITK can read (corrupt, or wrong extension)")
    img = _execute_reader(path, reader)
    if split_image_name(path)[1] in NIFTI_SUFFIXES:
        _check_nifti_complete(path)
    modality = reader.GetMetaData(MODALITY_TAG).strip() if reader.HasMetaDataKey(MODALITY_TAG) else ""
    image = _image_with_metadata(_gray_if_colourless(from_sitk(img)), path, modality)
    if reader.HasMetaDataKey(SERIES_UID_TAG):
        image.metadata["series_uid"] = reader.GetMetaData(SERIES_UID_TAG).strip()
    return image


def _execute_reader(path: Path, reader: sitk.ImageFileReader | None = None) -> sitk.Image:
    """Run a reader, turning SimpleITK's multi-line exceptions into a one-line InputImageError."""
    if reader is None:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
    try:
        return reader.Execute()
    except RuntimeError as error:
        raise InputImageError(f"{path}: could not be read as an image ({_last_line(error)})") from None


def _check_nifti_complete(path: Path) -> None:
    """Refuse a cut-off NIfTI file: ITK reads it without complaint, zero-filling the missing voxels."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            header = stream.read(NIFTI1_HEADER_BYTES)
            expected = _nifti1_file_bytes(header)
            available = len(header) + sum(
                len(chunk) for chunk in iter(lambda: stream.read(READ_CHUNK_BYTES), b"")
            )
    except (OSError, EOFError) as error:
        raise InputImageError(f"{path}: could not be read as an image ({error})") from None
    if expected is not None and available < expected:
        raise InputImageError(
            f"{path}: could not be read as an image (file cut off: {available} of {expected} bytes)"
        )


def _check_nifti_written(path: Path) -> None:
    """Refuse a NIfTI file we just wrote that is shorter than its header promises, without reading
    its voxels again: the file's size, or for ``.gz`` gzip's trailer (its last 4 bytes hold the
    uncompressed size mod 2**32), which a cut-off file does not end with."""
    compressed = path.name.lower().endswith(".gz")
    with (gzip.open if compressed else open)(path, "rb") as stream:
        expected = _nifti1_file_bytes(stream.read(NIFTI1_HEADER_BYTES))
    if expected is None:
        return
    if not compressed:
        complete = path.stat().st_size >= expected
    else:
        with path.open("rb") as stream:
            stream.seek(-4, os.SEEK_END)
            complete = struct.unpack("<I", stream.read(4))[0] == expected % 2**32
    if not complete:
        raise InputImageError(f"{path}: cut off (shorter than the {expected} bytes its header promises)")


def _nifti1_file_bytes(header: bytes) -> int | None:
    """Header + voxel bytes a NIfTI-1 header promises, or None for other headers (NIfTI-2)."""
    for endian in "<>":
        if (
            len(header) == NIFTI1_HEADER_BYTES
            and struct.unpack(endian + "i", header[:4])[0] == NIFTI1_HEADER_BYTES
        ):
            dims = struct.unpack(endian + "8h", header[40:56])
            bits_per_voxel = struct.unpack(endian + "h", header[72:74])[0]
            voxel_offset = struct.unpack(endian + "f", header[108:112])[0]
            voxels = int(np.prod(dims[1 : dims[0] + 1], dtype=np.int64))
            return max(int(voxel_offset), NIFTI1_HEADER_BYTES) + voxels * bits_per_voxel // 8
    return None


def _last_line(error: Exception) -> str:
    """The informative last line of a (multi-line) SimpleITK exception."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


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
    series = _choose_series(folder, list_dicom_series(folder), series_uid)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(series.files))
    try:
        img = reader.Execute()
    except RuntimeError as error:
        message = f"{folder}: DICOM series {series.uid!r} could not be read ({_last_line(error)})"
        raise InputImageError(message) from None
    image = _image_with_metadata(from_sitk(img), folder, series.modality)
    image.metadata.update({"series_uid": series.uid, "series_description": series.description})
    return image


def _choose_series(folder: Path, found: list[DicomSeries], series_uid: str | None) -> DicomSeries:
    if not found:
        raise InputImageError(f"{folder}: folder holds no DICOM series (and is not an image file)")
    if series_uid is None and len(found) == 1:
        return found[0]
    matching = [series for series in found if series.uid == series_uid]
    if matching:
        return matching[0]
    listing = "; ".join(f"{s.uid} ({s.description or 'no description'}, {len(s.files)} files)" for s in found)
    problem = f"has no series {series_uid}" if series_uid is not None else f"holds {len(found)} DICOM series"
    raise InputImageError(f"{folder}: {problem}; choose one with series_uid / --series-uid: {listing}")


def _describe_series(files: tuple[str, ...], uid: str) -> DicomSeries:
    reader = sitk.ImageFileReader()
    reader.SetFileName(files[0])
    reader.ReadImageInformation()

    def tag(key: str) -> str:
        return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else ""

    return DicomSeries(uid, tag(SERIES_DESCRIPTION_TAG), tag(MODALITY_TAG), tuple(files))


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


def _write_atomically(path: Path, img: sitk.Image, overwrite: bool) -> None:
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
            sitk.WriteImage(img, str(temporary), useCompression=True)
        except RuntimeError as error:  # ITK's reason names the temporary file: name the target
            reason = _last_line(error).replace(str(temporary), path.name)
            raise OutputWriteError(f"{path}: could not be written: {reason}") from None


def _check_written(path: Path, img: sitk.Image) -> Callable[[Path], None]:
    """A check that the written file holds ``img``'s whole grid (header read back; NIfTI voxels
    counted, since ITK reads a cut-off NIfTI without complaint)."""

    def check(written: Path) -> None:
        try:
            if split_image_name(path)[1] in NIFTI_SUFFIXES:
                _check_nifti_written(written)
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
