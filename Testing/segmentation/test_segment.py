"""The one segmentation function: exact output geometry, 2D/3D paths, progress, cancel, no MONAI.

The network here is a real torch module with known behaviour (a soft threshold on the
normalised intensity, ``factories.ThresholdNet``), so the expected label image is known
independently of the pipeline: every check compares against a mask computed directly on the
input grid.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from factories import ellipsoid_ct, make_bundle, save_tiny_bundle, threshold_model
from LungLiverSegLib import geometry
from LungLiverSegLib.errors import Cancelled, InputImageError
from LungLiverSegLib.evaluation.metrics import dice
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.progress import CancelToken, Progress, StageClock
from LungLiverSegLib.segmentation.segment import segment_image
from scipy.spatial.transform import Rotation


def oblique_direction() -> np.ndarray:
    return Rotation.from_euler("xz", [25, 30], degrees=True).as_matrix()


@pytest.mark.parametrize(
    "direction",
    [np.eye(3), np.diag([-1.0, -1.0, 1.0]), np.diag([1.0, -1.0, -1.0]), oblique_direction()],
    ids=["LPS", "RAS-flipped", "LAI-flipped", "oblique"],
)
def test_output_is_on_the_exact_input_grid_and_in_the_right_place(direction):
    image = ellipsoid_ct(direction=direction)
    labels = segment_image(image, threshold_model())
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
    labels = segment_image(image, threshold_model())
    labels_flipped = segment_image(flipped, threshold_model())
    back = geometry.reorient(labels_flipped, geometry.orientation_code(image))
    np.testing.assert_array_equal(back.array, labels.array)


def test_no_resampling_reproduces_the_threshold_exactly():
    image = ellipsoid_ct(spacing=(2.0, 2.0, 3.0))
    labels = segment_image(image, threshold_model(orientation=None))
    np.testing.assert_array_equal(labels.array, (image.array > 0).astype(np.uint8))


def test_2d_model_runs_slice_by_slice_on_a_volume_and_on_a_2d_image():
    image = ellipsoid_ct()
    labels = segment_image(image, threshold_model(dims=2, orientation="LPS", resize_inplane=(48, 40)))
    assert labels.array.shape == image.array.shape
    assert dice(labels.array == 1, image.array > 0) > 0.9
    plane = image.array[12].astype(np.float32)
    picture = Image(plane, (0.7, 0.7), (0.0, 0.0))
    labels_2d = segment_image(picture, threshold_model(dims=2, orientation=None, body_crop=None))
    assert labels_2d.ndim == 2 and labels_2d.array.shape == plane.shape
    np.testing.assert_array_equal(labels_2d.array, (plane > 0).astype(np.uint8))


def test_a_bad_input_is_refused_before_any_work():
    picture = Image(np.zeros((5, 6, 3), np.uint8), (1.0, 1.0), (0.0, 0.0))
    picture.metadata["source_path"] = "photo.png"
    events = []
    progress = Progress(events.append, stages={"preprocess": 1, "network": 8, "postprocess": 1})
    with pytest.raises(InputImageError, match=r"photo\.png: a colour"):
        segment_image(picture, threshold_model(), progress=progress)
    assert events == []


def test_progress_is_monotonic_ends_at_one_and_has_an_eta():
    events = []
    segment_image(
        ellipsoid_ct(),
        threshold_model(),
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
        segment_image(ellipsoid_ct(size=(120, 100, 48)), threshold_model(), progress=progress)
    canceller.join()
    assert token.cancelled


def test_nothing_is_segmented_on_the_table():
    image = ellipsoid_ct()
    array = image.array.copy()
    array[:, 46:49, 5:55] = 300  # a table under the patient (separate from the ellipsoid)
    labels = segment_image(image.with_array(array), threshold_model())
    assert not labels.array[:, 46:49, 5:55].any()
    assert dice(labels.array == 1, image.array > 0) > 0.93


@pytest.mark.parametrize("dims", [2, 3])
def test_loading_and_segmenting_never_import_monai(tmp_path, dims):
    """Importing MONAI costs more than a chest X-ray's whole segmentation (``bundle.unets``)."""
    folder = save_tiny_bundle(tmp_path / f"tiny-{dims}d", make_bundle(dims))
    shape = (12, 40, 36) if dims == 3 else (40, 36)
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from LungLiverSegLib.geometry import Image
        from LungLiverSegLib.segmentation.segment import load_model, segment_image

        array = np.random.default_rng(0).uniform(-1000, 400, {shape}).astype(np.float32)
        image = Image(array, (1.0,) * {dims}, (0.0,) * {dims})
        labels = segment_image(image, load_model({str(folder)!r}, "cpu"))
        assert labels.array.shape == {shape}
        print(sorted(name for name in sys.modules if name.split(".")[0] == "monai"))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_the_run_says_where_its_time_went(tmp_path):
    """The clock names every stage, in order, and its seconds add up to the call's wall time."""
    import time

    from LungLiverSegLib.api import segment
    from LungLiverSegLib.imageio import write_image

    source = write_image(tmp_path / "ct.nii.gz", ellipsoid_ct())
    clock = StageClock()
    start = time.perf_counter()
    segment(source, tmp_path / "labels.nii.gz", threshold_model(), clock=clock)
    wall = time.perf_counter() - start
    stages = clock.seconds
    assert list(stages) == ["read", "preprocess", "network", "back to grid", "postprocess", "write"]
    assert all(seconds > 0 for seconds in stages.values())
    assert 0.8 * wall <= sum(stages.values()) <= wall
