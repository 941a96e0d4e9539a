"""Hard negatives for the lung model: painted bowel gas and a body cut by the field of view."""

from __future__ import annotations

import numpy as np
import pytest
from LungLiverSegLib import geometry
from LungLiverSegLib.phantom import make_phantom
from LungLiverSegLib.transforms import body_mask
from LungLiverSegTraining.hard_negatives import (
    LUNG_CLEARANCE_MM,
    add_bowel_gas,
    below_the_lungs,
    truncate_field_of_view,
)
from scipy import ndimage


@pytest.fixture(scope="module")
def chest():
    ct, labels, label_map = make_phantom(size=(96, 80, 60), spacing=(3.0, 3.0, 4.0), seed=1, tumour=False)
    (lung_value,) = [value for value, info in label_map.items() if info.name == "lungs"]
    lungs = labels.with_array((labels.array == lung_value).astype(np.uint8))
    return ct, lungs


def test_gas_is_painted_in_the_body_away_from_the_lungs(chest):
    ct, lungs = chest
    painted = add_bowel_gas(ct, lungs, np.random.default_rng(0))
    changed = painted.array != ct.array
    gas = changed & (painted.array < -700)
    assert gas.sum() > 100, "no gas pocket was painted"
    spacing_kji = np.asarray(ct.spacing[::-1])
    distance = ndimage.distance_transform_edt(lungs.array == 0, sampling=spacing_kji)
    assert distance[changed].min() > LUNG_CLEARANCE_MM - 2 * spacing_kji.max()  # blended edge: a voxel or two
    assert body_mask(ct.array.astype(np.float32), -500.0)[gas].all()
    assert painted.array.dtype == ct.array.dtype and geometry.same_grid(painted, ct)


def test_gas_painting_is_reproducible_from_its_seed(chest):
    ct, lungs = chest
    first = add_bowel_gas(ct, lungs, np.random.default_rng(5)).array
    assert np.array_equal(first, add_bowel_gas(ct, lungs, np.random.default_rng(5)).array)
    assert not np.array_equal(first, add_bowel_gas(ct, lungs, np.random.default_rng(6)).array)


def test_truncation_cuts_the_body_at_an_edge_and_keeps_ct_and_labels_aligned(chest):
    ct, lungs = chest
    for seed in range(4):
        cut_ct, cut_lungs = truncate_field_of_view(ct, lungs, np.random.default_rng(seed))
        body = body_mask(cut_ct.array.astype(np.float32), -500.0)
        assert body[:, :, 0].any() or body[:, :, -1].any(), "the body should touch a lateral edge"
        assert geometry.same_grid(cut_ct, cut_lungs)
        first_column = round(
            float(np.linalg.solve(ct.direction * ct.spacing, np.subtract(cut_ct.origin, ct.origin))[0])
        )
        width = cut_ct.array.shape[2]
        assert np.array_equal(cut_ct.array, ct.array[:, :, first_column : first_column + width])


def test_the_slab_below_the_lungs_holds_no_lung_and_reaches_them(chest):
    ct, lungs = chest
    box = below_the_lungs(lungs)
    slab = geometry.crop(lungs, box)
    assert slab.array.size > 0 and not slab.array.any()
    assert lungs.array[box[0].stop].any(), "the slab should end where the lungs begin"
