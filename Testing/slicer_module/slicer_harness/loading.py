"""Loading a file as a module the way Slicer does, for the scripts that drive LungLiverSeg.py.

Runs inside those scripts' interpreters (the harness's Python 3.12, or this venv's), so it uses
the standard library only.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path


def load(name: str, path: str | Path) -> types.ModuleType:
    """``qSlicerScriptedUtils::loadSourceAsModule``: the module is in ``sys.modules`` before it
    runs (as Slicer's own Python files and ``from __future__ import annotations`` expect)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_like_slicer(module_file: Path) -> types.ModuleType:
    """A scripted module after Slicer's factory appended its folder to ``sys.path``."""
    sys.path.append(str(module_file.parent))
    return load(module_file.stem, module_file)


def empty_pythonqt() -> None:
    """Empty ``qt`` and ``ctk`` modules, for scripts whose code under test touches no widget class."""
    for name in ("qt", "ctk"):
        sys.modules[name] = types.ModuleType(name)
