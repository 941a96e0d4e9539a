"""The Slicer-compatibility harness: Slicer's Python 3.12 with only what Slicer bundles, Slicer's own
Python layer from ../shared/slicer-reference, real MRML from slicer-core (see
``slicer_harness/run_module.py`` for what runs inside).

The venv is made once, into ``.slicer-harness-venv/`` at the repository root (git-ignored), from
PyPI; a later session reuses it while its recipe is unchanged. Tests that need it skip with the
reason when no Python 3.12 or no ../shared/slicer-reference is found.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from slicer_module.slicer_harness.harness import (
    HARNESS_DIR,
    HARNESS_VENV,
    MODULE_FILE,
    RECIPE,
    SLICER_REFERENCE,
    create_venv,
    python312,
    run_in_harness,
)


@pytest.fixture(scope="session")
def slicer_python() -> Path:
    """The harness venv's interpreter (made on first use)."""
    python = python312()
    if python is None:
        pytest.skip("no Python 3.12 (Slicer 5.10/5.12's); set SLICER_HARNESS_PYTHON or install it with pyenv")
    recipe = HARNESS_VENV / "recipe.txt"
    if recipe.is_file() and recipe.read_text() == RECIPE:
        return HARNESS_VENV / "bin" / "python"
    return create_venv(python, HARNESS_VENV)


def slicer_python_layer(tag: str) -> Path:
    folder = SLICER_REFERENCE / tag / "Base" / "Python" / "slicer"
    if not (folder / "ScriptedLoadableModule.py").is_file():
        pytest.skip(f"Slicer's Python layer ({tag}) not found at {folder}: clone the repo next to shared/")
    return folder


@pytest.fixture(scope="session")
def harness_report(slicer_python: Path, tmp_path_factory) -> Callable[..., dict]:
    """``harness_report(tag, *flags)``: the report of ``run_module.py`` (one run per arguments)."""
    reports: dict[tuple, dict] = {}

    def report(tag: str, *flags: str) -> dict:
        if (tag, *flags) not in reports:
            layer = slicer_python_layer(tag)
            temp = tmp_path_factory.mktemp(f"harness-{tag}")
            arguments = [str(HARNESS_DIR / "run_module.py"), str(layer), str(MODULE_FILE), str(temp), *flags]
            result = run_in_harness(slicer_python, arguments, cwd=temp)
            assert result.returncode == 0, result.stderr[-4000:]
            reports[(tag, *flags)] = json.loads(result.stdout.splitlines()[-1])
        return reports[(tag, *flags)]

    return report
