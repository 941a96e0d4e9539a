"""The models shipped under Resources/Models: valid bundles, honest cards, and real segmentations.

The first tests need only the repository. The others segment real images from ../shared/data
(skipped with the reason when it is absent) and check the result against the data's own labels:
a shipped model that stops segmenting what its card promises fails here.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from factories import REPO_ROOT, require_file
from LungLiverSegLib.bundle.model_json import load_bundle
from LungLiverSegLib.evaluation.metrics import dice
from LungLiverSegLib.geometry import same_grid
from LungLiverSegLib.imageio.images import read_image
from LungLiverSegLib.segmentation.input_checks import InputWarning
from LungLiverSegLib.segmentation.segment import load_model, segment_image

MODELS = REPO_ROOT / "Resources" / "Models"
CATALOGUE = json.loads((MODELS / "Models.json").read_text())["models"]
REAL_MODELS = ("lungs-ct-3d", "liver-ct-2d", "lungs-cxr-2d")
MAX_BUNDLE_MB = 30


@pytest.mark.parametrize("entry", CATALOGUE, ids=[entry["name"] for entry in CATALOGUE])
def test_each_catalogue_entry_is_a_valid_bundle_that_matches_it(entry):
    folder = MODELS / entry["folder"]
    bundle = load_bundle(folder)  # validates every field and the weights' sha256
    assert (bundle.name, bundle.version, bundle.dims) == (entry["name"], entry["version"], entry["dims"])
    assert [info.name for info in bundle.labels.values()] == entry["segments"]
    assert sum(f.stat().st_size for f in folder.iterdir()) <= MAX_BUNDLE_MB * 1024**2
    card = (folder / "README.md").read_text()
    assert "## Validation" in card and "Licence" in card
    assert bundle.validation["mean_dice"] > 0.9
    assert entry["cpu_time_s"] == pytest.approx(bundle.validation["cpu_time_s"], abs=0.05)


def test_the_three_real_models_are_shipped():
    assert set(REAL_MODELS) <= {entry["name"] for entry in CATALOGUE}


def test_real_models_cards_name_their_data_and_licence():
    for entry in CATALOGUE:
        if entry["name"] in REAL_MODELS:
            card = (MODELS / entry["folder"] / "README.md").read_text()
            assert "## Data, licence and how it was made" in card, entry["name"]


# ------------------------------------------------------------------------------------------
# Real images
# ------------------------------------------------------------------------------------------


def segment_quietly(image, model):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        labels = segment_image(image, model)
    return labels, [w for w in caught if issubclass(w.category, InputWarning)]


@pytest.mark.realdata
def test_lungs_ct_3d_on_a_validation_patient(shared_data):
    folder = shared_data / "ct_lung_lctsc_2mm"
    image = read_image(require_file(folder / "Case_009_ct.nii.gz"))
    truth = read_image(folder / "Case_009_lungs.nii.gz").array > 0
    labels, warned = segment_quietly(image, load_model("lungs-ct-3d", "cpu"))
    assert same_grid(labels, image) and not warned
    assert dice(labels.array == 1, truth) > 0.96


@pytest.mark.realdata
def test_liver_ct_2d_on_a_3d_abdominal_ct_agrees_with_totalsegmentator(shared_data):
    """A 2D slice model applied to a whole 3D CT returns a 3D liver on the input grid."""
    folder = shared_data / "ct_abdomen_totalseg_example"
    image = read_image(require_file(folder / "example_ct.nii.gz"))
    totalsegmentator = read_image(folder / "example_seg_fast_force_split.nii.gz")
    reference = totalsegmentator.array == 5  # liver
    labels, warned = segment_quietly(image, load_model("liver-ct-2d", "cpu"))
    assert same_grid(labels, image) and not warned
    assert dice(labels.array == 1, reference) > 0.85


@pytest.mark.realdata
def test_lungs_cxr_2d_on_validation_x_rays(shared_data):
    folder = require_file(shared_data / "cxr_lung_shenzhen")
    model = load_model("lungs-cxr-2d", "cpu")
    split = json.loads((MODELS / "lungs-cxr-2d-v0.1.0" / "model.json").read_text())["provenance"]["split"]
    validation_cases = split.split("validation cases: ")[1].split(", ")
    scores = {1: [], 2: []}  # 1 = right lung (image left), 2 = left lung
    for case in validation_cases[-5:]:
        image = read_image(folder / "images" / f"{case}.png")
        truth = read_image(folder / "masks_lr" / f"{case}.png").array
        labels, _ = segment_quietly(image, model)
        assert labels.array.shape == truth.shape
        for value, found in scores.items():
            found.append(dice(labels.array == value, truth == value))
    assert all(sum(found) / len(found) > 0.9 for found in scores.values()), scores


@pytest.mark.realdata
def test_non_ct_input_to_the_lung_model_warns(shared_data):
    image = read_image(require_file(shared_data / "ct_abdomen_totalseg_example" / "example_mr_sm.nii.gz"))
    _, warned = segment_quietly(image, load_model("lungs-ct-3d", "cpu"))
    assert warned


@pytest.mark.realdata
def test_an_image_of_the_other_kind_warns_through_its_intensities(shared_data):
    """A chest X-ray given to the 8-bit liver-slice model and a CT slice given to the X-ray model:
    both are plain 0..255 PNGs without a modality; the intensity fingerprint tells them apart."""
    x_ray = read_image(require_file(shared_data / "cxr_lung_shenzhen" / "images" / "CHNCXR_0021_0.png"))
    ct_slice = read_image(require_file(shared_data / "ct_liver_msd_2d" / "images" / "10001_102.png"))
    for image, wrong_model in ((x_ray, "liver-ct-2d"), (ct_slice, "lungs-cxr-2d")):
        labels, warned = segment_quietly(image, load_model(wrong_model, "cpu"))
        assert any("unlike every image" in str(w.message) for w in warned), wrong_model
        assert labels.metadata["histogram_distance"] > 0.25
    for image, right_model in ((x_ray, "lungs-cxr-2d"), (ct_slice, "liver-ct-2d")):
        labels, warned = segment_quietly(image, load_model(right_model, "cpu"))
        assert not warned and labels.metadata["histogram_distance"] == 0.0, right_model


@pytest.mark.realdata
def test_lungs_ct_3d_finds_at_most_a_few_ml_in_an_abdomen_only_ct(shared_data):
    """example_ct.nii.gz without the slices where TotalSegmentator found lung (5 slices of margin)."""
    folder = shared_data / "ct_abdomen_totalseg_example"
    ct = read_image(require_file(folder / "example_ct.nii.gz"))
    lungs = np.isin(read_image(folder / "example_seg_fast_force_split.nii.gz").array, range(10, 15))
    lowest_lung_slice = int(np.flatnonzero(lungs.any(axis=(1, 2)))[0])
    abdomen = ct.with_array(ct.array[: lowest_lung_slice - 5])
    labels, warned = segment_quietly(abdomen, load_model("lungs-ct-3d", "cpu"))
    found_ml = np.count_nonzero(labels.array) * float(np.prod(abdomen.spacing)) / 1000.0
    assert found_ml < 10.0 and warned  # 6.6 mL (a bowel gas pocket) when shipped, and a warning
