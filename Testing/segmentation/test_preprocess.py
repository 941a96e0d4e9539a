"""``prepare`` and its inverse: intensities, target shape, body mask, and the way back to the input grid."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from factories import ellipsoid_ct, threshold_bundle
from LungLiverSegLib import geometry
from LungLiverSegLib.bundle.spec import IntensitySpec
from LungLiverSegLib.segmentation import preprocess
from LungLiverSegLib.segmentation.preprocess import (
    IN_PLANE,
    body_box,
    body_mask,
    grow_in_plane,
    intensity_histogram,
    labels_from_scores,
    normalize_intensity,
    prepare,
    probabilities_to_labels,
    shrink_in_plane,
    target_shape,
)
from scipy import ndimage
from scipy.spatial.transform import Rotation


def test_a_window_maps_its_ends_to_0_and_1_and_clips_beyond():
    hounsfield = torch.tensor([-2000.0, -1000.0, -250.0, 500.0, 3000.0])
    normalised = normalize_intensity(hounsfield, IntensitySpec("window", -1000.0, 500.0))
    torch.testing.assert_close(normalised, torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))


def test_minmax_maps_the_image_range_to_0_1_and_a_constant_image_to_0():
    spec = IntensitySpec("minmax")
    torch.testing.assert_close(
        normalize_intensity(torch.tensor([10.0, 20.0, 50.0]), spec), torch.tensor([0.0, 0.25, 1.0])
    )
    torch.testing.assert_close(normalize_intensity(torch.full((3,), 7.0), spec), torch.zeros(3))


def test_zscore_uses_the_image_mean_and_sample_standard_deviation():
    # mean 2.5; sample variance (1.5^2 + 0.5^2 + 0.5^2 + 1.5^2) / 3 = 5/3
    normalised = normalize_intensity(torch.tensor([1.0, 2.0, 3.0, 4.0]), IntensitySpec("zscore"))
    expected = torch.tensor([-1.5, -0.5, 0.5, 1.5]) / (5 / 3) ** 0.5
    torch.testing.assert_close(normalised, expected)
    torch.testing.assert_close(
        normalize_intensity(torch.full((4,), 3.0), IntensitySpec("zscore")), torch.zeros(4)
    )


def test_target_shape_resamples_to_the_bundle_spacing():
    spec = threshold_bundle().preprocessing  # 2 x 2 x 3 mm (i, j, k)
    # k: 10 slices of 6 mm -> 20 of 3; j: 100 rows of 0.5 mm -> 25 of 2; i: 201 of 0.9 mm -> 90.45 -> 90
    assert target_shape((10, 100, 201), np.array([6.0, 0.5, 0.9]), spec) == (20, 25, 90)
    # a tiny axis keeps at least one voxel
    assert target_shape((1, 1, 1), np.array([0.5, 0.5, 0.5]), spec) == (1, 1, 1)


def test_target_shape_of_2d_models_keeps_the_slices():
    in_plane = replace(threshold_bundle(dims=2).preprocessing, spacing=(1.0, 0.5))  # i, j
    assert target_shape((7, 300, 400), np.array([5.0, 0.25, 0.5]), in_plane) == (7, 150, 200)
    resized = replace(in_plane, resize_inplane=(256, 128))  # width, height
    assert target_shape((7, 300, 400), np.array([5.0, 0.25, 0.5]), resized) == (7, 128, 256)
    unchanged = replace(in_plane, spacing=None)
    assert target_shape((7, 300, 400), np.array([5.0, 0.25, 0.5]), unchanged) == (7, 300, 400)


def test_intensity_histogram_counts_fractions_per_bin_of_the_normalised_range():
    network_input = torch.tensor([0.0, 0.05, 0.5, 0.99, 1.0, 2.0])  # 2.0 counts in the top bin
    histogram = intensity_histogram(network_input, IntensitySpec("window", -1000.0, 500.0))
    np.testing.assert_allclose(histogram, [2 / 6, 0, 0, 0, 1 / 6, 0, 0, 3 / 6])
    zscored = intensity_histogram(torch.tensor([-5.0, 0.1, 2.9, 3.0]), IntensitySpec("zscore"))
    np.testing.assert_allclose(zscored, [1 / 4, 0, 0, 0, 1 / 4, 0, 0, 2 / 4])


def test_body_mask_keeps_the_patient_fills_lungs_and_airway_and_drops_the_table():
    volume = np.full((20, 40, 40), -1000.0)
    volume[:, 5:30, 5:35] = 40.0  # body
    volume[:, 10:25, 10:18] = -850.0  # a lung, enclosed in every axial slice
    volume[:, 15:18, 19:22] = -1000.0  # the trachea, open at the top and bottom slices
    volume[:, 33:36, 2:38] = 300.0  # the CT table, below the body with air in between
    body = body_mask(volume, -500.0, np.array([3.0, 1.0, 1.0]))
    assert body[:, 12, 12].all() and body[:, 16, 20].all()  # lung and trachea are inside
    assert not body[:, 34, 20].any() and not body[:, 1, 1].any()  # table and outside air are not


def test_body_mask_leaves_out_air_under_a_thin_pad_lying_on_the_patient():
    volume = np.full((6, 60, 60), -1000.0)
    volume[:, 10:50, 10:50] = 40.0  # body, 1 mm pixels
    volume[:, 10:22, 26:34] = -1000.0  # a groove in the patient's back, open to the outside
    volume[:, 8:10, 8:52] = 0.0  # a 2 mm pad over the back, touching the body: it closes the groove
    volume[:, 30:40, 15:20] = -850.0  # a lung behind a thin (5 mm) chest wall
    body = body_mask(volume, -500.0, np.array([3.0, 1.0, 1.0]))
    assert not body[:, 15, 30].any()  # the groove's air is outside, not an enclosed "lung"
    assert body[:, 35, 17].all()  # a hole the body itself encloses is inside
    assert body[:, 30, 30].all() and body[:, 9, 12].all()  # the body and what touches it are kept


@pytest.mark.parametrize("seed", range(4))
def test_body_box_is_the_bounding_box_of_the_voxels_above_the_threshold(seed):
    generator = np.random.default_rng(seed)
    volume = np.full((9, 20, 30), -1000, np.int16)
    corner = generator.integers(0, 8, 3)
    volume[corner[0] : corner[0] + 2, corner[1] : corner[1] + 9, corner[2] : corner[2] + 5] = 40
    volume[generator.integers(0, 9), generator.integers(0, 20), generator.integers(0, 30)] = 300
    expected = geometry.bounding_box(volume > -500, (1, 2, 3))
    assert body_box(volume, -500.0, (1, 2, 3)) == expected
    assert body_box(np.full((2, 3, 4), -1000), -500.0, (1, 1, 1)) == (slice(0, 2), slice(0, 3), slice(0, 4))


def test_body_mask_joins_only_voxels_that_share_a_face():
    volume = np.full((3, 12, 12), -1000.0)
    volume[:, 1:8, 1:8] = 40.0  # the body
    volume[:, 8, 8] = 40.0  # touches the body's corner only (an edge in 3D): not part of it
    body = body_mask(volume, -500.0, np.array([1.0, 1.0, 1.0]))
    assert body[:, 4, 4].all() and not body[:, 8, 8].any()
    assert body_mask(np.full((2, 3, 3), -1000.0), -500.0, np.ones(3)).all()  # no body: keep everything


def test_separable_label_resampling_matches_trilinear_interpolation():
    generator = torch.Generator().manual_seed(0)
    probabilities = torch.softmax(torch.randn(3, 7, 9, 11, generator=generator), dim=0)
    shape = (20, 17, 30)
    reference = F.interpolate(probabilities[None], size=shape, mode="trilinear", align_corners=False)[0]
    expected = reference.argmax(0).numpy().astype(np.uint8)
    np.testing.assert_array_equal(probabilities_to_labels(probabilities, shape), expected)


@pytest.mark.parametrize("shape", [(20, 17, 30), (7, 30, 5), (3, 4, 22)])
def test_labels_in_a_corner_come_back_as_trilinear_interpolation_gives_them(shape, monkeypatch):
    """Only the box of the labels is interpolated, in chunks of 2 output slices; upsampled,
    kept and downsampled axes."""
    monkeypatch.setattr(preprocess, "BYTES_PER_RESAMPLE_CHUNK", 2 * 4 * 2 * shape[1] * shape[2] * 3)
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 7, 9, 11, generator=generator)
    logits[1:, :, :, 6:] -= 20  # labels only in a corner: the rest is certain background
    logits[1:, 5:] -= 20
    probabilities = torch.softmax(logits, dim=0)
    reference = F.interpolate(probabilities[None], size=shape, mode="trilinear", align_corners=False)[0]
    expected = reference.argmax(0).numpy().astype(np.uint8)
    assert 0 < (expected > 0).mean() < 0.5
    np.testing.assert_array_equal(probabilities_to_labels(probabilities, shape), expected)
    assert not probabilities_to_labels(probabilities[:1], (3, 4, 5)).any()  # the background alone


def test_labels_from_scores_is_torch_argmax_with_the_background_at_zero_and_ties_to_the_lower_class():
    scores = torch.tensor([[0.2, 0.5, 0.5, -0.1], [0.7, 0.1, 0.7, -0.3], [0.0, 0.4, 0.3, 0.0]])[
        None, :, :, None
    ]  # [1, C - 1 = 3, 4, 1]: classes 1..3 against the background
    labels = labels_from_scores(scores)
    assert labels.dtype == torch.uint8
    np.testing.assert_array_equal(labels[0, :, 0].numpy(), [2, 1, 2, 0])
    with_background = torch.cat([torch.zeros_like(scores[:, :1]), scores], dim=1)
    np.testing.assert_array_equal(labels.numpy(), with_background.argmax(1).numpy())


@pytest.mark.parametrize(
    "direction",
    [np.eye(3), np.diag([-1.0, -1.0, 1.0]), Rotation.from_euler("xz", [25, 30], degrees=True).as_matrix()],
    ids=["LPS", "RAS-flipped", "oblique"],
)
def test_to_input_grid_undoes_the_crop_and_the_reorientation_exactly(direction):
    image = ellipsoid_ct(direction=direction)
    image.metadata.update(source_path="ct.nii.gz", modality="CT")
    prepared = prepare(image, threshold_bundle().preprocessing)
    assert prepared.crop_shape != prepared.oriented.array.shape  # the body crop did crop
    assert geometry.orientation_code(prepared.oriented) == "RAS"
    labels_crop = (prepared.oriented.array[prepared.crop_box] > 0).astype(np.uint8)
    restored = prepared.to_input_grid(labels_crop, image)
    np.testing.assert_array_equal(restored.array, (image.array > 0).astype(np.uint8))
    assert restored.spacing == image.spacing and restored.origin == image.origin
    np.testing.assert_array_equal(restored.direction, image.direction)
    assert restored.metadata == {"source_path": "ct.nii.gz"}


def test_in_plane_morphology_is_scipys():
    generator = np.random.default_rng(1)
    for _ in range(30):
        shape = tuple(generator.integers(1, 14, 3))
        mask = generator.random(shape) < generator.uniform(0.2, 0.9)
        for steps in (1, 2, 3):
            np.testing.assert_array_equal(
                shrink_in_plane(mask, steps), ndimage.binary_erosion(mask, IN_PLANE, iterations=steps)
            )
            np.testing.assert_array_equal(
                grow_in_plane(mask, steps), ndimage.binary_dilation(mask, IN_PLANE, iterations=steps)
            )
