"""Postprocessing on the network's grid against the straightforward path (return to the input grid,
then postprocess there), and its two helpers against torch and the argmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from LungLiverSegLib.bundle.spec import DensityCheckSpec, PostprocessingSpec
from LungLiverSegLib.evaluation.metrics import dice
from LungLiverSegLib.segmentation.network_grid import coarser, postprocess_scores, sample_nearest, settle
from LungLiverSegLib.segmentation.postprocess import postprocess_labels
from LungLiverSegLib.segmentation.preprocess import (
    class_scores,
    labels_from_scores,
    probabilities_to_labels,
    scores_to_labels,
)

NETWORK_SHAPE = (16, 24, 28)
"""The network's grid: 3x2x2 mm voxels over the input's 1 mm grid of ``INPUT_SHAPE``."""
INPUT_SHAPE = (48, 48, 56)
SPEC = PostprocessingSpec(
    fill_holes=(1, 2),
    min_volume_ml=0.2,
    density_check=DensityCheckSpec(
        labels=(1,), below_ml=20.0, max_mean=-500.0, air_below=-950.0, max_air_fraction=0.35
    ),
)


@pytest.mark.parametrize("shape", [(7, 9, 11), (30, 40, 50), (1, 5, 3)])
def test_sample_nearest_is_nearest_exact_interpolation(shape):
    array = np.random.default_rng(0).integers(-1000, 1000, (10, 20, 30)).astype(np.int16)
    expected = F.interpolate(torch.from_numpy(array).float()[None, None], size=shape, mode="nearest-exact")
    np.testing.assert_array_equal(sample_nearest(array, shape), expected[0, 0].numpy().astype(np.int16))


def test_settled_scores_give_the_cleaned_labels_and_leave_the_rest_alone():
    generator = torch.Generator().manual_seed(0)
    scores = class_scores(torch.softmax(torch.randn(3, 4, 5, 6, generator=generator), dim=0))
    before = labels_from_scores(scores.permute(1, 0, 2, 3)).numpy()
    after = before.copy()
    after[0] = 0  # dropped
    after[1] = 2  # filled
    untouched = scores[:, 2:].clone()
    settle(scores, before, after)
    np.testing.assert_array_equal(labels_from_scores(scores.permute(1, 0, 2, 3)).numpy(), after)
    assert torch.equal(scores[:, 2:], untouched)
    dropped, filled = torch.from_numpy(before[0] != 0), torch.from_numpy(before[1] != 2)
    assert (scores[:, 0][:, dropped] == -1).all()  # certain background
    assert (scores[0, 1][filled] == 0).all() and (scores[1, 1][filled] == 1).all()  # certain label 2


def _scene(classes: int) -> tuple[torch.Tensor, np.ndarray]:
    """Probabilities on the network's grid and the image on the input grid: an aerated organ (label
    1) with an enclosed hole, a speck of debris, a small pocket of gas also called label 1, and
    (with 3 classes) a second organ whose hole holds a piece of the first."""
    centres = ((np.arange(n) + 0.5) * mm for n, mm in zip(NETWORK_SHAPE, (3, 2, 2), strict=True))
    k, j, i = np.meshgrid(*centres, indexing="ij")

    def ball(centre: tuple[float, float, float], radius: float) -> np.ndarray:
        return radius - np.sqrt((k - centre[0]) ** 2 + (j - centre[1]) ** 2 + (i - centre[2]) ** 2)

    organ = np.minimum(ball((24, 20, 18), 14), -ball((24, 20, 18), 4))  # a shell: the hole inside
    first = np.maximum.reduce([organ, ball((8, 40, 48), 2.2), ball((38, 40, 46), 4.5)])
    second = np.minimum(ball((24, 24, 44), 9), -ball((24, 24, 44), 3)) if classes == 3 else None
    logits = [np.zeros_like(first), first] + ([second] if second is not None else [])
    probabilities = torch.softmax(torch.from_numpy(np.stack(logits)).float() * 2, dim=0)
    zi, yi, xi = np.meshgrid(*(np.arange(n) + 0.5 for n in INPUT_SHAPE), indexing="ij")
    image = np.where((zi - 24) ** 2 + (yi - 20) ** 2 + (xi - 18) ** 2 < 16**2, -850, 40).astype(np.int16)
    image[::3, ::2, ::5] = np.minimum(image[::3, ::2, ::5], -980)  # vessels and walls aside, some dark air
    image[(zi - 38) ** 2 + (yi - 40) ** 2 + (xi - 46) ** 2 < 5**2] = -1000  # the gas pocket
    return probabilities, image


@pytest.mark.parametrize("classes", [2, 3])
def test_cleaning_on_the_network_grid_matches_cleaning_on_the_input_grid(classes):
    probabilities, image = _scene(classes)
    raw = probabilities_to_labels(probabilities, INPUT_SHAPE)
    straightforward = postprocess_labels(raw.copy(), (1.0, 1.0, 1.0), SPEC, image)
    scores = class_scores(probabilities)
    assert coarser(scores, INPUT_SHAPE)
    postprocess_scores(scores, (1.0, 1.0, 1.0), SPEC, image)
    ours = scores_to_labels(scores, INPUT_SHAPE)
    changed = raw != straightforward  # the holes filled, the speck and the gas dropped, the organ kept
    assert (straightforward[changed] == 0).sum() > 300 and (straightforward[changed] == 1).sum() > 200
    assert (straightforward == 1).sum() > 10_000
    for value in range(1, classes):
        assert dice(ours == value, straightforward == value) >= 0.999
