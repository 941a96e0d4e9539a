"""The one module that owns image geometry (IJK / LPS / RAS).

Conventions (used everywhere in the project):

* ``Image.array`` is indexed like SimpleITK's ``GetArrayFromImage``: ``[k, j, i]`` for 3D
  (slice, row, column) and ``[j, i]`` for 2D. Index axis ``i`` is the fastest one.
* ``spacing``, ``origin`` and the columns of ``direction`` are given in ``(i, j, k)`` order,
  in millimetres, in the **LPS** patient frame (ITK / DICOM convention).
  ``direction[:, n]`` is the unit vector along which index axis ``n`` increases.
* Physical point of a voxel: ``origin + direction @ (spacing * ijk)``.
* Slicer works in RAS: the conversion happens only here (``ijk_to_ras_matrix`` and
  ``image_from_ijk_to_ras``), never elsewhere.
* Orientation codes name the direction each index axis *points to* (nibabel's axcodes):
  ``"RAS"`` means ``i`` increases towards patient Right, ``j`` towards Anterior and ``k``
  towards Superior. (ITK's own "RAI" naming is the opposite; we never use it.)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from numpy.typing import ArrayLike


@dataclass(init=False)
class Image:
    """A voxel array with its physical geometry (see module docstring for conventions).

    ``direction`` defaults to the identity; spacing and origin are stored as tuples of floats.
    ``metadata`` says where the image came from (``source_path``, ``series_uid``, ``modality``:
    text); ``segment_image``'s result adds its quality measures (``unsure_ratio``,
    ``histogram_distance``: numbers).
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: np.ndarray
    metadata: dict[str, str | float]

    def __init__(
        self,
        array: np.ndarray,
        spacing: Sequence[float],
        origin: Sequence[float],
        direction: ArrayLike | None = None,
        metadata: dict[str, str | float] | None = None,
    ) -> None:
        ndim = len(spacing)
        self.array = array
        self.spacing = tuple(float(s) for s in spacing)
        self.origin = tuple(float(o) for o in origin)
        direction = np.eye(ndim) if direction is None else direction
        self.direction = np.asarray(direction, dtype=float).reshape(ndim, ndim)
        self.metadata = {} if metadata is None else metadata

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3); a trailing colour axis is not counted."""
        return len(self.spacing)

    @property
    def size(self) -> tuple[int, ...]:
        """Size in (i, j, k) order, like SimpleITK's ``GetSize``."""
        return tuple(int(n) for n in self.array.shape[: self.ndim][::-1])

    def with_array(self, array: np.ndarray) -> Image:
        """Same geometry, other voxels (e.g. a label map computed on this grid)."""
        return Image(array, self.spacing, self.origin, self.direction.copy(), dict(self.metadata))


@dataclass(frozen=True, eq=False)
class Grid:
    """Where voxels lie, without the voxels (same conventions as Image): what ``grid_of`` returns,
    so that the functions here take an image or its grid alike."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: np.ndarray

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions."""
        return len(self.size)


Geometry = Image | Grid

GRID_TOLERANCE = 1e-3
"""How far spacing and origin (mm) and the direction cosines may differ on one voxel grid.

Real headers round: NIfTI stores float32 (up to 1e-4 mm at 1600 mm from the origin), DICOM
decimal strings (the CIP test series read by ITK vs its NRRD: 3e-4 mm in the origin, 5e-6 mm in
the spacing), so a tolerance near float64 precision would refuse image/label pairs that belong
together. A real mistake (another spacing, a crop, a shift, a flip) differs by a tenth of a
millimetre or far more. A direction difference of 1e-3 (0.06 degrees) moves a point 100 mm away
by 0.1 mm.
"""

LPS_PATIENT_TO_RAS = np.diag([-1.0, -1.0, 1.0])
# Orientation letter -> (patient axis in LPS order, whether the index axis points to +LPS).
_LETTERS = {"L": (0, True), "R": (0, False), "P": (1, True), "A": (1, False), "S": (2, True), "I": (2, False)}
_LETTER_OF = {place: letter for letter, place in _LETTERS.items()}


def grid_of(image: Geometry) -> Grid:
    """The grid an image's voxels lie on (an independent copy)."""
    if isinstance(image, Grid):
        return image
    return Grid(image.size, image.spacing, image.origin, image.direction.copy())


def to_sitk(image: Image) -> sitk.Image:
    """SimpleITK image with exactly this geometry; a trailing channel axis becomes a vector pixel."""
    array = image.array.astype(np.uint8) if image.array.dtype == bool else image.array
    converted = sitk.GetImageFromArray(array, isVector=array.ndim > image.ndim)
    converted.SetSpacing(image.spacing)
    converted.SetOrigin(image.origin)
    converted.SetDirection(image.direction.ravel().tolist())
    return converted


def from_sitk(img: sitk.Image) -> Image:
    """Image with SimpleITK's exact geometry; vector pixels become a trailing channel axis."""
    ndim = img.GetDimension()
    direction = np.asarray(img.GetDirection(), dtype=float).reshape(ndim, ndim)
    return Image(sitk.GetArrayFromImage(img), img.GetSpacing(), img.GetOrigin(), direction)


def as_volume(image: Image) -> Image:
    """View a 2D image as a one-slice 3D volume (unit spacing, z = 0) so one code path serves both."""
    if image.ndim == 3:
        return image
    grid = _padded_to_3d(grid_of(image))
    return Image(image.array[None, ...], grid.spacing, grid.origin, grid.direction, dict(image.metadata))


def ijk_to_lps_matrix(image: Geometry) -> np.ndarray:
    """4x4 homogeneous matrix from (i, j, k) voxel index to LPS millimetres (2D: k is a unit z step)."""
    grid = _padded_to_3d(grid_of(image))
    matrix = np.eye(4)
    matrix[:3, :3] = grid.direction * np.asarray(grid.spacing)
    matrix[:3, 3] = grid.origin
    return matrix


def ijk_to_ras_matrix(image: Geometry) -> np.ndarray:
    """4x4 matrix from voxel index to RAS millimetres: Slicer's IJKToRAS for this image."""
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    return flip @ ijk_to_lps_matrix(image)


def image_from_ijk_to_ras(array_kji: np.ndarray, ijk_to_ras: np.ndarray) -> Image:
    """Image from Slicer's voxels ``[k, j, i]`` and IJKToRAS matrix (inverse of ``ijk_to_ras_matrix``)."""
    linear = np.asarray(ijk_to_ras, dtype=float)[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    if np.any(spacing == 0):
        raise ValueError(f"IJKToRAS matrix has a zero-length axis: {np.asarray(ijk_to_ras).tolist()}")
    direction = LPS_PATIENT_TO_RAS @ (linear / spacing)
    origin = LPS_PATIENT_TO_RAS @ np.asarray(ijk_to_ras, dtype=float)[:3, 3]
    return Image(array_kji, tuple(spacing), tuple(origin), direction)


def physical_point(image: Geometry, ijk: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """LPS position of (possibly fractional) index ``(i, j, k)``; also takes an ``(N, ndim)`` array."""
    grid = grid_of(image)
    scaled = np.asarray(ijk, dtype=float) * np.asarray(grid.spacing)
    return np.asarray(grid.origin) + scaled @ grid.direction.T


def orientation_code(image_or_direction: Geometry | np.ndarray) -> str:
    """Letters naming the patient direction each index axis points to, e.g. ``"LPS"`` or ``"RAI"``.

    Oblique axes get the closest patient axis; the assignment is the permutation with the largest
    total alignment, so two index axes never share a letter even at 45 degrees.
    """
    direction = _direction_of(image_or_direction)
    axis_of_index = _closest_patient_axes(direction)
    return "".join(
        _LETTER_OF[patient_axis, bool(direction[patient_axis, index_axis] > 0)]
        for index_axis, patient_axis in enumerate(axis_of_index)
    )


def reorient(image: Image, code: str) -> Image:
    """Permute and flip voxels (no interpolation) so that ``orientation_code`` becomes ``code``.

    Every voxel keeps its physical position: spacing, direction and origin follow the voxels.
    Networks are trained in one orientation; this is the exact, reversible way to get there.
    """
    wanted = _parse_code(code.upper(), image.ndim)
    current = {
        axis: (index, positive)
        for index, (axis, positive) in enumerate(_parse_code(orientation_code(image), image.ndim))
    }
    source_of = [current[axis][0] for axis, _ in wanted]
    flipped = [current[axis][1] != positive for axis, positive in wanted]
    return _permute_and_flip(image, source_of, flipped)


def bounding_box(mask: np.ndarray, margin_vox: tuple[int, ...]) -> tuple[slice, ...]:
    """Smallest box (slices in array order) holding every true voxel, grown by a margin, clipped."""
    if len(margin_vox) != mask.ndim:
        raise ValueError(f"margin needs {mask.ndim} values (array order), got {margin_vox}")
    if not mask.any():
        raise ValueError("bounding box of an empty mask")
    box = []
    for axis, margin in enumerate(margin_vox):
        other_axes = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other_axes))
        box.append(slice(max(0, hits[0] - margin), min(mask.shape[axis], hits[-1] + 1 + margin)))
    return tuple(box)


def grid_difference(a: Geometry, b: Geometry, tolerance: float = GRID_TOLERANCE) -> str | None:
    """What makes the grids of ``a`` and ``b`` differ, e.g. ``"origin (0.0, 0.0) vs (5.0, 0.0)"``,
    or None when they are one grid (same size; spacing, origin and direction within ``tolerance``)."""
    first, second = grid_of(a), grid_of(b)
    if first.size != second.size:
        return f"size {first.size} vs {second.size}"
    for name in ("spacing", "origin", "direction"):
        ours, theirs = np.asarray(getattr(first, name)), np.asarray(getattr(second, name))
        if not np.allclose(ours, theirs, atol=tolerance, rtol=0):
            return f"{name} {_rounded(ours)} vs {_rounded(theirs)}"
    return None


def same_grid(a: Geometry, b: Geometry, tolerance: float = GRID_TOLERANCE) -> bool:
    """True when ``a`` and ``b`` lie on one voxel grid (see ``grid_difference``)."""
    return grid_difference(a, b, tolerance) is None


def _rounded(values: np.ndarray) -> tuple[float, ...]:
    """Six decimals: enough to show any difference above the tolerance, short enough to read."""
    return tuple(round(float(value), 6) for value in values.ravel())


def _padded_to_3d(grid: Grid) -> Grid:
    if grid.ndim == 3:
        return grid
    direction = np.eye(3)
    direction[:2, :2] = grid.direction
    return Grid((*grid.size, 1), (*grid.spacing, 1.0), (*grid.origin, 0.0), direction)


def _direction_of(image_or_direction: Geometry | np.ndarray) -> np.ndarray:
    if isinstance(image_or_direction, Image | Grid):
        return image_or_direction.direction
    return np.asarray(image_or_direction, dtype=float)


def _closest_patient_axes(direction: np.ndarray) -> tuple[int, ...]:
    """Patient axis (0 = L/R, 1 = P/A, 2 = S/I) for each index axis: best-aligned permutation."""
    ndim = direction.shape[0]
    alignment = np.abs(direction)
    return max(
        itertools.permutations(range(ndim)),
        key=lambda axes: sum(alignment[patient, index] for index, patient in enumerate(axes)),
    )


def _parse_code(code: str, ndim: int) -> list[tuple[int, bool]]:
    """``(patient axis, points to +LPS)`` for each letter; rejects codes no image can have."""
    example = "LPS"[:ndim]
    if len(code) != ndim or any(letter not in _LETTERS or _LETTERS[letter][0] >= ndim for letter in code):
        raise ValueError(f"orientation code {code!r} is not valid for a {ndim}D image (e.g. {example!r})")
    parsed = [_LETTERS[letter] for letter in code]
    if len({axis for axis, _ in parsed}) != ndim:
        raise ValueError(f"orientation code {code!r} names one patient axis twice")
    return parsed


def _permute_and_flip(image: Image, source_of: list[int], flipped: list[bool]) -> Image:
    """New index axis ``n`` is old axis ``source_of[n]``, reversed where ``flipped[n]``."""
    ndim = image.ndim
    array_order = [ndim - 1 - source_of[ndim - 1 - axis] for axis in range(ndim)]
    channel_axes = list(range(ndim, image.array.ndim))
    array = np.transpose(image.array, array_order + channel_axes)
    array = np.ascontiguousarray(np.flip(array, tuple(ndim - 1 - n for n in range(ndim) if flipped[n])))
    first_voxel = np.zeros(ndim)
    for new_axis, source in enumerate(source_of):
        first_voxel[source] = image.size[source] - 1 if flipped[new_axis] else 0
    signs = np.where(flipped, -1.0, 1.0)
    return Image(
        array,
        tuple(image.spacing[source] for source in source_of),
        tuple(physical_point(image, first_voxel)),
        image.direction[:, source_of] * signs,
        dict(image.metadata),
    )
