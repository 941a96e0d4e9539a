"""The patch pipeline's pieces that a run's reproducibility and the bundle's fingerprint rest on."""

from __future__ import annotations

import numpy as np
from LungLiverSegLib.bundle.spec import HistogramRangeSpec
from LungLiverSegTraining.patches import MAX_SEED, histogram_range, sample_seed


def test_sample_seeds_are_distinct_per_seed_epoch_and_sample_and_do_not_change():
    keys = [(seed, epoch, index) for seed in range(3) for epoch in range(1, 11) for index in range(20)]
    seeds = [sample_seed(*key) for key in keys]
    assert len(set(seeds)) == len(keys)
    assert all(0 <= seed < MAX_SEED for seed in seeds)
    assert [sample_seed(*key) for key in reversed(keys)] == seeds[::-1]  # no hidden state
    # Pinned: another mixing would give every run (and a resumed one) other augmentations.
    assert (sample_seed(0, 1, 0), sample_seed(7, 3, 5)) == (1817441349, 78856430)


def test_the_fingerprint_is_each_bins_lowest_and_highest_fraction_rounded_to_4_places():
    cases = [
        {"histogram": np.array([0.1, 0.6, 0.3])},
        {"histogram": np.array([0.25, 0.5, 0.25])},
        {"histogram": np.array([0.123456, 0.8, 0.076544])},
    ]
    assert histogram_range(cases) == HistogramRangeSpec(low=(0.1, 0.5, 0.0765), high=(0.25, 0.8, 0.3))
