"""Weight averaging: the running mean against a hand-computed one, restarts, batch-norm statistics."""

from __future__ import annotations

import torch
from LungLiverSegTraining.averaging import WeightAverage


def linear_with(weight: float, bias: float) -> torch.nn.Linear:
    layer = torch.nn.Linear(1, 1)
    with torch.no_grad():
        layer.weight.fill_(weight)
        layer.bias.fill_(bias)
    return layer


def test_the_mean_of_three_epochs_is_the_hand_computed_one():
    average = WeightAverage()
    for epoch, (weight, bias) in enumerate([(1.0, 0.0), (2.0, 3.0), (6.0, -3.0)], start=4):
        average.add(linear_with(weight, bias), epoch, window_start=4)
    network = linear_with(0.0, 0.0)
    average.apply_to(network, [], torch.device("cpu"))
    assert network.weight.item() == 3.0 and network.bias.item() == 0.0
    assert average.describe(6) == "mean of the weights of epochs 4-6"


def test_the_state_round_trips_and_a_stale_window_restarts():
    average = WeightAverage()
    average.add(linear_with(1.0, 1.0), 9, window_start=9)
    restored = WeightAverage()
    restored.load_state_dict(average.state_dict())
    restored.add(linear_with(3.0, 3.0), 10, window_start=9)
    assert restored.mean["weight"].item() == 2.0 and restored.count == 2
    restored.add(linear_with(5.0, 5.0), 21, window_start=21)  # the run was extended: a new window
    assert restored.mean["weight"].item() == 5.0 and restored.first_epoch == 21
    fresh = WeightAverage()
    fresh.load_state_dict(None)  # a checkpoint from before averaging existed
    assert fresh.count == 0


def test_batch_norm_statistics_are_re_estimated_for_the_mean_weights():
    network = torch.nn.BatchNorm1d(1)
    network.running_mean.fill_(100.0)  # statistics that belong to some single epoch
    average = WeightAverage()
    average.add(network, 1, window_start=1)
    batches = [(torch.tensor([[1.0], [3.0]]), None), (torch.tensor([[5.0], [7.0]]), None)]
    average.apply_to(network, batches, torch.device("cpu"))
    assert network.running_mean.item() == 4.0
