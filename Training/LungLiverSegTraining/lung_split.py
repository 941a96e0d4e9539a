"""Split a merged lung mask into right lung (label 1) and left lung (label 2), never by a fixed midline.

Some lung labels (LCTSC) draw both lungs as one label, while a model that tells the lungs apart needs
right and left. A midline plane is wrong for real patients (the mediastinum is not centred, patients
lie rotated), so the split follows the anatomy instead:

1. Where the lungs are apart, the two largest connected components are the two lungs.
2. Where they touch (the anterior or posterior junction line), the mask is eroded in the axial plane,
   one voxel at a time, until two lung-sized components appear; those are the seeds.
3. The seeds grow back inside the original mask by an alternating geodesic dilation (one step for each
   side per round, only into mask voxels not yet taken), so the junction is cut half-way between the
   two lungs. Voxels both sides reach in the same round, and small fragments not connected to either
   seed, go to the nearest labelled voxel (physical distance). The result is the original mask, each
   voxel on exactly one side.

Which seed is the right lung comes from the patient axes (LPS: +x is patient left), so the stored
orientation of the image does not matter. When no two lung-sized, side-by-side components appear
(one lung missing, a mask that is not lungs) it raises ``LungSplitError`` rather than guessing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from LungLiverSegLib.errors import LungLiverSegError
from LungLiverSegLib.geometry import Image, bounding_box, orientation_code, physical_point
from scipy import ndimage as ndi

RIGHT_LUNG = 1
LEFT_LUNG = 2

MAX_EROSIONS = 40
"""Erosion steps tried before giving up: 40 in-plane voxels is 80 mm at 2 mm, far wider than a junction."""

MIN_SIZE_RATIO = 0.2
"""The smaller seed must hold at least this fraction of the larger one's voxels: a right lung is about
55 % of both, so even a much smaller lung passes, while a fragment cut from one lung (an apex, a
recess) does not."""

MIN_LATERAL_MM = 50.0
"""The two seeds' centroids must lie this far apart left-right (adult lungs: 15-20 cm), and further
left-right than in any other direction: two pieces of one lung are stacked, not side by side."""

_FACES = ndi.generate_binary_structure(3, 1)


class LungSplitError(LungLiverSegError):
    """A lung mask could not be split into two lungs (the message says what was found)."""


@dataclass(frozen=True)
class LungSplit:
    """The split labels (on the mask's grid) and how it was obtained."""

    labels: Image
    """uint8 labels: 0 background, ``RIGHT_LUNG``, ``LEFT_LUNG``."""
    erosion_steps: int
    """In-plane erosions needed before the two lungs came apart (0: they were apart already)."""

    def volume_ml(self, label: int) -> float:
        """Volume of one side in millilitres."""
        voxel_mm3 = float(np.prod(self.labels.spacing))
        return float(np.count_nonzero(self.labels.array == label)) * voxel_mm3 / 1000.0


def split_lungs(mask: Image, max_erosions: int = MAX_EROSIONS) -> LungSplit:
    """Split a 3D merged lung mask (any non-zero voxel is lung) into right and left lung.

    Raises ``LungSplitError`` when two lungs cannot be found within ``max_erosions`` steps.
    """
    if mask.ndim != 3:
        raise LungSplitError(f"lung split needs a 3D mask, got {mask.ndim}D")
    lungs = np.asarray(mask.array) != 0
    if not lungs.any():
        raise LungSplitError("the lung mask is empty")
    seeds, steps = find_seeds(mask.with_array(lungs), max_erosions)
    labels = grow_seeds(lungs, seeds, mask.spacing)
    return LungSplit(mask.with_array(labels.astype(np.uint8)), steps)


def find_seeds(lungs: Image, max_erosions: int) -> tuple[np.ndarray, int]:
    """Erode (in the axial plane) until two lung-sized components lie side by side.

    Returns a label array (``RIGHT_LUNG``/``LEFT_LUNG`` seeds, 0 elsewhere) and the erosion steps.
    In-plane erosion because the lungs touch along the mediastinum, a front-to-back junction: eroding
    along the body axis as well would only shorten the lungs (and lose thin apices) for nothing.
    """
    structure = axial_structure(lungs)
    eroded = lungs.array
    found = "nothing"
    for step in range(max_erosions + 1):
        if step:
            eroded = ndi.binary_erosion(eroded, structure)
        seeds, found = _two_lungs(lungs.with_array(eroded))
        if seeds is not None:
            return seeds, step
        if not eroded.any():
            break
    raise LungSplitError(
        f"could not find two lungs after up to {max_erosions} erosions (last: {found}); "
        "is one lung missing or is this not a lung mask?"
    )


def axial_structure(image: Image) -> np.ndarray:
    """3x3x3 structuring element that is a 4-connected cross in the axial plane, nothing along z.

    The array axis that runs head-to-foot is found from the direction matrix, not assumed.
    """
    index_axis = next(n for n, letter in enumerate(orientation_code(image)) if letter in "SI")
    array_axis = image.ndim - 1 - index_axis
    structure = _FACES.copy()
    along = [1, 1, 1]
    for end in (0, 2):
        along[array_axis] = end
        structure[tuple(along)] = False
    return structure


def _two_lungs(eroded: Image) -> tuple[np.ndarray | None, str]:
    """Seeds for right and left when the two largest components look like two lungs, else a reason."""
    components, count = ndi.label(eroded.array, _FACES)
    if count < 2:
        return None, f"{count} component"
    sizes = np.bincount(components.ravel())[1:]
    first, second = (np.argsort(sizes)[::-1][:2] + 1).tolist()
    if sizes[second - 1] < MIN_SIZE_RATIO * sizes[first - 1]:
        return None, f"second component {sizes[second - 1]} voxels vs {sizes[first - 1]}"
    centres = _centroids_lps(eroded, components, (first, second))
    offset = np.abs(centres[0] - centres[1])
    if offset[0] < MIN_LATERAL_MM or offset[0] < offset[1:].max():
        return None, f"components not side by side (centroids {np.round(offset, 1).tolist()} mm apart)"
    right, left = (first, second) if centres[0][0] < centres[1][0] else (second, first)
    seeds = np.zeros(components.shape, np.uint8)
    seeds[components == right] = RIGHT_LUNG
    seeds[components == left] = LEFT_LUNG
    return seeds, "two lungs"


def _centroids_lps(grid: Image, components: np.ndarray, which: tuple[int, int]) -> list[np.ndarray]:
    """Centroids of the given components in LPS millimetres (``+x`` is the patient's left)."""
    centres_kji = ndi.center_of_mass(components > 0, components, list(which))
    return [physical_point(grid, np.asarray(c)[::-1]) for c in centres_kji]


def grow_seeds(lungs: np.ndarray, seeds: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Grow both seeds back inside ``lungs`` one face-step per round, alternately; no voxel is taken twice.

    Works on the mask's bounding box (much smaller than the CT). The result covers ``lungs`` exactly.
    """
    box = bounding_box(lungs, (0,) * lungs.ndim)
    labels = seeds[box] * lungs[box]
    inside = lungs[box]
    contested = np.zeros_like(inside)
    while True:
        free = inside & (labels == 0) & ~contested
        right = ndi.binary_dilation(labels == RIGHT_LUNG, _FACES) & free
        left = ndi.binary_dilation(labels == LEFT_LUNG, _FACES) & free
        if not (right.any() or left.any()):
            break
        both = right & left
        labels[right & ~both] = RIGHT_LUNG
        labels[left & ~both] = LEFT_LUNG
        contested |= both
    labels = _nearest_label(labels, inside, spacing)
    out = np.zeros(lungs.shape, np.uint8)
    out[box] = labels
    return out


def _nearest_label(labels: np.ndarray, inside: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Give every unlabelled voxel of ``inside`` the label of the nearest labelled voxel (in mm).

    These are the voxels both sides reached in the same round (the cut itself) and fragments not
    connected to either seed.
    """
    missing = inside & (labels == 0)
    if not missing.any():
        return labels
    _, nearest = ndi.distance_transform_edt(labels == 0, sampling=spacing[::-1], return_indices=True)
    filled = labels.copy()
    filled[missing] = labels[tuple(axis[missing] for axis in nearest)]
    return filled
