"""JSON files the project reads and writes (model.json, Models.json, dataset.json, configs).

One reader, so that a missing, unreadable or malformed file is always one line that names the
file, raised as the caller's own error type (a ``BundleError`` for a bundle, a ``DatasetError``
for a dataset); and one writer, atomic and in one layout (indent 2, final newline).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from LungLiverSegLib.files import write_text_atomic


def read_json(path: str | Path, error_type: type[Exception], what: str) -> Any:
    """The parsed content of ``path``; any failure raises ``error_type`` naming the file and ``what`` it is.

    ``error_type`` is a ``LungLiverSegError`` subclass in practice, so front ends show one line.
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise error_type(f"{path}: cannot read {what}: {error}") from error


def write_json(path: str | Path, data: Any, *, overwrite: bool = True) -> Path:
    """Write ``data`` as indented JSON (final newline) atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n", overwrite=overwrite)
