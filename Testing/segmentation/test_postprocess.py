"""Label clean-up: largest component, hole filling, small debris, the density check of aerated organs."""

from __future__ import annotations

import numpy as np
from LungLiverSegLib.bundle.spec import DensityCheckSpec, PostprocessingSpec
from LungLiverSegLib.segmentation.postprocess import (
    drop_small_components,
    keep_largest_component,
    postprocess_labels,
)


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


def test_drop_small_components_keeps_only_components_of_the_minimum_size():
    mask = np.zeros((5, 5), bool)
    mask[0, 0:3] = True  # 3 pixels
    mask[4, 4] = True  # 1 pixel
    mask[1:3, 3:5] = True  # 4 pixels, touching the first only at a corner: one 7-pixel component
    kept = drop_small_components(mask, 2)
    np.testing.assert_array_equal(kept, _without(mask, (4, 4)))
    assert not drop_small_components(mask, 8).any()
    assert drop_small_components(mask, 1) is mask


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
