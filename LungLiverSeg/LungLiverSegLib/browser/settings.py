"""The app's folders and limits (``lunglivseg app``'s options), in a module light enough for the
command line to import at every start."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """``data``: the images a page may open; ``work``: the datasets it exports and their training
    runs; ``max_upload_mb``: the largest upload; ``device``: where models run."""

    data: Path
    work: Path
    max_upload_mb: float
    device: str = "auto"
