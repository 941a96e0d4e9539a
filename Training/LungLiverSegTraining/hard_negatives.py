"""Hard negatives for a chest-CT lung model: gas in the bowel and a body cut by the field of view.

A lung model trained on chest CTs alone has never seen the two things that fool it most on an
abdominal CT: gas-filled bowel (air enclosed by soft tissue, no vessels) and a body that touches
the edge of the image (air-like padding next to skin). No labelled abdominal CT with real HU is
available to us, so ``add_bowel_gas`` paints such gas pockets into the soft tissue of a chest CT,
away from the lungs, and ``truncate_field_of_view`` cuts the body at a lateral image edge. The
lung label is unchanged: what was painted is background, which is the lesson.
"""

from __future__ import annotations

import numpy as np
from LungLiverSegLib import geometry
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.transforms import body_mask
from scipy import ndimage

SOFT_TISSUE_HU = (-150.0, 150.0)
LUNG_CLEARANCE_MM = 15.0
GAS_HU = -1000.0
STOOL_HU = 20.0


def add_bowel_gas(ct: Image, lungs: Image, rng: np.random.Generator, pockets: int = 14) -> Image:
    """``ct`` with ``pockets`` irregular gas pockets (some with mottled stool) in soft tissue.

    Pockets sit at least ``LUNG_CLEARANCE_MM`` from the lungs and inside the body, mostly at or
    below the lung bases where bowel and stomach lie; their edges are blended over about one
    voxel like real partial volume.
    """
    spacing_kji = np.asarray(ct.spacing[::-1], dtype=float)
    array = ct.array.astype(np.float32)
    lung = lungs.array > 0
    far_from_lungs = ndimage.distance_transform_edt(~lung, sampling=spacing_kji) > LUNG_CLEARANCE_MM
    body = body_mask(array, -500.0)
    tissue = body & far_from_lungs & (array > SOFT_TISSUE_HU[0]) & (array < SOFT_TISSUE_HU[1])
    tissue &= _up_to_a_third_above_lung_bases(lung, _superior_axis_sign(ct))[:, None, None]
    candidates = np.argwhere(tissue)
    if len(candidates) == 0:
        return ct.with_array(ct.array.copy())
    weight = np.zeros(array.shape, np.float32)
    stool = np.zeros(array.shape, bool)
    mottle = ndimage.gaussian_filter(rng.random(array.shape, dtype=np.float32), 1.0) > 0.52
    for centre in candidates[rng.integers(0, len(candidates), pockets)]:
        pocket = _irregular_blob(array.shape, centre, spacing_kji, rng) & body & far_from_lungs
        weight = np.maximum(weight, ndimage.gaussian_filter(pocket.astype(np.float32), 0.7))
        if rng.random() < 0.5:
            stool |= pocket & mottle
    weight *= body  # the blended edge never reaches the air around the patient
    gas = np.where(stool, STOOL_HU, GAS_HU) + rng.normal(0.0, 15.0, array.shape)
    blended = array * (1.0 - weight) + gas * weight
    return ct.with_array(np.clip(np.rint(blended), -1024, 3071).astype(ct.array.dtype))


def truncate_field_of_view(ct: Image, lungs: Image, rng: np.random.Generator) -> tuple[Image, Image]:
    """Crop both images laterally so that the body is cut by the image's left or right edge."""
    body = body_mask(ct.array.astype(np.float32), -500.0)
    columns = np.flatnonzero(body.any(axis=(0, 1)))
    cut_vox = int(rng.uniform(10.0, 40.0) / ct.spacing[0])
    box = [slice(None)] * 3
    box[2] = slice(columns[0] + cut_vox, None) if rng.random() < 0.5 else slice(0, columns[-1] + 1 - cut_vox)
    return geometry.crop(ct, tuple(box)), geometry.crop(lungs, tuple(box))


def below_the_lungs(lungs: Image) -> tuple[slice, slice, slice]:
    """Crop box (array order) of the slices below the lowest lung slice: an abdomen with no lung."""
    slices = np.flatnonzero((lungs.array > 0).any(axis=(1, 2)))
    if len(slices) == 0:
        raise ValueError("no lung in the label image")
    below = slice(0, slices[0]) if _superior_axis_sign(lungs) > 0 else slice(slices[-1] + 1, None)
    return below, slice(None), slice(None)


def _superior_axis_sign(image: Image) -> int:
    """+1 when array index k grows towards the head (LPS z), -1 when it grows towards the feet."""
    return 1 if image.direction[2, 2] >= 0 else -1


def _up_to_a_third_above_lung_bases(lung: np.ndarray, sign: int) -> np.ndarray:
    """Per slice k: below the lung bases, or less than a third of the lungs' height above them."""
    index = np.arange(lung.shape[0])
    slices = np.flatnonzero(lung.any(axis=(1, 2)))
    if len(slices) == 0:
        return np.ones(lung.shape[0], bool)
    low, high = slices[0], slices[-1]
    reach = (high - low) // 3
    return index < low + reach if sign > 0 else index > high - reach


def _irregular_blob(
    shape: tuple[int, ...], centre: np.ndarray, spacing_kji: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Union of 1-3 random ellipsoids near ``centre`` (radii 6-35 mm in plane, 5-18 mm along k)."""
    blob = np.zeros(shape, bool)
    for _ in range(int(rng.integers(1, 4))):
        radii_mm = np.array([rng.uniform(5.0, 18.0), rng.uniform(6.0, 35.0), rng.uniform(6.0, 35.0)])
        offset = rng.normal(0.0, 8.0, 3) / spacing_kji
        middle = centre + offset
        radii = radii_mm / spacing_kji
        low = np.maximum(np.floor(middle - radii).astype(int), 0)
        high = np.minimum(np.ceil(middle + radii).astype(int) + 1, shape)
        if np.any(high <= low):
            continue
        grids = np.ogrid[tuple(slice(a, b) for a, b in zip(low, high, strict=True))]
        inside = sum(((g - m) / r) ** 2 for g, m, r in zip(grids, middle, radii, strict=True)) <= 1.0
        blob[tuple(slice(a, b) for a, b in zip(low, high, strict=True))] |= inside
    return blob
