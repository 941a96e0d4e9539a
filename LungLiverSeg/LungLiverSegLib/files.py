"""Atomic file writes: readers (and a crash) see the old file or the whole new one, never half.

Every file the project writes for others to read goes through ``atomic_output`` (or the two
helpers below): images and label maps, dataset.json and cases.jsonl, reports, checkpoints and
training curves. It hands out a hidden temporary path in the target's folder (same file system,
so the final ``os.replace`` is atomic); with ``overwrite=False``, the default of the image
writers, it refuses to replace an existing file, because a user's data is never overwritten
unasked. A folder that is one unit (a model bundle) is written into a hidden staging folder
instead and renamed into place as a whole.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_output(path: str | Path, *, overwrite: bool = True, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces ``path``, on error it is removed.

    ``suffix`` is kept at the end of the temporary name for writers that infer the format from
    the extension (SimpleITK, matplotlib); by default the target's full suffix is kept.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; pass overwrite=True (--overwrite) to replace it")
    suffix = "".join(path.suffixes) if suffix is None else suffix
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    temporary = path.with_name(f".{stem}.tmp-{uuid.uuid4().hex[:8]}{suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes, *, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(path, overwrite=overwrite) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str, *, overwrite: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"), overwrite=overwrite)
