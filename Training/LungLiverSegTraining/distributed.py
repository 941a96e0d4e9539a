"""Multi-GPU / multi-node training under ``torchrun``: process group, rank roles, metric reduction.

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything here degrades to a
single process, so the trainer has one code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the job; rank 0 alone logs, checkpoints and exports."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the ``torchrun`` process group (NCCL on CUDA, gloo on CPU) when there is one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def rank_device(device: torch.device, context: DistributedContext) -> torch.device:
    """One GPU per local rank; CPU stays CPU."""
    if device.type != "cuda" or not context.enabled:
        return device
    torch.cuda.set_device(context.local_rank)
    return torch.device("cuda", context.local_rank)


def sum_across_ranks(values: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Element-wise sum over ranks (identity in a single process)."""
    if not context.enabled:
        return values
    device = torch.device("cuda", context.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")
    reduced = values.to(device, torch.float64)
    dist.all_reduce(reduced)
    return reduced.cpu()


def barrier(context: DistributedContext) -> None:
    if context.enabled:
        dist.barrier()


def shutdown(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
