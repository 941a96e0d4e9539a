"""Label clean-up the bundle asks for: a density check of aerated organs, largest connected
component, hole filling, small debris.

Applied on the body crop at input resolution, label by label, so that one structure's clean-up
never touches another's voxels except where a filled hole claims background.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from LungLiverSegLib.bundle.spec import DensityCheckSpec, PostprocessingSpec
from LungLiverSegLib.geometry import bounding_box


def _components(mask: np.ndarray, connectivity: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Connected-component labels of ``mask`` and each component's size (index 0: background).

    Sizes by ``ndimage.histogram`` (one bin per label): ``np.bincount`` first copies the int32
    labels to int64, 12x slower on a lung's 100-million-voxel box."""
    structure = ndimage.generate_binary_structure(mask.ndim, connectivity or mask.ndim)
    components, count = ndimage.label(mask, structure=structure)
    if count == 0:
        return components, np.array([components.size])
    return components, ndimage.histogram(components, 0, count, count + 1).astype(np.int64)


def keep_largest_component(mask: np.ndarray, connectivity: int | None = None) -> np.ndarray:
    """The largest connected component of ``mask`` (empty stays empty).

    ``connectivity`` is scipy's: 1 joins voxels that share a face, ``mask.ndim`` (the default, 26
    neighbours in 3D) also those that share only an edge or a corner.
    """
    components, sizes = _components(mask, connectivity)
    if len(sizes) <= 2:
        return mask
    sizes[0] = 0
    return components == int(sizes.argmax())


@dataclass
class _LabelRegion:
    """One label's bounding box (plus a voxel, so that hole filling sees the outside), its
    26-connected components there and their sizes; a dropped component's size becomes 0.

    Labelled once and shared by the density check and the clean-up: dropping whole components
    leaves the others as they were, so one labelling serves both.
    """

    box: tuple[slice, ...]
    components: np.ndarray
    sizes: np.ndarray


def density_check(
    labels: np.ndarray,
    intensities: np.ndarray,
    voxel_ml: float,
    check: DensityCheckSpec,
    regions: dict[int, _LabelRegion],
) -> None:
    """Drop small components of aerated-organ labels that do not look aerated (in place).

    A network that sees one window at a time can take gas in the bowel or stomach, or a patch of
    soft tissue, for a piece of lung. Lung tissue is air with vessels and walls: its mean is far
    below soft tissue, and only a minority of it is as dark as pure gas (even in emphysema, about
    20% below -950 HU in the COPDGene case we have, against 40-50% in bowel gas). Components of
    ``check.below_ml`` or more are always kept, so a whole lung is never removed by this rule.
    """
    min_voxels = check.below_ml / voxel_ml
    for value in check.labels:
        if value not in regions:
            continue
        region = regions[value]
        small = region.sizes < min_voxels
        small[0] = False
        if not small.any():
            continue
        in_small = small[region.components]  # only small components can be dropped: measure only them
        flat, inside = region.components[in_small], intensities[region.box][in_small]
        per_voxel = 1.0 / np.maximum(region.sizes, 1)
        means = np.bincount(flat, inside, len(region.sizes)) * per_voxel
        air = np.bincount(flat, inside < check.air_below, len(region.sizes)) * per_voxel
        drop = small & ((means > check.max_mean) | (air > check.max_air_fraction))
        if drop.any():
            labels[region.box][drop[region.components]] = 0
            region.sizes[drop] = 0


def fill_holes(mask: np.ndarray, structure: np.ndarray | None = None) -> np.ndarray:
    """``mask`` with every background region it encloses filled (``mask`` itself when it encloses
    none): the same result as ``scipy.ndimage.binary_fill_holes(mask, structure)``, 3x faster on a
    lung's bounding box.

    A hole is a background region, connected through ``structure`` (face neighbours by default),
    that cannot step out of the array: it touches no face of an axis along which ``structure``
    reaches (an in-plane structure never leaves through the first or last slice). scipy finds
    them by growing the outside in, one dilation at a time; labelling finds them in one pass.
    """
    if structure is None:
        structure = ndimage.generate_binary_structure(mask.ndim, 1)
    background, count = ndimage.label(~mask, structure)
    enclosed = np.ones(count + 1, dtype=bool)
    enclosed[0] = False
    for axis in _axes_reached(structure):
        for end in (0, -1):
            enclosed[np.take(background, end, axis=axis)] = False
    return mask | enclosed[background] if enclosed.any() else mask


def _axes_reached(structure: np.ndarray) -> list[int]:
    """The axes along which ``structure`` has a neighbour off its centre."""
    centre = structure.shape[0] // 2
    return [axis for axis in range(structure.ndim) if np.delete(structure, centre, axis=axis).any()]


def postprocess_labels(
    labels: np.ndarray,
    spacing_kji: tuple[float, ...],
    spec: PostprocessingSpec,
    intensities: np.ndarray | None = None,
) -> np.ndarray:
    """Apply the bundle's postprocessing to a ``[k, j, i]`` label array in place and return it.

    ``intensities`` (the image on the same grid) is needed by the density check and ignored
    otherwise. First the density check of every aerated label, then each label's clean-up, each
    inside the label's own bounding box: an organ is a small part of a body crop, and the 3D
    labelling is the cost.
    """
    voxel_ml = float(np.prod(spacing_kji)) / 1000.0
    min_voxels = int(np.ceil(spec.min_volume_ml / voxel_ml)) if spec.min_volume_ml > 0 else 0
    density = spec.density_check if intensities is not None else None
    regions = _label_regions(labels, spec, density, min_voxels)
    if density is not None and intensities is not None:
        density_check(labels, intensities, voxel_ml, density, regions)
    for value, region in regions.items():
        _clean_label(labels[region.box], value, spec, min_voxels, region)
    return labels


def _label_regions(
    labels: np.ndarray, spec: PostprocessingSpec, density: DensityCheckSpec | None, min_voxels: int
) -> dict[int, _LabelRegion]:
    """The region of every present label that the density check or the clean-up works on."""
    checked = set(density.labels) if density is not None else set()
    regions = {}
    for value in range(1, int(labels.max(initial=0)) + 1):
        wanted = value in spec.largest_component or value in spec.fill_holes or value in checked
        if not (wanted or min_voxels > 1):
            continue
        mask = labels == value
        if mask.any():
            box = bounding_box(mask, (1,) * labels.ndim)
            regions[value] = _LabelRegion(box, *_components(mask[box], None))
    return regions


def _clean_label(
    labels: np.ndarray, value: int, spec: PostprocessingSpec, min_voxels: int, region: _LabelRegion
) -> None:
    """Clean one label inside a view of the label array (its region's box; modified in place)."""
    mask = labels == value
    sizes = region.sizes.copy()
    sizes[0] = 0
    if value in spec.largest_component:
        keep = np.zeros(len(sizes), dtype=bool)
        keep[int(sizes.argmax())] = sizes.max() > 0  # the first of equally large ones
    else:
        keep = sizes >= max(min_voxels, 1)
    dropped = keep[1:] != (sizes[1:] > 0)
    cleaned = keep[region.components] if dropped.any() else mask
    if value in spec.fill_holes:
        cleaned = fill_holes(cleaned) & ((labels == 0) | mask)  # a filled hole steals no structure
    if cleaned is not mask:
        labels[mask & ~cleaned] = 0
        labels[cleaned & ~mask] = value
