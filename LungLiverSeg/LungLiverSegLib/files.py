"""Atomic file writes: readers (and a crash) see the old file or the whole new one, never half.

Every file the project writes for others to read goes through ``atomic_output`` (or the two
helpers below): images and label maps, dataset.json and cases.jsonl, reports, checkpoints and
training curves. It hands out a hidden temporary path in the target's folder (same file system,
so the final ``os.replace`` is atomic), short whatever the target's name (a name that fits must
not fail because its temporary name does not); the data is flushed to disk (``fsync``) and may be
checked by the writer before the rename, so a full disk cannot leave a short file in place of the
target. Any OS failure becomes one ``OutputWriteError`` naming the target, and the temporary file
is removed in every case; with ``overwrite=False``, the default of the image
writers, it refuses to replace an existing file, because a user's data is never overwritten
unasked. A folder that is one unit (a model bundle) is written into a hidden staging folder
instead and renamed into place as a whole.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from LungLiverSegLib.errors import OutputWriteError

TEMPORARY_PREFIX = ".tmp-"
"""Hidden temporary files start with this; readers of folders skip names that start with "."."""


@contextmanager
def atomic_output(
    path: str | Path,
    *,
    overwrite: bool = True,
    suffix: str | None = None,
    verify: Callable[[Path], None] | None = None,
) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces ``path``, on error it is removed.

    ``suffix`` is kept at the end of the temporary name for writers that infer the format from
    the extension (SimpleITK, matplotlib); by default the target's full suffix is kept.
    ``verify(temporary)`` runs after the data is on disk and before the rename: it raises when the
    file is not what was meant to be written (some writers report a full disk only in a log line).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; pass overwrite=True (--overwrite) to replace it")
    suffix = "".join(path.suffixes) if suffix is None else suffix
    temporary = path.with_name(f"{TEMPORARY_PREFIX}{uuid.uuid4().hex[:8]}{suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.open("xb").close()  # a read-only disk or a missing permission says so here, in words
        yield temporary
        _flush_to_disk(temporary)
        if verify is not None:
            verify(temporary)
        os.replace(temporary, path)
    except OutputWriteError:
        raise  # already says which file and why
    except OSError as error:
        raise OutputWriteError(f"{path}: could not be written: {describe_os_error(error)}") from error
    finally:
        with contextlib.suppress(OSError):  # never mask the first error with a failed clean-up
            temporary.unlink(missing_ok=True)


def describe_os_error(error: OSError) -> str:
    """The OS's reason in words (``No space left on device``), without the errno and the path."""
    return error.strerror or str(error) or type(error).__name__


def _flush_to_disk(path: Path) -> None:
    """fsync: a full disk or an I/O error shows here, not after the rename."""
    with path.open("rb+") as stream:
        os.fsync(stream.fileno())


def write_bytes_atomic(path: str | Path, data: bytes, *, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(path, overwrite=overwrite) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str, *, overwrite: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"), overwrite=overwrite)
