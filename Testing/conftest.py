"""Shared pytest fixtures: where the real data lives, and skipping cleanly when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest
from factories import SHARED_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data (real, licensed images that never enter the repository)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (clone the repo next to shared/ to run this)")
    return SHARED_DATA
