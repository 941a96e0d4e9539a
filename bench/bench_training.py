"""Training throughput of our pipeline against a plain MONAI training loop, same network and data.

Run: ``python bench/bench_training.py`` (the lungs-ct-3d preset at its patch and batch; needs a
GPU to be quick) or ``python bench/bench_training.py --small`` (patch 48x48x32, for a CPU).
Both loops get the same prepared phantom volumes (the preprocessing runs once, outside the
timing), the same crops and augmentations, the same network, loss and optimiser; they differ
only in the loop around them: ours (``PatchDataset`` with per-sample seeding, our
``train_step`` with AMP/GradScaler/scheduler) versus MONAI's ``Dataset`` + ``DataLoader`` and an
inline step. Reported per loop: iterations/s, samples (patches)/s, and the share of the
iteration time spent in the step (forward, backward, update) rather than in the data pipeline.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

import monai.data
import torch
from LungLiverSegLib.bundle.networks import build_network
from LungLiverSegLib.demo.phantom import make_phantom
from LungLiverSegTraining.config import TrainingConfig, load_config
from LungLiverSegTraining.distributed import DistributedContext
from LungLiverSegTraining.patches import KEYS, PatchDataset, augmentation, concatenate_samples, prepare_case
from LungLiverSegTraining.progress_report import Reporter
from LungLiverSegTraining.trainer import Run, train_step
from monai.losses import DiceCELoss
from monai.transforms import Compose, SelectItemsd

CASES = 4
WARMUP_ITERATIONS = 2


def bench_config(small: bool) -> TrainingConfig:
    config = load_config("lungs-ct-3d")
    if small:
        params = {**config.architecture["params"], "channels": [8, 16, 32, 64], "strides": [2, 2, 2]}
        config = replace(
            config,
            architecture={**config.architecture, "params": params},
            inference={**config.inference, "patch_size": [48, 48, 32]},
        )
    return config.validate()


def prepared_cases(config: TrainingConfig) -> list[dict]:
    """Phantom chest CTs (lungs labelled) through the real preprocessing, once."""
    cases = []
    for seed in range(CASES):
        ct, labels, _ = make_phantom(seed=seed, tumour=False)
        lungs = labels.with_array((labels.array == 1).astype("uint8"))
        cases.append(prepare_case(ct, lungs, config))
    return cases


def timed(
    batches: Iterable,
    step: Callable[[torch.Tensor, torch.Tensor], object],
    iterations: int,
    device: torch.device,
) -> dict[str, float]:
    """Iterate, timing the whole iteration and the step alone (after a warm-up)."""
    total = step_time = 0.0
    samples = 0
    iterator = iter(batches)
    for index in range(WARMUP_ITERATIONS + iterations):
        started = time.perf_counter()
        images, labels = next(iterator)
        step_started = time.perf_counter()
        step(images.to(device), labels.to(device))
        if device.type == "cuda":
            torch.cuda.synchronize()
        finished = time.perf_counter()
        if index >= WARMUP_ITERATIONS:
            total += finished - started
            step_time += finished - step_started
            samples += images.shape[0]
    return {"iterations/s": iterations / total, "samples/s": samples / total, "step share": step_time / total}


def endless(loader: Iterable) -> Iterable:
    while True:
        yield from loader


def ours(
    config: TrainingConfig, cases: list[dict], device: torch.device, iterations: int
) -> dict[str, float]:
    patches = PatchDataset(cases, augmentation(config), config.seed)
    loader = torch.utils.data.DataLoader(
        patches, batch_size=config.batch_size, shuffle=True, collate_fn=concatenate_samples
    )
    silent = Reporter("none", total_steps=iterations, done_steps=0)
    run = Run(config, device, DistributedContext(), silent, new_network(config, device), len(loader))
    return timed(endless(loader), lambda x, y: train_step(run, x, y), iterations, device)


def plain_monai(
    config: TrainingConfig, cases: list[dict], device: torch.device, iterations: int
) -> dict[str, float]:
    """The textbook MONAI loop: Dataset + list_data_collate, forward, loss, backward, step."""
    network = new_network(config, device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True)
    dataset = monai.data.Dataset(cases, Compose([augmentation(config), SelectItemsd(KEYS)]))
    loader = monai.data.DataLoader(
        dataset, batch_size=config.batch_size, shuffle=True, collate_fn=monai.data.list_data_collate
    )

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        optimizer.zero_grad()
        loss_function(network(images), labels.long()).backward()
        optimizer.step()

    batches = ((batch["image"].as_tensor(), batch["label"].as_tensor()) for batch in endless(loader))
    return timed(batches, step, iterations, device)


def new_network(config: TrainingConfig, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    template = config.bundle_template()
    return build_network(template.architecture, 3, 1, template.out_channels).to(device).train()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="patch 48x48x32 and a smaller net (CPU)")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    config = bench_config(args.small)
    cases = prepared_cases(config)
    print(
        f"lungs-ct-3d on {device}: patch {config.inference['patch_size']} (i, j, k), "
        f"batch {config.batch_size} cases x {config.samples_per_case} patches, {args.iterations} iterations"
    )
    results = {
        "ours": ours(config, cases, device, args.iterations),
        "plain MONAI": plain_monai(config, cases, device, args.iterations),
    }
    for name, result in results.items():
        print(f"{name:12} " + "  ".join(f"{key} {value:7.3f}" for key, value in result.items()))
    ratios = {key: results["ours"][key] / results["plain MONAI"][key] for key in results["ours"]}
    print("ours / plain " + "  ".join(f"{key} {value:7.3f}" for key, value in ratios.items()))


if __name__ == "__main__":
    main()
