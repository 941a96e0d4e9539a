"""Validation through the core's ``segment_image``: per-patient pooling of 2D slices."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from factories import write_png
from LungLiverSegTraining.config import load_config
from LungLiverSegTraining.dataset_reader import open_dataset
from LungLiverSegTraining.distributed import DistributedContext
from LungLiverSegTraining.validation import validate, validation_cases


class BrightIsForeground(torch.nn.Module):
    """Label 1 exactly where a 0..255 image is above 127 (normalised above 0.5)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([-(x - 0.5), x - 0.5], dim=1) * 100.0


def test_2d_validation_pools_dice_per_volume(tmp_path):
    """Volume 1000: a 1600-pixel liver found exactly and a 16-pixel one missed (slice Dice 1 and 0,
    pooled 3200 / 3232); volume 1001: one slice found exactly. Patient mean: (3200/3232 + 1) / 2."""
    big, small, elsewhere = np.zeros((3, 256, 256), np.uint8)
    big[100:140, 100:140] = small[20:24, 20:24] = elsewhere[200:204, 200:204] = 1
    slices = {"1000_1": (big, big), "1000_2": (small, elsewhere), "1001_5": (big, big)}
    for name, (truth, bright) in slices.items():
        write_png(tmp_path / "images" / f"{name}.png", bright * 255)
        write_png(tmp_path / "masks" / f"{name}.png", truth)
    no_cleaning = {"largest_component": [], "fill_holes": [], "min_volume_ml": 0.0}
    config = replace(load_config("liver-ct-2d"), postprocessing=no_cleaning).validate()
    cases = validation_cases(open_dataset(tmp_path, config), config, list(slices))
    result = validate(
        BrightIsForeground(), config.bundle_template(), cases, torch.device("cpu"), DistributedContext()
    )
    assert result["mean_dice"] == pytest.approx((3200 / 3232 + 1.0) / 2)
    assert result["nsd@2mm"]["liver"] == pytest.approx((0.5 + 1.0) / 2)  # NSD: mean over a volume's slices
    assert (result["patients"], result["cases"]) == (2, 3)
    assert result["unsure_ratio_p95"] == 0.01  # a sure network: every image in the first 0.01 bin
