"""The one module that owns image geometry (IJK / LPS / RAS).

Conventions (used everywhere in the project):

* ``Image.array`` is indexed like SimpleITK's ``GetArrayFromImage``: ``[k, j, i]`` for 3D
  (slice, row, column) and ``[j, i]`` for 2D. Index axis ``i`` is the fastest one.
* ``spacing``, ``origin`` and the columns of ``direction`` are given in ``(i, j, k)`` order,
  in millimetres, in the **LPS** patient frame (ITK / DICOM convention).
  ``direction[:, n]`` is the unit vector along which index axis ``n`` increases.
* Physical point of a voxel: ``origin + direction @ (spacing * ijk)``.
* Slicer works in RAS: the conversion happens only here (``ijk_to_ras_matrix`` and
  ``from_ijk_to_ras``), never elsewhere.
* Orientation codes name the direction each index axis *points to* (nibabel's axcodes):
  ``"RAS"`` means ``i`` increases towards patient Right, ``j`` towards Anterior and ``k``
  towards Superior. (ITK's own "RAI" naming is the opposite; we never use it.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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
