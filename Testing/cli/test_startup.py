"""The light commands stay light: ``--help``, ``models`` and ``evaluate`` never import torch, MONAI or
safetensors (importing torch and MONAI alone takes seconds), plug-in commands such as ``train``
included. Each runs in a fresh interpreter, which then reports what it imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.imageio import write_image

HEAVY = ("torch", "monai", "safetensors")
PROBE = f"""
import json, sys
from LungLiverSegLib.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as stop:  # --help
    status = stop.code
print(json.dumps({{"status": status, "heavy": sorted(set({HEAVY!r}) & set(sys.modules))}}))
"""


def run_in_fresh_interpreter(args: list[str], env: dict[str, str] | None = None) -> dict:
    """The command's exit status and the heavy modules it loaded (the probe's last stdout line)."""
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120, env=env
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.splitlines()[-1])


@pytest.fixture
def label_pair(tmp_path: Path) -> tuple[Path, Path]:
    truth = np.zeros((6, 12, 12), np.uint8)
    truth[1:5, 3:9, 3:9] = 1
    grid = {"spacing": (1.0, 1.0, 2.0), "origin": (0.0, 0.0, 0.0)}
    gt = write_image(tmp_path / "gt.nii.gz", Image(truth, **grid))
    pred = write_image(tmp_path / "pred.nii.gz", Image(np.roll(truth, 1, axis=2), **grid))
    return pred, gt


def test_help_imports_no_torch():
    assert run_in_fresh_interpreter(["--help"]) == {"status": 0, "heavy": []}


def test_models_imports_no_torch(tmp_path: Path):
    """The bundled models and (empty here) the user's models folder are listed."""
    env = {**os.environ, "LUNGLIVSEG_MODELS": str(tmp_path)}
    assert run_in_fresh_interpreter(["models"], env) == {"status": 0, "heavy": []}


def test_evaluate_imports_no_torch(label_pair: tuple[Path, Path]):
    pred, gt = label_pair
    for output in ([], ["--json"]):
        assert run_in_fresh_interpreter(["evaluate", str(pred), str(gt), *output]) == {
            "status": 0,
            "heavy": [],
        }
