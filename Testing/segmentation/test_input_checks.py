"""Inputs refused with one line, and warnings for inputs unlike the model's training images."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from factories import CoinFlipNet, ThresholdNet, ellipsoid_ct, threshold_bundle, threshold_model
from LungLiverSegLib.bundle.spec import HistogramRangeSpec, IntensitySpec, ModelBundle
from LungLiverSegLib.errors import BundleError, InputImageError
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.segmentation.input_checks import (
    InputWarning,
    check_input,
    check_prediction,
    histogram_distance,
    unsure_ratio,
)
from LungLiverSegLib.segmentation.preprocess import intensity_histogram, prepare
from LungLiverSegLib.segmentation.segment import LoadedModel, segment_image


@pytest.mark.parametrize(
    ("make_image", "message"),
    [
        (lambda: Image(np.zeros((5, 6, 3), np.uint8), (1.0, 1.0), (0.0, 0.0)), "colour"),
        (
            lambda: Image(np.zeros((8, 8), np.int16) + np.eye(8, dtype=np.int16), (1.0, 1.0), (0.0, 0.0)),
            "2D image",
        ),
        (lambda: ellipsoid_ct().with_array(np.full((24, 50, 60), -1000, np.int16)), "constant"),
        (
            lambda: ellipsoid_ct().with_array(np.where(np.eye(60)[None, :50, :] > 0, np.nan, 0.0)),
            "50 voxels are NaN or infinite",
        ),
        (lambda: ellipsoid_ct().with_array(np.full((24, 50, 60), np.nan)), "every voxel is NaN or infinite"),
        (lambda: Image(np.zeros((0, 4, 4), np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)), "empty"),
        (lambda: Image(np.zeros((2, 3, 4, 5), np.int16), (1.0,) * 4, (0.0,) * 4), "time series"),
    ],
    ids=["rgb", "2d-to-3d-model", "constant", "nan", "all nan", "empty", "4d"],
)
def test_bad_inputs_get_one_line_errors(make_image, message):
    with pytest.raises(InputImageError, match=message) as error:
        check_input(make_image(), threshold_bundle(), "case.nii.gz")
    assert str(error.value).startswith("case.nii.gz: ") and "\n" not in str(error.value)


def test_a_volume_is_refused_by_a_chest_xray_model():
    bundle = replace(threshold_bundle(dims=2), modality="CXR")
    with pytest.raises(InputImageError, match="3D volume was given to the chest X-ray model"):
        check_input(ellipsoid_ct(), bundle, "ct.nii.gz")


def test_mr_input_warns_instead_of_pretending():
    image = ellipsoid_ct()
    image.metadata["modality"] = "MR"
    with pytest.warns(InputWarning, match="MR"):
        segment_image(image, threshold_model())


def test_a_ct_without_air_below_minus_500_hu_warns():
    image = ellipsoid_ct()
    with pytest.warns(InputWarning, match="do not look like CT in Hounsfield units"):
        check_input(image.with_array((image.array + 1000).astype(np.int16)), threshold_bundle(), "ct")


def test_unsure_ratio_counts_unsure_voxels_per_voxel_found():
    # 3 classes, 6 voxels: 2 found for sure, 1 found unsure, 1 unsure background, 2 sure background.
    probabilities = torch.tensor(
        [
            [0.0, 0.05, 0.3, 0.6, 0.95, 1.0],
            [1.0, 0.0, 0.6, 0.3, 0.05, 0.0],
            [0.0, 0.95, 0.1, 0.1, 0.0, 0.0],
        ]
    )[:, None, None, :]
    assert unsure_ratio(probabilities) == pytest.approx(2 / 3)
    assert unsure_ratio(torch.ones(2, 1, 2, 2) * torch.tensor([1.0, 0.0])[:, None, None, None]) == 0.0


def test_a_network_unsure_of_the_image_warns_and_a_sure_one_does_not():
    with pytest.warns(InputWarning, match="unsure"):
        segment_image(ellipsoid_ct(), LoadedModel(threshold_bundle(), CoinFlipNet(), torch.device("cpu")))
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        result = segment_image(ellipsoid_ct(), threshold_model())
    assert result.metadata["unsure_ratio"] < 0.5


def with_fingerprint(bundle: ModelBundle, low: list[float], high: list[float]) -> ModelBundle:
    fingerprint = HistogramRangeSpec(tuple(low), tuple(high))
    return replace(bundle, inference=replace(bundle.inference, input_histogram=fingerprint))


def test_histogram_distance_is_the_share_of_voxels_outside_the_training_range():
    bundle = with_fingerprint(threshold_bundle(), [0.5, 0.1, *[0.0] * 6], [0.7, 0.3, *[0.1] * 6])
    histogram = np.array([0.2, 0.2, 0.6, 0, 0, 0, 0, 0])  # 0.3 short in bin 0, 0.5 over in bin 2
    assert histogram_distance(histogram, bundle) == pytest.approx(0.5)
    assert histogram_distance(np.array([0.6, 0.2, 0.2, 0, 0, 0, 0, 0]), bundle) == pytest.approx(0.1)
    assert histogram_distance(histogram, threshold_bundle()) == 0.0  # no fingerprint, no check


def test_check_prediction_returns_both_measures_and_warns_only_beyond_each_limit():
    sure = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 1.0]])[:, None, None, :]  # 3 found, 0 unsure
    unsure = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.5, 0.5, 1.0, 1.0]])[
        :, None, None, :
    ]  # 2 unsure / 2 found
    dark = torch.zeros(1, 1, 2, 2)  # every voxel in the lowest histogram bin
    spec = IntensitySpec("window", -1000.0, 500.0)
    assert intensity_histogram(dark, spec)[0] == 1.0
    like_dark = with_fingerprint(threshold_bundle(), [1.0, *[0.0] * 7], [1.0, *[0.0] * 7])
    stricter = replace(like_dark, inference=replace(like_dark.inference, unsure_ratio_limit=0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        assert check_prediction(sure, dark, like_dark, "case") == (0.0, 0.0)
    with pytest.warns(InputWarning, match="case: the model 'threshold-test' is unsure") as caught:
        assert check_prediction(unsure, dark, like_dark, "case") == (1.0, 0.0)  # limit 1.0: not above
        check_prediction(unsure, dark, stricter, "case")
    assert len(caught) == 1
    bright = torch.ones(1, 1, 2, 2)  # every voxel in the top bin: all of them outside the fingerprint
    with pytest.warns(InputWarning, match="100% of the voxels fall outside"):
        assert check_prediction(sure, bright, like_dark, "case") == (0.0, 1.0)


def test_intensities_unlike_every_training_image_warn():
    image = ellipsoid_ct()
    bundle = threshold_bundle()
    seen = intensity_histogram(prepare(image, bundle.preprocessing).tensor, bundle.preprocessing.intensity)
    trained_on = with_fingerprint(bundle, list(np.clip(seen - 0.02, 0, 1)), list(np.clip(seen + 0.02, 0, 1)))
    model = LoadedModel(trained_on, ThresholdNet(), torch.device("cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        assert segment_image(image, model).metadata["histogram_distance"] == 0.0
    brighter = image.with_array((image.array + 400).astype(np.int16))  # air now at -600 HU: still CT-like
    with pytest.warns(InputWarning, match="unlike every image"):
        result = segment_image(brighter, model)
    assert result.metadata["histogram_distance"] > 0.25


def test_a_fingerprint_with_another_number_of_bins_is_a_bundle_error():
    bundle = with_fingerprint(threshold_bundle(), [0.0, 0.0], [1.0, 1.0])
    with pytest.raises(
        BundleError, match=r"'threshold-test': inference\.input_histogram has 2 bins; this version computes 8"
    ):
        histogram_distance(np.full(8, 1 / 8), bundle)
