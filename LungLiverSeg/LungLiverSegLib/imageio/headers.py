"""The voxel grid a file declares, checked where ITK would hide a mistake in it.

ITK reads a NaN, zero or negative spacing in a NRRD or MetaImage header as 1 mm or as a flipped
axis, a NaN origin as 0, and lets a sheared or degenerate direction matrix through; the image is
then segmented on a grid the file never described. So the text headers of NRRD and MetaImage
files are read here before ITK reads them (NIfTI's binary header: ``nifti``; DICOM's tags:
``dicom``). Each refusal is one ``InputImageError`` line naming the file, the header field and
the bad value.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from LungLiverSegLib.errors import InputImageError
from LungLiverSegLib.geometry import GRID_TOLERANCE
from LungLiverSegLib.imageio.suffixes import METAIMAGE_SUFFIXES, NRRD_SUFFIXES

HEADER_LIMIT_BYTES = 1 << 22
"""Where a text header search gives up: a Slicer ``.seg.nrrd`` header with a hundred segments
is about 200 KB; a file without the header's end is binary data, not worth scanning."""
NRRD_SPATIAL_KINDS = ("domain", "space", "time", "???", "none")
"""NRRD axis kinds ITK reads as image axes; the others (``vector``, ``RGB-color``, ``list``...)
are pixel components, whose spacing is NaN by the NRRD standard."""
METAIMAGE_DIRECTION_KEYS = ("TransformMatrix", "Rotation", "Orientation")
METAIMAGE_ORIGIN_KEYS = ("Offset", "Position", "Origin")
_NRRD_VECTOR = re.compile(r"\(([^)]*)\)|none")


def check_spacing(source: str | Path, spacing: ArrayLike, field: str) -> None:
    """Refuse a spacing that is not a positive, finite number of millimetres on every axis."""
    values = np.asarray(spacing, dtype=float)
    if not (np.isfinite(values).all() and (values > 0).all()):
        raise InputImageError(
            f"{source}: voxel spacing {_listed(values)} mm ({field}); "
            "every spacing must be a positive finite number"
        )


def check_finite(source: str | Path, what: str, values: ArrayLike, field: str) -> None:
    """Refuse a NaN or infinite number where the grid is placed (ITK reads a NaN origin as 0)."""
    array = np.asarray(values, dtype=float)
    if not np.isfinite(array).all():
        raise InputImageError(f"{source}: {what} {_listed(array)} ({field}) is not finite")


def check_direction(source: str | Path, columns: ArrayLike, field: str) -> None:
    """Refuse axes that are not perpendicular unit vectors (a sheared, degenerate or NaN grid):
    no voxel has a place on such a grid that resampling and Slicer agree on."""
    matrix = np.asarray(columns, dtype=float)
    identity = np.eye(matrix.shape[1])
    if not (np.isfinite(matrix).all() and np.allclose(matrix.T @ matrix, identity, atol=GRID_TOLERANCE)):
        raise InputImageError(
            f"{source}: image axes {_listed(matrix.T)} ({field}) are not perpendicular "
            "unit vectors (a sheared or degenerate grid); resample it onto a regular grid first"
        )


def check_text_header(path: Path, suffix: str) -> None:
    """Check the grid in a NRRD or MetaImage header before ITK reads it (other formats: nothing)."""
    if suffix in NRRD_SUFFIXES:
        _check_nrrd(path, _text_header(path, ":", end_key=""))
    elif suffix in METAIMAGE_SUFFIXES:
        _check_metaimage(path, _text_header(path, "=", end_key="ElementDataFile"))


def _text_header(path: Path, separator: str, end_key: str) -> dict[str, str]:
    """``key: value`` (NRRD) or ``Key = Value`` (MetaImage) fields up to the line whose key is
    ``end_key`` (NRRD's header ends at a blank line, MetaImage's at ``ElementDataFile``)."""
    fields: dict[str, str] = {}
    with path.open("rb") as stream:
        for raw in iter(lambda: stream.readline(HEADER_LIMIT_BYTES), b""):
            key, _, value = raw.decode("latin-1").partition(separator)
            if key.strip() == end_key or stream.tell() > HEADER_LIMIT_BYTES:
                break
            fields.setdefault(key.strip(), value.strip())
    return fields


def _check_nrrd(path: Path, fields: dict[str, str]) -> None:
    kinds = fields.get("kinds", "").split()
    if "spacings" in fields:
        spacings = _numbers(fields["spacings"])
        spatial = [value for axis, value in enumerate(spacings) if _nrrd_spatial(kinds, axis)]
        check_spacing(path, spatial, "header field spacings")
    if "space directions" in fields:
        field = "header field space directions"
        vectors = [_numbers(match) for match in _NRRD_VECTOR.findall(fields["space directions"]) if match]
        if len({len(vector) for vector in vectors}) == 1 and vectors[0]:  # else ITK refuses it
            columns = np.asarray(vectors).T
            check_spacing(path, np.linalg.norm(columns, axis=0), field)
            check_direction(path, columns / np.linalg.norm(columns, axis=0), field)
    if "space origin" in fields:
        origin = _numbers(fields["space origin"].strip("()"))
        check_finite(path, "origin", origin, "header field space origin")


def _check_metaimage(path: Path, fields: dict[str, str]) -> None:
    if "ElementSpacing" in fields:
        check_spacing(path, _numbers(fields["ElementSpacing"]), "header field ElementSpacing")
    for key in METAIMAGE_DIRECTION_KEYS:
        values = _numbers(fields.get(key, ""))
        size = round(len(values) ** 0.5)
        if values and size * size == len(values):
            check_direction(path, np.reshape(values, (size, size)), f"header field {key}")
    for key in METAIMAGE_ORIGIN_KEYS:
        check_finite(path, "origin", _numbers(fields.get(key, "")), f"header field {key}")


def _nrrd_spatial(kinds: list[str], axis: int) -> bool:
    return axis >= len(kinds) or kinds[axis] in NRRD_SPATIAL_KINDS


def _numbers(text: str) -> list[float]:
    """The numbers in a header value (``nan`` and ``inf`` included); none when one is not a number,
    leaving a malformed field to ITK, which refuses it in its own words."""
    try:
        return [float(value) for value in text.replace(",", " ").split()]
    except ValueError:
        return []


def _listed(values: np.ndarray) -> str:
    """``(1, nan, 2)``, or ``((1, 0), (0, 1))`` for a matrix: short, exact enough to spot the bad value."""
    if values.ndim > 1:
        return "(" + ", ".join(_listed(row) for row in values) + ")"
    return "(" + ", ".join(f"{value:.6g}" for value in values) + ")"
