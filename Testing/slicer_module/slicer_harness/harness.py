"""The Slicer-compatibility harness, driven from pytest: where Slicer's Python layer is, and the
venv of Slicer's Python 3.12 with only what Slicer bundles plus slicer-core (real MRML).

``run_module.py`` (run inside that venv) loads and drives the module; ``pythonqt.py`` holds the
stand-ins for PythonQt's ``qt``/``ctk`` classes.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
SLICER_REFERENCE = REPO_ROOT.parent / "shared" / "slicer-reference"
SLICER_TAGS = ("v5.10.0", "v5.12.3")
HARNESS_DIR = Path(__file__).resolve().parent
HARNESS_VENV = REPO_ROOT / ".slicer-harness-venv"
MODULE_FILE = REPO_ROOT / "LungLiverSeg" / "LungLiverSeg.py"

SLICER_BUNDLES = ("numpy", "scipy", "SimpleITK", "Pillow", "pydicom", "requests", "packaging")
"""What Slicer 5.10/5.12 ship (``SuperBuild/External_python-*.cmake``), and nothing else."""
SLICER_CORE = "slicer-core==5.11.*"
"""Real MRML. Installed with ``--no-deps`` (and its ``vtk`` too): the vtk wheel asks for
matplotlib, which Slicer's VTK does not bring."""
RECIPE = " ".join((*SLICER_BUNDLES, SLICER_CORE, "vtk --no-deps"))


def python312() -> str | None:
    """Slicer 5.10/5.12's Python version: ``$SLICER_HARNESS_PYTHON``, pyenv's 3.12 or ``python3.12``
    (the first that runs: a pyenv shim without that version selected does not)."""
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = [
        os.environ.get("SLICER_HARNESS_PYTHON"),
        *sorted(glob.glob(f"{pyenv_root}/versions/3.12.*/bin/python"), reverse=True),
        shutil.which("python3.12"),
    ]
    return next((c for c in candidates if c and is_python312(c)), None)


def is_python312(python: str) -> bool:
    check = "import sys; sys.exit(sys.version_info[:2] != (3, 12))"
    return subprocess.run([python, "-c", check], capture_output=True, timeout=60).returncode == 0


def create_venv(python: str, venv: Path) -> Path:
    """``venv`` from ``python`` with Slicer's bundled packages and slicer-core; its interpreter."""
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    interpreter = venv / "bin" / "python"
    pip = [str(interpreter), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, *SLICER_BUNDLES], check=True)
    subprocess.run([*pip, "--no-deps", SLICER_CORE], check=True)
    vtk = subprocess.run(
        [str(interpreter), "-c", "import importlib.metadata as m; print(*m.requires('slicer-core'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    subprocess.run([*pip, "--no-deps", *[r for r in vtk if r.startswith("vtk")]], check=True)
    (venv / "recipe.txt").write_text(RECIPE)
    return interpreter


def run_in_harness(slicer_python: Path, arguments: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    """Run the harness venv's interpreter (no user site, nothing of this venv on its path)."""
    unset = ("PYTHONPATH", "VIRTUAL_ENV")
    environment = {key: value for key, value in os.environ.items() if key not in unset}
    return subprocess.run(
        [str(slicer_python), "-s", *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
        **kwargs,
    )
