"""``bench/gpu_check.py``: its dry run on the CPU prints the four sections with numbers, it says in
one line (exit status 2) what is missing, and on a CUDA machine it runs for real within its limit."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"
SECTIONS = ("[1] segmentation time", "[2] peak memory", "[3] training throughput", "[4] ")


def run_check(*options: str, timeout: float) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def assert_four_sections_with_numbers(stdout: str) -> None:
    for section in SECTIONS:
        assert section in stdout, stdout
        body = stdout.split(section, 1)[1].split("\n[", 1)[0]
        assert re.search(r"\n  \S.*\d", body), f"no numbers under {section!r}:\n{stdout}"
    assert "DIFFERS" not in stdout


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_dry_run_on_the_cpu_prints_the_four_sections_with_numbers():
    completed = run_check("--dry-run", "--device", "cpu", timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert_four_sections_with_numbers(completed.stdout)
    assert "ours / plain MONAI" in completed.stdout


def test_a_missing_dependency_is_one_line_that_says_what_to_install(monkeypatch, capsys):
    gpu_check = load_script()
    assert gpu_check.missing_packages(["numpy>=1", "no-such-package-lls==1"]) == ["no-such-package-lls==1"]
    monkeypatch.setattr(gpu_check, "missing_packages", lambda _: ["monai==1.6.1", "SimpleITK>=2.4,<3"])
    with pytest.raises(SystemExit) as stopped:
        gpu_check.check_dependencies()
    assert stopped.value.code == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "pip install 'monai==1.6.1' 'SimpleITK>=2.4,<3'" in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_without_cuda_the_full_check_says_so_and_exits_2():
    completed = run_check(timeout=120)
    assert completed.returncode == 2
    assert completed.stdout == "" and "no CUDA device" in completed.stderr


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_full_check_runs_within_its_time_limit():
    completed = run_check("--device", "cuda", "--time-limit-s", "300", timeout=480)
    assert completed.returncode == 0, completed.stdout + completed.stderr[-3000:]
    assert_four_sections_with_numbers(completed.stdout)
    assert "peak GPU memory" in completed.stdout and "skipped (past" not in completed.stdout
