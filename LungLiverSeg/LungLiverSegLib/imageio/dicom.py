"""DICOM series in a folder: which series there are, and whether their slices stack into one
regular volume.

ITK's series reader stacks the files it is given at their average slice step. A missing or
duplicated slice, an uneven step, a slice tilted or shifted against the others all come out as a
volume with slices misplaced by up to a whole gap (with at most a raw warning line on stderr),
and a cut-off file is left out of the series as if it did not exist. ``checked_series`` reads each
file's position and orientation from its header (a few tenths of a millisecond a file) and
refuses such a series with one line that says what is wrong and where.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LungLiverSegLib.errors import InputImageError
from LungLiverSegLib.files import is_hidden
from LungLiverSegLib.imageio import itk
from LungLiverSegLib.imageio.dicom_lengths import check_element_lengths, has_dicom_magic
from LungLiverSegLib.imageio.headers import check_direction, check_finite, check_spacing

MODALITY_TAG, SERIES_UID_TAG, SERIES_DESCRIPTION_TAG = "0008|0060", "0020|000e", "0008|103e"
POSITION_TAG, ORIENTATION_TAG = "0020|0032", "0020|0037"
SPACING_TAGS = {"0028|0030": "PixelSpacing", "0018|1164": "ImagerPixelSpacing"}
"""Where GDCM reads the in-plane spacing from (ImagerPixelSpacing: X-ray detectors); it reads a
zero, negative or NaN one as 1 mm, an infinite one as garbage."""
DICOMDIR = "DICOMDIR"
"""The one DICOM file name that is an index of files, never a slice."""

SLICE_TOLERANCE = 0.01
"""How far a slice may lie from where the stacked volume puts it, as a fraction of the slice step
(0.025 mm at 2.5 mm): along the slice normal, sideways, and at the edge of a tilted slice.

Headers write positions as decimal strings (rounded to 0.01 mm at worst: under 1% of any step
of 0.5 mm or more), so a smaller tolerance would refuse good series; a missing, duplicated or
shifted slice is off by a large part of a step, a hundred times more."""


@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series found in a folder; ``files`` are sorted along the slice normal."""

    uid: str
    description: str
    modality: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class _Slice:
    """Where one file's slice lies: its top-left voxel, its row and column directions (LPS) and
    its size in millimetres along them."""

    name: str
    position: np.ndarray
    row: np.ndarray
    column: np.ndarray
    extent: float

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row, self.column)


def check_file(path: Path) -> None:
    """Refuse a DICOM file read on its own (a chest X-ray, one slice) that GDCM would read with
    a corrupt element length or a bad pixel spacing; other files pass."""
    check_element_lengths(path)
    if has_dicom_magic(path):
        _check_pixel_spacing(path, _read_header(path))


def list_dicom_series(folder: str | Path) -> list[DicomSeries]:
    """Every DICOM series directly inside ``folder`` (not its subfolders)."""
    folder = Path(folder)
    for path in _dicom_files(folder):
        check_element_lengths(path)
    reader = sitk.ImageSeriesReader
    try:
        uids = reader.GetGDCMSeriesIDs(str(folder))
        files = [reader.GetGDCMSeriesFileNames(str(folder), uid) for uid in uids]
    except RuntimeError as error:  # GDCM gives up on the whole folder for one corrupt file: name it
        for path in _dicom_files(folder):
            _read_header(path)
        raise InputImageError(f"{folder}: its DICOM files could not be read ({itk.reason(error)})") from None
    return [_describe_series(names, uid) for names, uid in zip(files, uids, strict=True)]


def checked_series(folder: Path, series_uid: str | None) -> DicomSeries:
    """The series to read from ``folder`` (``series_uid``, or the only one there), refusing a
    cut-off DICOM file (GDCM leaves it out of every series without a word, and a lost first or
    last slice leaves no gap) and a series whose slices do not stack into a regular volume."""
    found = list_dicom_series(folder)
    _check_all_files_read(folder, found)
    series = _choose(folder, found, series_uid)
    if len(series.files) > 1:
        _check_slices(folder, [_read_slice(Path(name)) for name in series.files])
    else:  # one slice stacks with nothing, but its own spacing still counts
        check_file(Path(series.files[0]))
    return series


def _describe_series(files: tuple[str, ...], uid: str) -> DicomSeries:
    reader = _read_header(Path(files[0]))

    def tag(key: str) -> str:
        return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else ""

    return DicomSeries(uid, tag(SERIES_DESCRIPTION_TAG), tag(MODALITY_TAG), tuple(files))


def _check_all_files_read(folder: Path, found: list[DicomSeries]) -> None:
    in_series = {Path(name).name for series in found for name in series.files}
    for path in _dicom_files(folder):
        if path.name not in in_series:
            raise _unreadable(path)


def _dicom_files(folder: Path) -> list[Path]:
    return [path for path in sorted(folder.iterdir()) if _is_dicom_file(path)]


def _is_dicom_file(path: Path) -> bool:
    """Whether a file is DICOM by its magic or its ``.dcm`` name (a cut-off file may end before the
    magic), leaving out the index (DICOMDIR) and hidden files (macOS's ``._`` copies)."""
    if not path.is_file() or is_hidden(path) or path.name.upper() == DICOMDIR:
        return False
    return path.suffix.lower() == ".dcm" or has_dicom_magic(path)


def _unreadable(path: Path) -> InputImageError:
    return InputImageError(f"{path}: DICOM file could not be read (cut off or corrupt); replace or remove it")


def _choose(folder: Path, found: list[DicomSeries], series_uid: str | None) -> DicomSeries:
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


def _read_header(path: Path) -> sitk.ImageFileReader:
    """A reader holding the file's header tags (no pixels: 0.4 ms a file)."""
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise _unreadable(path) from None
    return reader


def _read_slice(path: Path) -> _Slice:
    """Where the file's slice lies, from its header."""
    reader = _read_header(path)
    _check_pixel_spacing(path, reader)
    position = _tag_numbers(reader, POSITION_TAG, 3)
    orientation = _tag_numbers(reader, ORIENTATION_TAG, 6)
    if position is None or orientation is None:
        raise InputImageError(
            f"{path}: no slice position or orientation (ImagePositionPatient, "
            "ImageOrientationPatient); the slices cannot be stacked into a volume"
        )
    check_finite(path, "slice position", position, "header field ImagePositionPatient")
    row, column = orientation[:3], orientation[3:]
    check_direction(path, np.column_stack([row, column]), "header field ImageOrientationPatient")
    size, spacing = reader.GetSize()[:2], reader.GetSpacing()[:2]
    extent = max(count * step for count, step in zip(size, spacing, strict=True))
    return _Slice(path.name, position, row, column, extent)


def _check_pixel_spacing(path: Path, reader: sitk.ImageFileReader) -> None:
    for tag, name in SPACING_TAGS.items():
        spacing = _tag_numbers(reader, tag, 2)
        if spacing is not None:
            check_spacing(path, spacing, f"header field {name}")


def _tag_numbers(reader: sitk.ImageFileReader, tag: str, count: int) -> np.ndarray | None:
    """The ``count`` numbers (NaN and inf included) of a multi-valued decimal string tag, or None."""
    if not reader.HasMetaDataKey(tag):
        return None
    try:
        values = np.array([float(value) for value in reader.GetMetaData(tag).split("\\")])
    except ValueError:
        return None
    return values if len(values) == count else None


def _check_slices(folder: Path, slices: list[_Slice]) -> None:
    """Refuse slices off one regular grid: a tilted slice first, then a duplicated, missing or
    unevenly spaced one, then one shifted sideways."""
    distances = np.array([slice_.position @ slices[0].normal for slice_ in slices])
    typical = _typical(np.diff(distances))
    _check_orientations(folder, slices, SLICE_TOLERANCE * abs(typical))
    _check_steps(folder, slices, distances, typical)
    _check_sideways(folder, slices, SLICE_TOLERANCE * abs(typical))


def _check_orientations(folder: Path, slices: list[_Slice], tolerance: float) -> None:
    first = slices[0]
    for number, slice_ in enumerate(slices[1:], start=2):
        turn = max(
            float(np.linalg.norm(slice_.row - first.row)), float(np.linalg.norm(slice_.column - first.column))
        )
        if turn * first.extent > tolerance:
            degrees = np.degrees(2 * np.arcsin(min(turn / 2, 1.0)))
            raise InputImageError(
                f"{folder}: slice {number} ({slice_.name}) is tilted {degrees:.2f} degrees against "
                f"slice 1 ({first.name}); the slices do not form one volume"
            )


def _check_steps(folder: Path, slices: list[_Slice], distances: np.ndarray, typical: float) -> None:
    """Refuse when a slice lies off the evenly spaced line ITK stacks them on; name the step at fault."""
    steps = np.diff(distances)
    tolerance = SLICE_TOLERANCE * abs(typical)

    def pair(step: int) -> str:
        return f"slices {step + 1} and {step + 2} ({slices[step].name}, {slices[step + 1].name})"

    duplicates = np.flatnonzero(np.abs(steps) <= tolerance)
    if duplicates.size:
        first = int(duplicates[0])
        raise InputImageError(
            f"{folder}: {pair(first)} lie at the same position, {distances[first]:.2f} mm along the "
            "slice normal: a duplicated slice?"
        )
    evenly = np.linspace(distances[0], distances[-1], len(distances))
    if np.abs(distances - evenly).max() <= tolerance:
        return
    worst = int(np.argmax(np.abs(steps - typical)))
    gaps = round(steps[worst] / typical)
    missing = gaps > 1 and abs(steps[worst] - gaps * typical) <= tolerance
    cause = f"{gaps - 1} slice{'s' if gaps > 2 else ''} missing" if missing else "uneven slice spacing"
    raise InputImageError(
        f"{folder}: {pair(worst)} are {abs(steps[worst]):.2f} mm apart, the others "
        f"{abs(typical):.2f} mm: {cause}"
    )


def _check_sideways(folder: Path, slices: list[_Slice], tolerance: float) -> None:
    """Refuse slices shifted within their plane against the first one (a gantry tilt): the stacked
    volume can only place each slice straight behind the one before."""
    normal = slices[0].normal
    offsets = [slice_.position - slices[0].position for slice_ in slices]
    sideways = np.array([np.linalg.norm(offset - (offset @ normal) * normal) for offset in offsets])
    worst = int(np.argmax(sideways))
    if sideways[worst] > tolerance:
        raise InputImageError(
            f"{folder}: slice {worst + 1} ({slices[worst].name}) is shifted {sideways[worst]:.2f} mm "
            f"sideways against slice 1 ({slices[0].name}), as in a gantry-tilted scan; the slices do "
            "not form a regular grid (resample the series, e.g. in 3D Slicer, first)"
        )


def _typical(steps: np.ndarray) -> float:
    """The lower median step by size: with one gap among two steps, the step that is not a gap."""
    return float(steps[np.argsort(np.abs(steps))][(len(steps) - 1) // 2])
