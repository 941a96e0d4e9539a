"""Memory preflight: estimate peak RAM/VRAM before a job starts, and choose a plan that fits.

A large CT (a thousand thin slices) can need more memory than a laptop or a small GPU has free,
and running out of it part-way through kills the process (or Slicer with it) after minutes of
work, or leaves the machine swapping, with no hint of what to change. So the big buffers of the
pipeline are estimated from the image size and the bundle before anything runs, and compared with
what the machine has free: the plan either fits (smaller batch, aggregation on the CPU, CPU
instead of GPU, each said in a note) or the job stops at once with a message that says what to
do. The estimate is deliberately conservative: activations are bounded from the network's widest
layers.
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass, field

import numpy as np
import torch

from LungLiverSegLib.bundle.spec import ModelBundle
from LungLiverSegLib.errors import OutOfMemoryRisk

GIB = 1024**3
FLOAT = 4  # bytes of a float32


@dataclass
class ExecutionPlan:
    """Where each part of the work runs and with which batch size, plus the estimates behind it."""

    device: torch.device
    aggregate_device: torch.device
    batch_size: int
    peak_ram_bytes: int
    peak_vram_bytes: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class JobSize:
    """What the estimates depend on besides the bundle: the input array, the size of the volume
    once prepared (resampled and cropped), and the batch size asked for."""

    input_shape: tuple[int, ...]
    input_itemsize: int
    prepared_voxels: int
    batch_size: int


def available_ram_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux), else total physical memory."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def available_vram_bytes(device: torch.device) -> int:
    """Free memory on a CUDA device, 0 for the CPU."""
    if device.type != "cuda":
        return 0
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def _widest_channels(bundle: ModelBundle) -> int:
    params = bundle.architecture.params
    widths = params.get("channels") or params.get("features") or (32, 64, 128, 256)
    return int(max(widths))


def window_activation_bytes(bundle: ModelBundle, batch_size: int) -> int:
    """Upper bound of the activations of one forward pass over ``batch_size`` windows/slices.

    A U-Net at full patch resolution holds a few feature maps of the first width; deeper levels
    shrink by 2**dims per level while the width doubles, so the whole stack is bounded by about
    eight maps of the first level's width plus the widest level's share.
    """
    params = bundle.architecture.params
    first = int((params.get("channels") or params.get("features") or (32,))[0])
    patch_voxels = int(np.prod(bundle.inference.patch_size))
    per_window = patch_voxels * FLOAT * (8 * first + _widest_channels(bundle))
    return batch_size * per_window


def estimate_peak_ram(job: JobSize, bundle: ModelBundle) -> int:
    """Peak host memory of ``segment_image`` for an input of this shape (bytes), without the
    activations (``window_activation_bytes``).

    Input array + float32 body crop (bounded by the whole image) + prepared tensor + the
    aggregation buffers (one per output channel plus the weight map) + the uint8 output and the
    int32 component map used by postprocessing.
    """
    voxels = int(np.prod(job.input_shape))
    aggregation = job.prepared_voxels * FLOAT * (bundle.out_channels + 2)
    return voxels * (job.input_itemsize + FLOAT + 1 + 4) + job.prepared_voxels * FLOAT + aggregation


def plan_execution(
    job: JobSize,
    bundle: ModelBundle,
    device: torch.device,
    *,
    ram_free: int | None = None,
    vram_free: int | None = None,
) -> ExecutionPlan:
    """Choose devices and batch size that fit the free memory, or raise ``OutOfMemoryRisk``.

    ``ram_free`` and ``vram_free`` (bytes) are read from the machine unless given.
    """
    ram_free = available_ram_bytes() if ram_free is None else ram_free
    peak_ram = estimate_peak_ram(job, bundle)
    notes: list[str] = []
    aggregate_device = device
    batch_size = job.batch_size
    vram_peak = 0
    if device.type == "cuda":
        vram_free = available_vram_bytes(device) if vram_free is None else vram_free
        device, aggregate_device, batch_size, vram_peak = _fit_gpu(job, bundle, device, vram_free, notes)
    if device.type == "cpu":
        while batch_size > 1 and peak_ram + window_activation_bytes(bundle, batch_size) > 0.85 * ram_free:
            batch_size = max(1, batch_size // 2)
            notes.append(f"batch size lowered to {batch_size} to fit RAM")
        peak_ram += window_activation_bytes(bundle, batch_size)
    if peak_ram > 0.9 * ram_free:
        raise OutOfMemoryRisk(
            f"this image needs about {peak_ram / GIB:.1f} GiB of RAM but {ram_free / GIB:.1f} GiB is free: "
            "crop the image to the region of interest, close other programs, or use a model with a coarser "
            "spacing"
        )
    return ExecutionPlan(device, aggregate_device, batch_size, peak_ram, vram_peak, notes)


def _fit_gpu(
    job: JobSize, bundle: ModelBundle, device: torch.device, vram_free: int, notes: list[str]
) -> tuple[torch.device, torch.device, int, int]:
    """GPU plan: everything on the GPU, else windows on GPU + aggregation on CPU, else CPU."""
    free = 0.8 * vram_free
    aggregation = job.prepared_voxels * FLOAT * (bundle.out_channels + 3)
    batch_size = job.batch_size
    for size in (batch_size, max(1, batch_size // 2), 1):
        windows = window_activation_bytes(bundle, size) // 2  # float16 under autocast
        if windows + aggregation <= free:
            return device, device, size, windows + aggregation
        if windows <= free:
            notes.append("the volume's output buffers are kept in RAM; windows run on the GPU")
            return device, torch.device("cpu"), size, windows
    notes.append(f"not enough free GPU memory ({free / GIB:.1f} GiB usable): running on the CPU")
    return torch.device("cpu"), torch.device("cpu"), batch_size, 0


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
"""glibc's ``mallopt`` parameter numbers (malloc.h)."""
KEPT_FREE_BYTES = GIB
"""Freed memory at the top of the heap that glibc keeps for the next allocation instead of
returning it to the system."""


def reuse_freed_memory() -> bool:
    """Let this process reuse the memory of freed large arrays instead of returning it at once.

    glibc gives every block above 32 MB its own ``mmap`` and unmaps it when freed, so each
    activation of each window, and each full-resolution array of the way back, is paged in and
    zeroed by the kernel again: on a 2-core machine that is 0.6 s of a chest CT's first window and
    a fifth of every later one. Served from the heap instead, freed blocks are reused. A process
    setting: the command line (and the Slicer module's child process, which runs it) asks for it;
    a Python program that imports the library keeps its own. Returns whether it took effect
    (glibc only; elsewhere nothing changes).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEPT_FREE_BYTES))
