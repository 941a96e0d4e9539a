"""Weight averaging over the final epochs (stochastic weight averaging, Izmailov et al. 2018).

With a few hundred training images the network's weights still wander from epoch to epoch at
the end of training, and the validation score with them; the mean of the final epochs' weights
sits nearer the centre of that wide minimum and often generalises better than any single epoch
(whether it did for the bundled models: docs/TRAINING.md). The trainer keeps a running mean of
the weights at the end of each of the last ``average_last_epochs`` epochs and, after the final
one, puts the mean into the network, which is then validated and checkpointed like any other
epoch (so best-epoch selection can pick it).

Not ``torch.optim.swa_utils.AveragedModel`` (a deep copy of the network, on the training device
unless told otherwise, whose state would change the checkpoint format so that runs in progress
could not resume): this mean is one CPU tensor per weight, restarts when an extended run moves
its window, remembers its first epoch for the provenance, and checkpoints as plain tensors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch.nn.modules.batchnorm import _BatchNorm


class WeightAverage:
    """Running mean of a network's floating-point weights, one sample per epoch."""

    def __init__(self) -> None:
        self.mean: dict[str, torch.Tensor] = {}
        self.count = 0
        self.first_epoch = 0

    def add(self, network: torch.nn.Module, epoch: int, window_start: int) -> None:
        """Fold the network's current weights into the mean (integer buffers: the latest value).
        A mean begun before ``window_start`` (a run since extended with more epochs) restarts."""
        if self.count == 0 or self.first_epoch < window_start:
            self.count, self.first_epoch = 0, epoch
        self.count += 1
        for name, value in network.state_dict().items():
            value = value.detach().to("cpu", copy=True)
            if self.count == 1 or not value.is_floating_point():
                self.mean[name] = value
            else:
                self.mean[name] += (value - self.mean[name]) / self.count

    def apply_to(self, network: torch.nn.Module, batches: Iterable, device: torch.device) -> None:
        """Load the mean into ``network``; batch-norm statistics are re-estimated on ``batches``,
        since averaged running statistics do not belong to the averaged weights."""
        network.load_state_dict(self.mean)
        if any(isinstance(module, _BatchNorm) for module in network.modules()):
            torch.optim.swa_utils.update_bn(batches, network, device)

    def describe(self, last_epoch: int) -> str:
        return f"mean of the weights of epochs {self.first_epoch}-{last_epoch}"

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "count": self.count, "first_epoch": self.first_epoch}

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        """Restore from a checkpoint (None: a checkpoint written before averaging existed)."""
        if state:
            self.mean = dict(state["mean"])
            self.count = int(state["count"])
            self.first_epoch = int(state["first_epoch"])
