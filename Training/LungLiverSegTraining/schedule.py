"""Learning-rate schedule: linear warm-up, then cosine decay to zero, stepped once per iteration.

Not MONAI's ``WarmupCosineSchedule``: its cosine part is the same, but its warm-up climbs from
``warmup_multiplier`` (default 0: a first step that does not learn) in steps of
``(1 - multiplier) / warmup_steps``, which no setting makes equal to this ramp,
``(step + 1) / warmup_steps``; swapping it would change what every config trains.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """Warm-up avoids the large, noisy first updates of AdamW on a fresh network; cosine decay
    then anneals to zero at ``total_steps`` (recomputed from the config on resume, so a run can be
    extended with a larger ``--epochs``)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
