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
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk


@dataclass
class Image:
    """A voxel array with its physical geometry (see module docstring for conventions)."""

    array: np.ndarray
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: np.ndarray = field(default=None)  # type: ignore[assignment]
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ndim = len(self.spacing)
        if self.direction is None:
            self.direction = np.eye(ndim)
        self.direction = np.asarray(self.direction, dtype=float).reshape(ndim, ndim)
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)

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
    """Where voxels lie, without the voxels: the target of a resampling (same conventions as Image)."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: np.ndarray

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions."""
        return len(self.size)


Geometry = Image | Grid

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


def resampled_grid(
    image: Geometry, spacing: tuple[float, ...] | None = None, size: tuple[int, ...] | None = None
) -> Grid:
    """Grid covering the same field of view (outer voxel edges) with another spacing or size.

    These are the semantics of ``torch.nn.functional.interpolate(..., align_corners=False)``, so a
    tensor resized by torch can be put back on a physical grid. Give ``spacing`` or ``size`` (i, j, k).
    When ``spacing`` is given, the size is rounded and the spacing then adjusted to keep the field
    of view exact.
    """
    grid = grid_of(image)
    if (spacing is None) == (size is None):
        raise ValueError("give exactly one of spacing or size")
    old_spacing, old_size = np.asarray(grid.spacing), np.asarray(grid.size)
    if size is None:
        size = tuple(max(1, round(n)) for n in old_size * old_spacing / np.asarray(spacing, dtype=float))
    new_spacing = old_spacing * old_size / np.asarray(size, dtype=float)
    shift = grid.direction @ ((new_spacing - old_spacing) / 2)
    origin = np.asarray(grid.origin) + shift
    return Grid(
        tuple(int(n) for n in size),
        tuple(new_spacing.tolist()),
        tuple(origin.tolist()),
        grid.direction.copy(),
    )


def resample_to_grid(
    image: Image, grid: Geometry, *, interpolator: str = "linear", default: float = 0
) -> Image:
    """Resample onto any grid (any direction) with SimpleITK; ``"nearest"`` for label maps."""
    methods = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}
    if interpolator not in methods:
        raise ValueError(f"interpolator must be one of {sorted(methods)}, got {interpolator!r}")
    target = grid_of(grid)
    resampled = sitk.Resample(
        to_sitk(image),
        target.size,
        sitk.Transform(),
        methods[interpolator],
        target.origin,
        target.spacing,
        target.direction.ravel().tolist(),
        float(default),
    )
    result = from_sitk(resampled)
    result.metadata = dict(image.metadata)
    return result


def crop(image: Image, box: tuple[slice, ...]) -> Image:
    """Sub-image ``image.array[box]`` (slices in array order ``[k, j, i]``, step 1), voxels kept in place."""
    if len(box) != image.ndim:
        raise ValueError(f"crop box needs {image.ndim} slices, got {len(box)}")
    ranges = [
        piece.indices(length) for piece, length in zip(box, image.array.shape[: image.ndim], strict=True)
    ]
    if any(step != 1 for _, _, step in ranges):
        raise ValueError(f"crop box slices must have step 1, got {box}")
    start_ijk = [start for start, _, _ in ranges][::-1]
    cropped = image.array[tuple(slice(start, stop) for start, stop, _ in ranges)].copy()
    origin = tuple(physical_point(image, start_ijk))
    return Image(cropped, image.spacing, origin, image.direction.copy(), dict(image.metadata))


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


def same_grid(a: Geometry, b: Geometry, atol: float = 1e-4) -> bool:
    """True when both have the same size and (within ``atol``) spacing, origin and direction."""
    first, second = grid_of(a), grid_of(b)
    return (
        first.size == second.size
        and np.allclose(first.spacing, second.spacing, atol=atol, rtol=0)
        and np.allclose(first.origin, second.origin, atol=atol, rtol=0)
        and np.allclose(first.direction, second.direction, atol=atol, rtol=0)
    )


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
    array = np.ascontiguousarray(np.flip(array, [ndim - 1 - n for n in range(ndim) if flipped[n]]))
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
