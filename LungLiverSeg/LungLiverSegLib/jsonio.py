"""JSON files the project reads and writes (model.json, Models.json, dataset.json, configs).

One reader, so that a missing, unreadable, malformed, oversized or absurdly nested file is always
one line that names the file, raised as the caller's own error type (a ``BundleError`` for a
bundle, a ``DatasetError`` for a dataset); and one writer, atomic and in one layout (indent 2,
final newline).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from LungLiverSegLib.files import write_text_atomic


def _parsed(raw: bytes, max_bytes: int | None) -> Any:
    """The document in ``raw``; ``ValueError`` (which the caller words) for anything else."""
    if max_bytes is not None and len(raw) > max_bytes:
        raise ValueError(f"larger than {max_bytes:,} bytes")
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError as error:  # json recurses per level: "[[[[..." would otherwise crash
        raise ValueError("nested too deeply") from error


def read_json(
    path: str | Path, error_type: type[Exception], what: str, *, max_bytes: int | None = None
) -> Any:
    """The parsed content of ``path``; any failure raises ``error_type`` naming the file and ``what`` it is.

    ``max_bytes`` refuses a larger file without reading more of it. ``error_type`` is a
    ``LungLiverSegError`` subclass in practice, so front ends show one line. ``ValueError`` covers
    bad UTF-8, bad JSON and integers too long for Python to convert (over 4300 digits).
    """
    try:
        with Path(path).open("rb") as stream:
            raw = stream.read() if max_bytes is None else stream.read(max_bytes + 1)
        return _parsed(raw, max_bytes)
    except (OSError, ValueError) as error:
        raise error_type(f"{path}: cannot read {what}: {error}") from error


def write_json(path: str | Path, data: Any, *, overwrite: bool = True) -> Path:
    """Write ``data`` as indented JSON (final newline) atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n", overwrite=overwrite)
