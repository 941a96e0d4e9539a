"""Shared pytest fixtures: where the real data lives, and skipping cleanly when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data (real, licensed images that never enter the repository)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (clone the repo next to shared/ to run this)")
    return SHARED_DATA


def require_file(path: Path) -> Path:
    """Skip the calling test with a clear reason when one real-data file is missing."""
    if not path.exists():
        pytest.skip(f"real data file missing: {path}")
    return path
