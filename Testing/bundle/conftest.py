"""Fixtures of the catalogue and import tests: a bundled models folder and a user models folder,
both temporary and pointed at by their environment variables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from factories import make_bundle, save_tiny_bundle
from LungLiverSegLib.paths import BUNDLED_MODELS_ENV, USER_MODELS_ENV


@pytest.fixture
def bundled_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bundled models folder with one shipped bundle (shipped-ct 2.0.0) listed in Models.json."""
    folder = tmp_path / "bundled"
    save_tiny_bundle(folder / "shipped-ct-v2.0.0", make_bundle(name="shipped-ct", version="2.0.0"))
    entry = {
        "name": "shipped-ct",
        "version": "2.0.0",
        "folder": "shipped-ct-v2.0.0",
        "title": "Shipped model",
        "modality": "CT",
        "dims": 3,
        "segments": ["right lung", "left lung"],
        "license": "Apache-2.0",
        "cpu_time_s": 40,
        "gpu_time_s": None,
    }
    (folder / "Models.json").write_text(json.dumps({"schema_version": 1, "models": [entry]}))
    monkeypatch.setenv(BUNDLED_MODELS_ENV, str(folder))
    return folder


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "user-models"
    monkeypatch.setenv(USER_MODELS_ENV, str(folder))
    return folder


@pytest.fixture
def source_bundle(tmp_path: Path) -> Path:
    """tiny-lungs 1.0.0, as downloaded: a bundle folder outside the models folders."""
    return save_tiny_bundle(tmp_path / "downloads" / "tiny-lungs-v1.0.0")
