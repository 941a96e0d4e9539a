"""The synthetic phantom: intensities, anatomy layout, geometry, reproducibility, dataset files."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import SimpleITK as sitk
from LungLiverSegLib.demo.phantom import (
    LIVER,
    LUNGS,
    PHANTOM_LABELS,
    TUMOUR,
    make_phantom,
    make_phantom_dataset,
)

SMALL = (48, 40, 32)
SMALL_SPACING = (6.0, 6.0, 9.0)


@pytest.fixture(scope="module")
def phantom():
    return make_phantom()


def centroid_ijk(mask: np.ndarray) -> np.ndarray:
    """Centre of mass in (i, j, k) order."""
    return np.argwhere(mask).mean(axis=0)[::-1]


def test_default_phantom_is_fast():
    start = time.perf_counter()
    make_phantom()
    assert time.perf_counter() - start < 2.0


def test_geometry_is_lps_identity_on_one_grid(phantom):
    ct, labels, label_map = phantom
    assert ct.size == labels.size == (160, 128, 96)
    assert ct.spacing == labels.spacing == (2.0, 2.0, 3.0)
    assert ct.origin == labels.origin
    np.testing.assert_array_equal(ct.direction, np.eye(3))
    assert ct.array.dtype == np.int16 and labels.array.dtype == np.uint8
    assert set(np.unique(labels.array)) == {0, LUNGS, LIVER, TUMOUR}
    assert label_map == PHANTOM_LABELS


def test_labels_contain_the_expected_hounsfield_units(phantom):
    ct, labels, _ = phantom
    assert -900 < ct.array[labels.array == LUNGS].mean() < -800
    assert 40 < ct.array[labels.array == LIVER].mean() < 80
    assert 10 < ct.array[labels.array == TUMOUR].mean() < 40
    assert abs(ct.array[0, 0, 0] + 1000) < 100  # air in the corner
    assert ct.array.max() > 400  # the spine


def test_volumes_are_plausible(phantom):
    _, labels, _ = phantom
    ml_per_voxel = np.prod(labels.spacing) / 1000
    volumes = {value: np.count_nonzero(labels.array == value) * ml_per_voxel for value in (1, 2, 3)}
    assert 1200 < volumes[LUNGS] < 5000
    assert 600 < volumes[LIVER] < 2500
    assert 3 < volumes[TUMOUR] < 50


def test_lungs_are_superior_and_the_liver_under_the_right_lung(phantom):
    _, labels, _ = phantom
    lungs, liver = labels.array == LUNGS, labels.array == LIVER
    n_k = labels.array.shape[0]
    assert not lungs[: n_k // 4].any() and not liver[3 * n_k // 4 :].any()
    lung_centre, liver_centre = centroid_ijk(lungs), centroid_ijk(liver)
    assert lung_centre[2] > liver_centre[2]
    assert liver_centre[0] < labels.size[0] / 2  # patient right is low i (i points to Left)
    right_lung = lungs[:, :, : labels.size[0] // 2]
    assert np.nonzero(right_lung.any(axis=(1, 2)))[0].min() < np.nonzero(liver.any(axis=(1, 2)))[0].max()


def test_spine_is_posterior_midline(phantom):
    ct, _, _ = phantom
    spine_centre = centroid_ijk(ct.array > 300)
    assert abs(spine_centre[0] - ct.size[0] / 2) < 3
    assert spine_centre[1] > 0.65 * ct.size[1]  # j points to Posterior


def test_seed_reproduces_and_varies():
    first, again, other = (make_phantom(SMALL, SMALL_SPACING, seed) for seed in (1, 1, 2))
    np.testing.assert_array_equal(first[0].array, again[0].array)
    np.testing.assert_array_equal(first[1].array, again[1].array)
    assert not np.array_equal(first[1].array, other[1].array)


def test_without_variation_or_noise_the_anatomy_is_fixed():
    one, two = (make_phantom(SMALL, SMALL_SPACING, seed, noise_hu=0, variation=False) for seed in (1, 2))
    np.testing.assert_array_equal(one[0].array, two[0].array)
    assert set(np.unique(one[0].array[one[1].array == LUNGS])) <= {-850, 40}


def test_tumour_can_be_left_out():
    _, labels, label_map = make_phantom(SMALL, SMALL_SPACING, tumour=False)
    assert TUMOUR not in label_map
    assert not (labels.array == TUMOUR).any()


def test_dataset_is_written_in_nnunet_layout(tmp_path):
    folder = make_phantom_dataset(tmp_path / "phantoms", 2, seed=3, size=SMALL, spacing=SMALL_SPACING)
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "CT"}
    assert dataset["labels"] == {"background": 0, "lungs": 1, "liver": 2, "liver_tumour": 3}
    assert dataset["numTraining"] == 2 and dataset["file_ending"] == ".nii.gz"
    assert dataset["licence"] == "generated"
    assert dataset["training"][1] == {
        "image": "./imagesTr/phantom_001_0000.nii.gz",
        "label": "./labelsTr/phantom_001.nii.gz",
    }
    assert sorted(p.name for p in folder.iterdir()) == [
        "dataset.json",
        "imagesTr",
        "labelsTr",
    ]  # no temporaries
    for case in ("phantom_000", "phantom_001"):
        image = sitk.ReadImage(str(folder / "imagesTr" / f"{case}_0000.nii.gz"))
        labels = sitk.ReadImage(str(folder / "labelsTr" / f"{case}.nii.gz"))
        assert image.GetSize() == labels.GetSize() == SMALL
        np.testing.assert_allclose(image.GetSpacing(), SMALL_SPACING)
        assert image.GetPixelID() == sitk.sitkInt16
        assert set(np.unique(sitk.GetArrayFromImage(labels))) == {0, 1, 2, 3}
    first, second = (
        sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in sorted(folder.glob("labelsTr/*"))
    )
    assert not np.array_equal(first, second)
