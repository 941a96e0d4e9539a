"""Right/left lung split of a merged lung mask (``LungLiverSegTraining.lung_split``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from LungLiverSegLib.geometry import Image, physical_point, reorient
from LungLiverSegLib.imageio.images import read_image
from LungLiverSegTraining.lung_split import (
    LEFT_LUNG,
    RIGHT_LUNG,
    LungSplitError,
    axial_structure,
    split_lungs,
)
from scipy import ndimage as ndi

SPACING = (2.0, 2.0, 3.0)
SIZE_KJI = (40, 50, 90)
RIGHT_CENTRE = (-45.0, 0.0, 0.0)
LEFT_CENTRE = (45.0, 0.0, 0.0)
RIGHT_AXES = (32.0, 38.0, 50.0)
LEFT_AXES = (28.0, 34.0, 46.0)


def _empty() -> Image:
    """LPS image centred on (0, 0, 0) mm."""
    size_ijk = np.asarray(SIZE_KJI[::-1])
    origin = -(size_ijk - 1) / 2 * np.asarray(SPACING)
    return Image(np.zeros(SIZE_KJI, np.uint8), SPACING, origin)


def _points(image: Image) -> np.ndarray:
    """LPS mm of every voxel, shape (k, j, i, 3)."""
    k, j, i = np.indices(image.array.shape)
    ijk = np.stack([i, j, k], axis=-1).reshape(-1, 3)
    return physical_point(image, ijk).reshape(*image.array.shape, 3)


def _ellipsoid(image: Image, centre: tuple[float, ...], axes: tuple[float, ...]) -> np.ndarray:
    offsets = (_points(image) - np.asarray(centre)) / np.asarray(axes)
    return (offsets**2).sum(axis=-1) <= 1.0


def _two_lungs(bridge: bool) -> tuple[Image, np.ndarray, np.ndarray]:
    """Merged mask of two ellipsoids (right at -x, bigger), optionally joined by a thin bar."""
    image = _empty()
    right = _ellipsoid(image, RIGHT_CENTRE, RIGHT_AXES)
    left = _ellipsoid(image, LEFT_CENTRE, LEFT_AXES)
    merged = right | left
    if bridge:
        points = _points(image)
        bar = (np.abs(points[..., 0]) < 20) & (np.abs(points[..., 1]) <= 3) & (np.abs(points[..., 2]) <= 9)
        merged |= bar
    return image.with_array(merged.astype(np.uint8)), right, left


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def test_two_lungs_apart_are_split_exactly_with_sides_from_physical_x() -> None:
    mask, right, left = _two_lungs(bridge=False)
    split = split_lungs(mask)
    assert split.erosion_steps == 0
    np.testing.assert_array_equal(split.labels.array == RIGHT_LUNG, right)
    np.testing.assert_array_equal(split.labels.array == LEFT_LUNG, left)
    assert split.labels.array.dtype == np.uint8


def test_the_same_anatomy_stored_ras_gets_the_same_sides() -> None:
    mask, right, _ = _two_lungs(bridge=False)
    flipped = reorient(mask, "RAS")  # i now runs towards patient right: a midline rule would swap sides
    assert not np.array_equal(flipped.array, mask.array)
    split = split_lungs(flipped)
    back = reorient(split.labels, "LPS")
    np.testing.assert_array_equal(back.array == RIGHT_LUNG, right)
    right_x = physical_point(split.labels, np.argwhere(split.labels.array == RIGHT_LUNG)[:, ::-1])[:, 0]
    assert right_x.max() < 0  # LPS: the right lung is at -x


def test_lungs_touching_at_a_thin_bridge_are_split_across_it() -> None:
    mask, right, left = _two_lungs(bridge=True)
    split = split_lungs(mask)
    labels = split.labels.array
    assert split.erosion_steps > 0
    np.testing.assert_array_equal(labels > 0, mask.array > 0)  # every voxel assigned, nothing added
    assert set(np.unique(labels).tolist()) == {0, RIGHT_LUNG, LEFT_LUNG}
    bar_only = (mask.array > 0) & ~right & ~left
    x = _points(mask)[..., 0]
    assert np.all(labels[bar_only & (x < -5)] == RIGHT_LUNG)
    assert np.all(labels[bar_only & (x > 5)] == LEFT_LUNG)
    assert (labels[bar_only] == RIGHT_LUNG).any() and (labels[bar_only] == LEFT_LUNG).any()
    for side, truth in ((RIGHT_LUNG, right), (LEFT_LUNG, left)):
        found = np.count_nonzero(labels == side)
        assert abs(found - np.count_nonzero(truth)) <= 0.03 * np.count_nonzero(truth)
        assert np.all(labels[truth] == side)


def test_one_lung_only_is_refused() -> None:
    image = _empty()
    with pytest.raises(LungSplitError, match="two lungs"):
        split_lungs(image.with_array(_ellipsoid(image, RIGHT_CENTRE, RIGHT_AXES).astype(np.uint8)))


def test_two_pieces_stacked_head_to_foot_are_not_taken_for_two_lungs() -> None:
    image = _empty()
    upper = _ellipsoid(image, (-45.0, 0.0, 30.0), (30.0, 35.0, 25.0))
    lower = _ellipsoid(image, (-45.0, 0.0, -30.0), (30.0, 35.0, 25.0))
    with pytest.raises(LungSplitError, match="two lungs"):
        split_lungs(image.with_array((upper | lower).astype(np.uint8)))


def test_empty_and_2d_masks_are_refused() -> None:
    with pytest.raises(LungSplitError, match="empty"):
        split_lungs(_empty())
    with pytest.raises(LungSplitError, match="3D"):
        split_lungs(Image(np.ones((8, 8), np.uint8), (1.0, 1.0), (0.0, 0.0)))


@pytest.mark.realdata
def test_cip_right_left_labels_are_recovered_from_the_merged_mask(shared_data: Path) -> None:
    truth = read_image(shared_data / "ct_lung_cip_64" / "lung_lr-64.nii.gz")
    ct = read_image(shared_data / "ct_lung_cip_64" / "ct-64.nrrd")
    assert ct.array.shape == truth.array.shape
    split = split_lungs(truth.with_array((truth.array > 0).astype(np.uint8)))
    dice = {side: _dice(split.labels.array == side, truth.array == side) for side in (RIGHT_LUNG, LEFT_LUNG)}
    print(f"CIP 64 Dice right={dice[RIGHT_LUNG]:.4f} left={dice[LEFT_LUNG]:.4f} steps={split.erosion_steps}")
    assert min(dice.values()) >= 0.95, dice


@pytest.mark.realdata
def test_an_lctsc_case_splits_into_two_plausible_lungs(shared_data: Path) -> None:
    mask = read_image(shared_data / "ct_lung_lctsc_2mm" / "Case_001_lungs.nii.gz")
    split = split_lungs(mask)
    np.testing.assert_array_equal(split.labels.array > 0, mask.array > 0)
    right, left = split.volume_ml(RIGHT_LUNG), split.volume_ml(LEFT_LUNG)
    print(f"LCTSC Case_001 right={right:.0f} mL left={left:.0f} mL steps={split.erosion_steps}")
    assert 1000 < right < 5000 and 1000 < left < 5000
    assert 0.7 < right / left < 1.6
    centres = [
        physical_point(mask, np.argwhere(split.labels.array == side).mean(axis=0)[::-1])
        for side in (RIGHT_LUNG, LEFT_LUNG)
    ]
    assert centres[0][0] < centres[1][0]  # right lung at smaller LPS x


@pytest.mark.realdata
def test_cip_lungs_grown_until_they_touch_are_split_along_the_true_junction(shared_data: Path) -> None:
    """CIP's lungs are apart; grown by 2 voxels in-plane they touch, so the erosion path is exercised."""
    truth = read_image(shared_data / "ct_lung_cip_64" / "lung_lr-64.nii.gz")
    lungs = truth.array > 0
    grown = ndi.binary_dilation(lungs, axial_structure(truth), iterations=2)
    assert ndi.label(grown)[1] == 1
    split = split_lungs(truth.with_array(grown.astype(np.uint8)))
    assert split.erosion_steps > 0
    np.testing.assert_array_equal(split.labels.array > 0, grown)
    on_truth = np.where(lungs, split.labels.array, 0)
    dice = {side: _dice(on_truth == side, truth.array == side) for side in (RIGHT_LUNG, LEFT_LUNG)}
    print(f"CIP 64 touching Dice right={dice[RIGHT_LUNG]:.4f} left={dice[LEFT_LUNG]:.4f}")
    assert min(dice.values()) >= 0.95, dice
