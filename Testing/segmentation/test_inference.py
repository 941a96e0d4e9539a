"""The one segmentation function: exact output geometry, 2D/3D paths, bad inputs, progress, cancel.

The network here is a real torch module with known behaviour (a soft threshold on the
normalised intensity), so the expected label image is known independently of the pipeline:
every check compares against a mask computed directly on the input grid.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from LungLiverSegLib import geometry
from LungLiverSegLib.bundle.spec import (
    ArchitectureSpec,
    BodyCropSpec,
    DensityCheckSpec,
    HistogramRangeSpec,
    InferenceSpec,
    IntensitySpec,
    ModelBundle,
    PostprocessingSpec,
    PreprocessingSpec,
)
from LungLiverSegLib.errors import Cancelled, InputImageError, OutOfMemoryRisk
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.labels import LabelInfo
from LungLiverSegLib.progress import CancelToken, Progress
from LungLiverSegLib.segmentation.memory import plan_execution
from LungLiverSegLib.segmentation.postprocess import postprocess_labels
from LungLiverSegLib.segmentation.preprocess import body_mask, intensity_histogram, prepare
from LungLiverSegLib.segmentation.segment import (
    InputWarning,
    LoadedModel,
    histogram_distance,
    probabilities_to_labels,
    segment_image,
    unsure_ratio,
)
from scipy.spatial.transform import Rotation

BRIGHT_HU = 200.0


class ThresholdNet(torch.nn.Module):
    """Label 1 where the normalised intensity is above 0.5 (about -250 HU in the -1000..500 window)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        foreground = 40.0 * (x - 0.5)
        return torch.cat([-foreground, foreground], dim=1)


def make_bundle(dims: int = 3, **preprocessing) -> ModelBundle:
    spacing = (2.0, 2.0, 3.0) if dims == 3 else None
    prep = PreprocessingSpec(
        orientation="RAS",
        spacing=spacing,
        intensity=IntensitySpec("window", -1000.0, 500.0),
        body_crop=BodyCropSpec(-500.0, 10.0),
    )
    return ModelBundle(
        name="threshold-test",
        version="0.0.1",
        title="threshold",
        description="test network",
        license="none",
        modality="CT",
        dims=dims,
        in_channels=1,
        architecture=ArchitectureSpec("UNet", {"channels": [4, 8], "strides": [2]}),
        preprocessing=replace(prep, **preprocessing),
        inference=InferenceSpec(
            patch_size=(32, 32, 16) if dims == 3 else (64, 64), overlap=0.25, batch_size=2
        ),
        labels={1: LabelInfo(1, "bright", (1.0, 0.0, 0.0))},
        postprocessing=PostprocessingSpec(),
    )


def loaded(dims: int = 3, **preprocessing) -> LoadedModel:
    return LoadedModel(make_bundle(dims, **preprocessing), ThresholdNet(), torch.device("cpu"))


def oblique_direction() -> np.ndarray:
    return Rotation.from_euler("xz", [25, 30], degrees=True).as_matrix()


def ellipsoid_ct(
    size=(60, 50, 24), spacing=(0.9, 0.7, 2.5), direction=None, origin=(-20.0, 35.0, 10.0)
) -> Image:
    """Air with a bright ellipsoid off centre, defined in physical space (any grid sees the same object)."""
    direction = np.eye(3) if direction is None else direction
    template = Image(np.zeros(size[::-1], np.int16), spacing, origin, direction)
    points = _physical_points(template)
    centre = np.asarray(origin) + direction @ (
        np.asarray(spacing) * np.asarray(size) * np.array([0.4, 0.55, 0.5])
    )
    inside = (((points - centre) / np.array([14.0, 10.0, 18.0])) ** 2).sum(-1) <= 1.0
    return template.with_array(np.where(inside, BRIGHT_HU, -1000.0).astype(np.int16))


def _physical_points(image: Image) -> np.ndarray:
    k, j, i = np.meshgrid(*[np.arange(n) for n in image.array.shape], indexing="ij")
    ijk = np.stack([i, j, k], axis=-1).astype(float)
    return np.asarray(image.origin) + (ijk * np.asarray(image.spacing)) @ image.direction.T


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize(
    "direction",
    [np.eye(3), np.diag([-1.0, -1.0, 1.0]), np.diag([1.0, -1.0, -1.0]), oblique_direction()],
    ids=["LPS", "RAS-flipped", "LAI-flipped", "oblique"],
)
def test_output_is_on_the_exact_input_grid_and_in_the_right_place(direction):
    image = ellipsoid_ct(direction=direction)
    labels = segment_image(image, loaded())
    assert labels.array.shape == image.array.shape
    assert labels.array.dtype == np.uint8
    assert labels.spacing == image.spacing and labels.origin == image.origin
    np.testing.assert_array_equal(labels.direction, image.direction)
    expected = image.array > 0
    found = labels.array == 1
    # Resampling to 2x2x3 mm and back blurs only the boundary voxels...
    overlap = dice(found, expected)
    assert overlap > 0.93
    # ...and leaves no offset: moving the result by one voxel along any axis only makes it worse.
    for axis in range(3):
        for step in (-1, 1):
            assert dice(np.roll(found, step, axis=axis), expected) < overlap
    assert set(np.unique(labels.array)) <= {0, 1}


def test_flipped_copy_of_the_same_scan_gives_the_same_physical_labels():
    image = ellipsoid_ct()
    flipped = geometry.reorient(image, "RAI")
    labels = segment_image(image, loaded())
    labels_flipped = segment_image(flipped, loaded())
    back = geometry.reorient(labels_flipped, geometry.orientation_code(image))
    np.testing.assert_array_equal(back.array, labels.array)


def test_no_resampling_reproduces_the_threshold_exactly():
    image = ellipsoid_ct(spacing=(2.0, 2.0, 3.0))
    labels = segment_image(image, loaded(orientation=None))
    np.testing.assert_array_equal(labels.array, (image.array > 0).astype(np.uint8))


def test_2d_model_runs_slice_by_slice_on_a_volume_and_on_a_2d_image():
    image = ellipsoid_ct()
    model = loaded(dims=2, orientation="LPS", resize_inplane=(48, 40))
    labels = segment_image(image, model)
    assert labels.array.shape == image.array.shape
    assert dice(labels.array == 1, image.array > 0) > 0.9
    plane = image.array[12].astype(np.float32)
    picture = Image(plane, (0.7, 0.7), (0.0, 0.0))
    labels_2d = segment_image(picture, loaded(dims=2, orientation=None, body_crop=None))
    assert labels_2d.ndim == 2 and labels_2d.array.shape == plane.shape
    np.testing.assert_array_equal(labels_2d.array, (plane > 0).astype(np.uint8))


def test_separable_label_resampling_matches_trilinear_interpolation():
    generator = torch.Generator().manual_seed(0)
    probabilities = torch.softmax(torch.randn(3, 7, 9, 11, generator=generator), dim=0)
    shape = (20, 17, 30)
    reference = F.interpolate(probabilities[None], size=shape, mode="trilinear", align_corners=False)[0]
    expected = reference.argmax(0).numpy().astype(np.uint8)
    np.testing.assert_array_equal(probabilities_to_labels(probabilities, shape), expected)


@pytest.mark.parametrize(
    ("make_image", "message"),
    [
        (lambda: Image(np.zeros((5, 6, 3), np.uint8), (1.0, 1.0), (0.0, 0.0)), "colour"),
        (
            lambda: Image(np.zeros((8, 8), np.int16) + np.eye(8, dtype=np.int16), (1.0, 1.0), (0.0, 0.0)),
            "2D image",
        ),
        (lambda: ellipsoid_ct().with_array(np.full((24, 50, 60), -1000, np.int16)), "constant"),
        (lambda: ellipsoid_ct().with_array(np.where(np.eye(60)[None, :50, :] > 0, np.nan, 0.0)), "NaN"),
        (lambda: Image(np.zeros((0, 4, 4), np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)), "empty"),
        (lambda: Image(np.zeros((2, 3, 4, 5), np.int16), (1.0,) * 4, (0.0,) * 4), "time series"),
    ],
    ids=["rgb", "2d-to-3d-model", "constant", "nan", "empty", "4d"],
)
def test_bad_inputs_get_one_line_errors(make_image, message):
    image = make_image()
    image.metadata["source_path"] = "case.nii.gz"
    with pytest.raises(InputImageError, match=message) as error:
        segment_image(image, loaded())
    assert "case.nii.gz" in str(error.value) and "\n" not in str(error.value)


def test_mr_input_warns_instead_of_pretending():
    image = ellipsoid_ct()
    image.metadata["modality"] = "MR"
    with pytest.warns(InputWarning, match="MR"):
        segment_image(image, loaded())


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


class CoinFlipNet(torch.nn.Module):
    """Equal scores for every class everywhere: a network that knows nothing about its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], 2, *x.shape[2:])


def test_a_network_unsure_of_the_image_warns_and_a_sure_one_does_not():
    with pytest.warns(InputWarning, match="unsure"):
        segment_image(ellipsoid_ct(), LoadedModel(make_bundle(), CoinFlipNet(), torch.device("cpu")))
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        result = segment_image(ellipsoid_ct(), loaded())
    assert result.metadata["unsure_ratio"] < 0.5


def test_intensity_histogram_counts_fractions_per_bin_of_the_normalised_range():
    network_input = torch.tensor([0.0, 0.05, 0.5, 0.99, 1.0, 2.0])  # 2.0 counts in the top bin
    histogram = intensity_histogram(network_input, IntensitySpec("window", -1000.0, 500.0))
    np.testing.assert_allclose(histogram, [2 / 6, 0, 0, 0, 1 / 6, 0, 0, 3 / 6])
    zscored = intensity_histogram(torch.tensor([-5.0, 0.1, 2.9, 3.0]), IntensitySpec("zscore"))
    np.testing.assert_allclose(zscored, [1 / 4, 0, 0, 0, 1 / 4, 0, 0, 2 / 4])


def with_fingerprint(bundle: ModelBundle, low: list[float], high: list[float]) -> ModelBundle:
    fingerprint = HistogramRangeSpec(tuple(low), tuple(high))
    return replace(bundle, inference=replace(bundle.inference, input_histogram=fingerprint))


def test_histogram_distance_is_the_share_of_voxels_outside_the_training_range():
    bundle = with_fingerprint(make_bundle(), [0.5, 0.1, *[0.0] * 6], [0.7, 0.3, *[0.1] * 6])
    histogram = np.array([0.2, 0.2, 0.6, 0, 0, 0, 0, 0])  # 0.3 short in bin 0, 0.5 over in bin 2
    assert histogram_distance(histogram, bundle) == pytest.approx(0.5)
    assert histogram_distance(np.array([0.6, 0.2, 0.2, 0, 0, 0, 0, 0]), bundle) == pytest.approx(0.1)
    assert histogram_distance(histogram, make_bundle()) == 0.0  # no fingerprint, no check


def test_intensities_unlike_every_training_image_warn():
    image = ellipsoid_ct()
    bundle = make_bundle()
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


def test_progress_is_monotonic_ends_at_one_and_has_an_eta():
    events = []
    segment_image(
        ellipsoid_ct(),
        loaded(),
        progress=Progress(events.append, stages={"preprocess": 1, "network": 8, "postprocess": 1}),
    )
    fractions = [event.fraction for event in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(event.stage == "network" for event in events)
    assert events[-1].eta_s is not None and events[-1].eta_s == pytest.approx(0.0, abs=1e-6)


def test_cancel_from_another_thread_stops_the_run():
    token = CancelToken()
    network_started, cancelled = threading.Event(), threading.Event()

    def on_progress(event):
        if event.stage == "network":
            network_started.set()
            cancelled.wait(10)  # hold the worker until the other thread has pressed Cancel

    def press_cancel():
        network_started.wait(10)
        token.cancel()
        cancelled.set()

    canceller = threading.Thread(target=press_cancel)
    canceller.start()
    progress = Progress(on_progress, token, {"preprocess": 1, "network": 8, "postprocess": 1})
    with pytest.raises(Cancelled):
        segment_image(ellipsoid_ct(size=(120, 100, 48)), loaded(), progress=progress)
    canceller.join()
    assert token.cancelled


def test_memory_preflight_refuses_what_cannot_fit_with_advice():
    bundle = make_bundle()
    with pytest.raises(OutOfMemoryRisk, match="crop"):
        plan_execution((20000, 4096, 4096), 2, 10**9, bundle, torch.device("cpu"), 2)
    plan = plan_execution((154, 512, 512), 2, 200 * 150 * 154, bundle, torch.device("cpu"), 2)
    assert plan.batch_size == 2 and plan.peak_ram_bytes < 2 * 1024**3


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


def test_nothing_is_segmented_on_the_table():
    image = ellipsoid_ct()
    array = image.array.copy()
    array[:, 46:49, 5:55] = 300  # a table under the patient (separate from the ellipsoid)
    labels = segment_image(image.with_array(array), loaded())
    assert not labels.array[:, 46:49, 5:55].any()
    assert dice(labels.array == 1, image.array > 0) > 0.93
