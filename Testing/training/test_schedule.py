"""The learning-rate schedule against hand-computed rates, and against MONAI's after warm-up."""

from __future__ import annotations

import pytest
import torch
from LungLiverSegTraining.schedule import warmup_cosine
from monai.optimizers import WarmupCosineSchedule

BASE_RATE = 2.0


def optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE_RATE)


def rates(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    """The rate each of the first ``steps`` optimiser steps uses (stepped once per iteration)."""
    values = []
    for _ in range(steps):
        values.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return values


def test_warm_up_climbs_to_the_full_rate_then_cosine_decays_to_zero_and_stays():
    """Warm-up 4 of 8 steps: (step + 1) / 4; then (1 + cos(pi * (step - 4) / 4)) / 2, which is
    1, (1 + 0.70711) / 2, 1/2, (1 - 0.70711) / 2, then 0 from step 8 on."""
    found = rates(warmup_cosine(optimizer(), 4, 8), 10)
    factors = [0.25, 0.5, 0.75, 1.0, 1.0, 0.8535534, 0.5, 0.1464466, 0.0, 0.0]
    assert found == pytest.approx([BASE_RATE * factor for factor in factors], abs=1e-6)


def test_without_warm_up_the_first_step_has_the_full_rate():
    assert rates(warmup_cosine(optimizer(), 0, 4), 5) == pytest.approx(
        [2.0, 1.7071068, 1.0, 0.2928932, 0.0], abs=1e-6
    )


def test_after_warm_up_the_decay_is_monais_whose_warm_up_starts_at_zero():
    ours = rates(warmup_cosine(optimizer(), 5, 30), 30)
    monai = rates(WarmupCosineSchedule(optimizer(), warmup_steps=5, t_total=30), 30)
    assert ours[5:] == pytest.approx(monai[5:], abs=1e-9)
    assert monai[0] == 0.0 and ours[0] == BASE_RATE / 5  # why schedule.py keeps its own
