"""The memory preflight, with the free RAM and VRAM given: every plan checked against numbers
worked out by hand from the estimates in ``memory.py``, the GPU plans included (no GPU needed).

The bundle: the factories' tiny UNet (widths 4 and 8, three output channels) with 64^3 windows,
so that one window's activations bound is 64^3 voxels * 4 bytes * (8 * 4 + 8) = 41,943,040 bytes.
The image: 100 x 200 x 200 int16 voxels (4,000,000), 1,000,000 voxels once prepared.

* RAM without activations: 4,000,000 * (2 + 4 + 1 + 4) + 1,000,000 * 4 * (1 + 3 + 2) = 68,000,000;
* plus the activations of batches of 4 / 2 / 1 windows: 235,772,160 / 151,886,080 / 109,943,040;
* on the GPU, windows in float16 (4 / 2 / 1: 83,886,080 / 41,943,040 / 20,971,520) and the output
  buffers, 1,000,000 * 4 * (3 + 3) = 24,000,000; 80% of the free VRAM is used.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from factories import make_bundle
from LungLiverSegLib.errors import OutOfMemoryRisk
from LungLiverSegLib.segmentation.memory import JobSize, available_ram_bytes, plan_execution

PACKAGE = Path(__file__).resolve().parents[2] / "LungLiverSeg"

JOB = JobSize(input_shape=(100, 200, 200), input_itemsize=2, prepared_voxels=1_000_000, batch_size=4)
CPU, GPU = torch.device("cpu"), torch.device("cuda")
GIB = 1024**3


@pytest.fixture
def bundle():
    tiny = make_bundle()
    return replace(tiny, inference=replace(tiny.inference, patch_size=(64, 64, 64), batch_size=4))


def plan(bundle, device=CPU, **free):
    return plan_execution(JOB, bundle, device, **free)


def test_a_cpu_plan_that_fits_keeps_the_batch(bundle):
    result = plan(bundle, ram_free=GIB)
    assert (result.device, result.aggregate_device, result.batch_size) == (CPU, CPU, 4)
    assert (result.peak_ram_bytes, result.peak_vram_bytes, result.notes) == (235_772_160, 0, [])


def test_the_batch_is_halved_until_it_fits_85_percent_of_the_free_ram(bundle):
    result = plan(bundle, ram_free=200_000_000)  # 170,000,000 usable: 4 windows do not fit, 2 do
    assert result.batch_size == 2 and result.peak_ram_bytes == 151_886_080
    assert result.notes == ["batch size lowered to 2 to fit RAM"]


def test_what_cannot_fit_even_one_window_at_a_time_is_refused_with_advice(bundle):
    with pytest.raises(OutOfMemoryRisk, match=r"needs about 0\.1 GiB of RAM but 0\.1 GiB is free: crop"):
        plan(bundle, ram_free=120_000_000)  # one window needs 109,943,040 > 90% of it
    with pytest.raises(OutOfMemoryRisk, match="crop the image"):
        plan_execution(JobSize((20000, 4096, 4096), 2, 10**9, 4), bundle, CPU, ram_free=64 * GIB)


@pytest.mark.parametrize(
    ("vram_free", "expected"),
    [
        (200_000_000, (GPU, GPU, 4, 83_886_080 + 24_000_000)),  # all of it on the GPU
        (120_000_000, (GPU, CPU, 4, 83_886_080)),  # the output buffers do not fit: kept in RAM
        (60_000_000, (GPU, CPU, 2, 41_943_040)),  # 4 windows do not fit either: 2
        (30_000_000, (GPU, CPU, 1, 20_971_520)),
    ],
    ids=["all-on-gpu", "aggregate-in-ram", "half-batch", "one-window"],
)
def test_the_gpu_plan_uses_at_most_80_percent_of_the_free_vram(bundle, vram_free, expected):
    result = plan(bundle, GPU, ram_free=GIB, vram_free=vram_free)
    assert (result.device, result.aggregate_device, result.batch_size, result.peak_vram_bytes) == expected
    assert result.peak_ram_bytes == 68_000_000  # the windows' activations are on the GPU
    in_ram = expected[1] == CPU
    assert result.notes == (
        ["the volume's output buffers are kept in RAM; windows run on the GPU"] if in_ram else []
    )


def test_without_enough_vram_for_one_window_the_cpu_runs_it(bundle):
    result = plan(bundle, GPU, ram_free=GIB, vram_free=20_000_000)  # 16,000,000 usable < 20,971,520
    assert (result.device, result.aggregate_device, result.batch_size) == (CPU, CPU, 4)
    assert (result.peak_ram_bytes, result.peak_vram_bytes) == (235_772_160, 0)
    assert result.notes == ["not enough free GPU memory (0.0 GiB usable): running on the CPU"]


def test_free_ram_is_read_from_the_machine_and_never_more_than_it_has():
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < available_ram_bytes() <= total


REALLOCATE_100_MB = """
import resource, sys
import numpy as np
sys.path.insert(0, {package!r})
from LungLiverSegLib.segmentation.memory import reuse_freed_memory
if {reuse}:
    assert reuse_freed_memory()
np.ones(100 * 2**20, np.uint8)  # first touch: faults either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    np.ones(100 * 2**20, np.uint8)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_freed_large_arrays_are_reused_instead_of_paged_in_again():
    """Five 100 MB arrays in a row: each is paged in (and zeroed by the kernel) again when it is
    unmapped on free: thousands of page faults (numpy asks for 2 MB pages, 4 kB pages give
    128,000); none once freed memory is reused."""

    def page_faults(reuse: bool) -> int:
        code = REALLOCATE_100_MB.format(package=str(PACKAGE), reuse=reuse)
        completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return int(completed.stdout)

    assert page_faults(reuse=False) > 1_000
    assert page_faults(reuse=True) < 100
