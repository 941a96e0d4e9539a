"""Label clean-up: largest component, hole filling, small debris, the density check of aerated organs."""

from __future__ import annotations

import numpy as np
import pytest
from LungLiverSegLib.bundle.spec import DensityCheckSpec, PostprocessingSpec
from LungLiverSegLib.segmentation.postprocess import fill_holes, keep_largest_component, postprocess_labels
from scipy import ndimage


def test_largest_component_joins_corners_by_default_and_only_faces_with_connectivity_1():
    mask = np.zeros((4, 6, 6), bool)
    mask[0:2, 0:2, 0:2] = True  # 8 voxels
    mask[2, 2, 2] = True  # touches them only at a corner
    mask[0, 5, 5] = True  # far away
    far = _without(mask, (0, 5, 5))
    np.testing.assert_array_equal(keep_largest_component(mask), far)
    np.testing.assert_array_equal(keep_largest_component(mask, connectivity=1), _without(far, (2, 2, 2)))
    assert not keep_largest_component(np.zeros((3, 3), bool)).any()


def _without(mask: np.ndarray, voxel: tuple[int, ...]) -> np.ndarray:
    result = mask.copy()
    result[voxel] = False
    return result


def test_min_volume_keeps_only_components_of_the_minimum_size_joined_at_corners():
    mask = np.zeros((5, 5), bool)
    mask[0, 0:3] = True  # 3 pixels
    mask[4, 4] = True  # 1 pixel
    mask[1:3, 3:5] = True  # 4 pixels, touching the first only at a corner: one 7-pixel component
    labels = mask.astype(np.uint8)

    def cleaned(min_volume_ml: float) -> np.ndarray:
        spec = PostprocessingSpec(min_volume_ml=min_volume_ml)
        return postprocess_labels(labels.copy(), (10.0, 10.0), spec) == 1  # 0.1 mL per pixel

    np.testing.assert_array_equal(cleaned(0.2), _without(mask, (4, 4)))
    assert not cleaned(0.8).any()
    np.testing.assert_array_equal(cleaned(0.1), mask)


def test_postprocessing_keeps_largest_component_and_fills_holes_without_stealing():
    labels = np.zeros((9, 12, 12), np.uint8)
    labels[1:8, 1:8, 1:8] = 1
    labels[4, 4, 4] = 0  # a hole in the organ
    labels[3, 3, 3] = 2  # another structure inside it: must survive hole filling
    labels[1, 10, 10] = 1  # a speck far away
    spec = PostprocessingSpec(largest_component=(1,), fill_holes=(1,))
    cleaned = postprocess_labels(labels.copy(), (1.0, 1.0, 1.0), spec)
    assert cleaned[4, 4, 4] == 1 and cleaned[3, 3, 3] == 2 and cleaned[1, 10, 10] == 0
    assert (cleaned == 1).sum() == 7**3 - 1


def test_min_volume_drops_debris_of_labels_without_largest_component():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[0:5, 0:5, 0:5] = 3  # 125 voxels of 8 mm^3: 1 mL
    labels[8, 8, 8] = 3  # 8 mm^3
    spec = PostprocessingSpec(min_volume_ml=0.5)
    cleaned = postprocess_labels(labels.copy(), (2.0, 2.0, 2.0), spec)
    assert cleaned[8, 8, 8] == 0 and (cleaned == 3).sum() == 125


def test_density_check_drops_small_components_that_are_not_aerated_and_keeps_whole_lungs():
    """1 mm voxels: a 1 mL "lung" of pure gas stays (as big as below_ml: never judged); of the
    small ones, soft tissue and pure gas go, and lung-like parenchyma with vessels stays."""
    labels = np.zeros((40, 40, 100), np.uint8)
    intensities = np.full(labels.shape, 40.0)
    regions = {
        "big_gas": (slice(0, 10), slice(0, 10), slice(0, 10)),  # 1 mL
        "tissue": (slice(20, 25), slice(0, 5), slice(0, 10)),  # small ones: 0.25 mL each
        "gas": (slice(20, 25), slice(20, 25), slice(0, 10)),
        "parenchyma": (slice(0, 5), slice(20, 25), slice(0, 10)),
    }
    for box in regions.values():
        labels[box] = 1
    intensities[regions["tissue"]] = -300.0
    intensities[regions["gas"]] = -1000.0
    intensities[regions["parenchyma"]] = -850.0
    intensities[0:5, 20:25, 0:10:4] = -1000.0  # some voxels as dark as gas: 30% of them
    labels[:, :, 40:100] = 2  # another label is never judged
    check = DensityCheckSpec(
        labels=(1,), below_ml=0.5, max_mean=-500.0, air_below=-950.0, max_air_fraction=0.35
    )
    spec = PostprocessingSpec(density_check=check)
    big = labels.copy()
    intensities_big = intensities.copy()
    intensities_big[regions["big_gas"]] = -1000.0
    cleaned = postprocess_labels(big, (1.0, 1.0, 1.0), spec, intensities_big)
    assert cleaned[regions["big_gas"]].all()  # 1 mL >= below_ml: kept whatever its density
    assert not cleaned[regions["tissue"]].any() and not cleaned[regions["gas"]].any()
    assert cleaned[regions["parenchyma"]].all() and (cleaned[:, :, 40:] == 2).all()
    assert np.array_equal(
        postprocess_labels(labels.copy(), (1.0, 1.0, 1.0), spec), labels
    )  # no image: no check


IN_PLANE = np.zeros((3, 3, 3), bool)
IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)


@pytest.mark.parametrize(
    "structure",
    [None, IN_PLANE, ndimage.generate_binary_structure(3, 2), ndimage.generate_binary_structure(3, 3)],
    ids=["faces", "in-plane", "edges", "corners"],
)
def test_fill_holes_is_scipys_binary_fill_holes(structure):
    generator = np.random.default_rng(0)
    for _ in range(60):
        shape = tuple(generator.integers(1, 12, 3))
        mask = ndimage.binary_dilation(generator.random(shape) < generator.uniform(0.05, 0.4))
        np.testing.assert_array_equal(fill_holes(mask, structure), ndimage.binary_fill_holes(mask, structure))
    flat = ndimage.binary_dilation(generator.random((30, 30)) < 0.2)
    np.testing.assert_array_equal(fill_holes(flat), ndimage.binary_fill_holes(flat))


def _straightforward_postprocessing(
    labels: np.ndarray, intensities: np.ndarray, spec: PostprocessingSpec, voxel_ml: float
) -> np.ndarray:
    """The clean-up written the plain way, label by label on the whole array with scipy's own
    functions: the reference for ``postprocess_labels``'s shared labelling and bounding boxes."""
    corners = ndimage.generate_binary_structure(3, 3)
    check = spec.density_check
    assert check is not None
    for value in check.labels:
        components, count = ndimage.label(labels == value, corners)
        for index in range(1, count + 1):
            inside = intensities[components == index]
            small = inside.size < check.below_ml / voxel_ml
            air = (inside < check.air_below).mean()
            unlike_lung = inside.mean() > check.max_mean or air > check.max_air_fraction
            if small and unlike_lung:
                labels[components == index] = 0
    min_voxels = np.ceil(spec.min_volume_ml / voxel_ml)
    for value in range(1, int(labels.max()) + 1):
        mask = labels == value
        components, count = ndimage.label(mask, corners)
        sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
        if value in spec.largest_component and count:
            cleaned = components == int(sizes.argmax()) + 1
        else:
            cleaned = np.isin(components, np.flatnonzero(sizes >= min_voxels) + 1)
        if value in spec.fill_holes:
            cleaned = ndimage.binary_fill_holes(cleaned) & ((labels == 0) | mask)
        labels[mask & ~cleaned] = 0
        labels[cleaned & ~mask] = value
    return labels


def test_postprocessing_matches_the_straightforward_clean_up_on_random_organs():
    generator = np.random.default_rng(3)
    spec = PostprocessingSpec(
        largest_component=(2,),
        fill_holes=(1, 3),
        min_volume_ml=0.004,
        density_check=DensityCheckSpec((1, 3), 0.03, -500.0, -950.0, 0.35),
    )
    for _ in range(20):
        shape = (14, 20, 22)
        blobs = ndimage.gaussian_filter(generator.random((4, *shape)), 1.5)
        labels = np.where(blobs.max(0) > 0.5, blobs.argmax(0), 0).astype(np.uint8)
        labels[generator.random(shape) < 0.03] = 0  # holes, some of them enclosed
        intensities = generator.choice([-1000.0, -850.0, -300.0, 40.0], size=shape)
        intensities = ndimage.uniform_filter(intensities, 3)
        expected = _straightforward_postprocessing(labels.copy(), intensities, spec, 0.001)
        found = postprocess_labels(labels.copy(), (1.0, 1.0, 1.0), spec, intensities)
        np.testing.assert_array_equal(found, expected)
