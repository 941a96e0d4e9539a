"""Every location the code finds relative to itself, in one place (as nnU-Net's ``paths.py``).

Two layouts hold the same files:

- the source tree: ``<repo>/LungLiverSeg/LungLiverSegLib``, ``<repo>/Resources/Models``,
  ``<repo>/pyproject.toml``, ``<repo>/Training/LungLiverSegTraining``;
- an installed Slicer extension, where CMake puts ``LungLiverSegLib``, ``LungLiverSegTraining``,
  ``Resources/Models`` and ``pyproject.toml`` side by side in Slicer's scripted-modules folder.

Environment variables override the model folders: ``LUNGLIVSEG_BUNDLED_MODELS`` and
``LUNGLIVSEG_MODELS`` (imported models, default ``~/.lunglivseg/models``).
"""

from __future__ import annotations

import os
from pathlib import Path

LIBRARY = Path(__file__).resolve().parent
"""The ``LungLiverSegLib`` package folder."""

LIBRARY_PARENT = LIBRARY.parent
"""The folder that holds ``LungLiverSegLib``: the module folder, on Slicer's ``sys.path``."""

BUNDLED_MODELS_ENV = "LUNGLIVSEG_BUNDLED_MODELS"
USER_MODELS_ENV = "LUNGLIVSEG_MODELS"
DEFAULT_USER_MODELS = Path("~/.lunglivseg/models")
DEFAULT_APP_WORK = Path("~/lunglivseg-work")
"""The browser app's ``--work`` folder: the datasets it exports and their training runs."""


def _first_existing(candidates: list[Path]) -> Path:
    """The first candidate that exists, else the first (so an error message names a sensible path)."""
    return next((path for path in candidates if path.exists()), candidates[0])


def _layout_candidates(*relative: str) -> list[Path]:
    """``relative`` in the source tree (beside the module folder), then in an installed extension."""
    return [LIBRARY_PARENT.parent.joinpath(*relative), LIBRARY_PARENT.joinpath(*relative)]


def bundled_models_dir() -> Path:
    """``Resources/Models`` of the repository or extension; ``$LUNGLIVSEG_BUNDLED_MODELS`` overrides it."""
    override = os.environ.get(BUNDLED_MODELS_ENV)
    if override:
        return Path(override)
    return _first_existing(_layout_candidates("Resources", "Models"))


def user_models_dir() -> Path:
    """Where imported bundles go: ``$LUNGLIVSEG_MODELS``, default ``~/.lunglivseg/models``."""
    return Path(os.environ.get(USER_MODELS_ENV) or DEFAULT_USER_MODELS).expanduser()


def pyproject() -> Path:
    """The ``pyproject.toml`` whose pins the Slicer module installs on first use."""
    return _first_existing(_layout_candidates("pyproject.toml"))


def training_package() -> Path:
    """The ``LungLiverSegTraining`` package folder: ``<repo>/Training/LungLiverSegTraining`` in
    the source tree, beside ``LungLiverSegLib`` in an extension (or an installed wheel). Only a
    location: the core never imports Training."""
    return _first_existing(
        [LIBRARY_PARENT.parent / "Training" / "LungLiverSegTraining", LIBRARY_PARENT / "LungLiverSegTraining"]
    )


def presets_dir() -> Path:
    """Training's presets, ``<preset>.json`` each (the one list of preset names)."""
    return training_package() / "presets"


def python_path_entries() -> list[Path]:
    """Folders a child ``PythonSlicer`` needs on its path to import both packages.

    In the source tree Training lives in ``<repo>/Training``; in an extension it sits beside
    ``LungLiverSegLib`` already.
    """
    training = training_package()
    extra = training.is_dir() and training.parent != LIBRARY_PARENT
    return [LIBRARY_PARENT, *([training.parent] if extra else [])]
