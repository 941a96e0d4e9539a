"""Atomic file writes, and the lock with which writers of one folder take turns.

Every file the project writes for others to read goes through ``atomic_output`` (or the two
helpers below): images and label maps, dataset.json and cases.jsonl, reports, checkpoints and
training curves. It hands out a hidden temporary path in the target's folder (same file system,
so the final rename is atomic), short whatever the target's name (a name that fits must not fail
because its temporary name does not); the data is flushed to disk (``fsync``) and may be checked
by the writer before the rename, so a full disk cannot leave a short file in place of the
target. Any OS failure becomes one ``OutputWriteError`` naming the target, and the temporary file
is removed in every case; with ``overwrite=False``, the default of the image writers, it refuses
to replace an existing file, because a user's data is never overwritten unasked. That refusal is
atomic: the finished file is published with a hard link, which fails when the target exists, so
of two writers of one name exactly one succeeds (where the file system has no hard links, FAT or
some network shares, an existence check just before the rename narrows the race to microseconds).
A folder that is one unit (a model bundle) is written into a hidden staging folder instead and
renamed into place as a whole.

Temporary names (``.tmp-<8 hex digits><suffix>``) are spelled once, here: ``temporary_path``
makes them, ``is_temporary`` recognises them, and they are hidden (``is_hidden``), which is what
readers of folders skip. A writer killed with SIGKILL cannot remove its temporary file:
``remove_temporaries`` does, for a caller that holds the lock every writer of the folder takes
(``exclusive_lock``), so that no temporary file is anyone's work in progress.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from LungLiverSegLib.errors import OutputWriteError

TEMPORARY_PREFIX = ".tmp-"
"""Temporary files start with this: hidden, so readers of folders skip them."""
TEMPORARY_TOKEN_LENGTH = 8
TEMPORARY_NAME = re.compile(rf"{re.escape(TEMPORARY_PREFIX)}[0-9a-f]{{{TEMPORARY_TOKEN_LENGTH}}}(\..*)?")
NO_HARD_LINKS = frozenset(
    {
        errno.EPERM,
        errno.EACCES,
        errno.EINVAL,
        errno.ENOSYS,
        errno.ENOTSUP,
        errno.EOPNOTSUPP,
        errno.EXDEV,
        errno.EMLINK,
    }
)
"""Why ``os.link`` fails on a file system that cannot hard-link (FAT, some network shares; Windows
reports FAT's refusal as EINVAL): a no-overwrite write then falls back to check-then-rename."""
LOCK_POLL_S = 0.05


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
    Without ``overwrite`` an existing ``path`` raises ``FileExistsError``: before the writing, and
    again, atomically, at the rename, where another writer may have got there first.
    """
    path = Path(path)
    if not overwrite and path.exists():  # say so before the work of writing; _publish decides
        raise exists_error(path)
    temporary = temporary_path(path, suffix)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.open("xb").close()  # a read-only disk or a missing permission says so here, in words
        yield temporary
        _flush_to_disk(temporary)
        if verify is not None:
            verify(temporary)
        published = _publish(temporary, path, overwrite=overwrite)
    except OutputWriteError:
        raise  # already says which file and why
    except OSError as error:
        raise OutputWriteError(f"{path}: could not be written: {describe_os_error(error)}") from error
    finally:
        with contextlib.suppress(OSError):  # never mask the first error with a failed clean-up
            temporary.unlink(missing_ok=True)
    if not published:
        raise exists_error(path)


def exists_error(path: Path) -> FileExistsError:
    """The refusal to replace ``path`` without being asked to."""
    return FileExistsError(f"{path}: already exists; pass overwrite=True (--overwrite) to replace it")


def _publish(temporary: Path, path: Path, *, overwrite: bool) -> bool:
    """Give the finished ``temporary`` the name ``path``; False, and ``path`` untouched, when it
    exists and ``overwrite`` is False. Checking first and renaming after would let two writers
    both pass the check; a hard link fails atomically instead (``temporary`` is removed after)."""
    if overwrite:
        os.replace(temporary, path)
        return True
    try:
        os.link(temporary, path)
    except FileExistsError:
        return False
    except OSError as error:
        if error.errno not in NO_HARD_LINKS:
            raise
        return _replace_unless_exists(temporary, path)
    return True


def _replace_unless_exists(temporary: Path, path: Path) -> bool:
    """Check, then rename: the best a file system without hard links allows."""
    if path.exists():
        return False
    os.replace(temporary, path)
    return True


def temporary_path(path: Path, suffix: str | None = None) -> Path:
    """A new temporary name beside ``path`` ending in ``suffix`` (default: ``path``'s full suffix)."""
    suffix = "".join(path.suffixes) if suffix is None else suffix
    return path.with_name(f"{TEMPORARY_PREFIX}{uuid.uuid4().hex[:TEMPORARY_TOKEN_LENGTH]}{suffix}")


def is_temporary(path: str | Path) -> bool:
    """Whether ``path`` is named like a temporary file of ``atomic_output`` (ours, never a user's)."""
    return TEMPORARY_NAME.fullmatch(Path(path).name) is not None


def is_hidden(path: str | Path) -> bool:
    """Whether a reader of a folder should skip ``path``: hidden names are no one's data to read,
    and include every temporary file, a half-written one too, and macOS's ``._`` metadata copies."""
    return Path(path).name.startswith(".")


def remove_temporaries(folders: Iterable[Path]) -> list[int]:
    """Delete the temporary files (not folders) directly in ``folders``; returns their sizes.

    Only for a caller that holds the lock every writer of these folders takes: a temporary file is
    then the leftover of a writer that was killed. One that cannot be deleted stays (hidden, so
    no reader takes it) rather than fail the caller's own work.
    """
    sizes = []
    for path in (path for folder in folders for path in _temporaries_in(folder)):
        with contextlib.suppress(OSError):
            size = path.stat().st_size
            path.unlink()
            sizes.append(size)
    return sizes


def _temporaries_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if is_temporary(path) and path.is_file())


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


# --- the writers' lock ------------------------------------------------------------------------


@contextmanager
def exclusive_lock(
    path: str | Path, *, wait_s: float, busy: Exception, still_wanted: Callable[[], None] | None = None
) -> Iterator[None]:
    """Hold the lock on ``path`` (an empty file, created if missing) while the block runs.

    A second holder waits up to ``wait_s`` seconds, polling, then ``busy`` is raised; at each poll
    ``still_wanted()`` may raise to stop waiting (a cancel button, Ctrl-C). The lock is
    the OS's on the open file (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows), not the
    file's existence, so it ends with its holder's process however that ends: a SIGKILL never
    leaves a stale lock. The file is kept: deleting it would let a waiter lock a file that the next
    writer no longer sees.
    """
    path = Path(path)
    with _open_lock_file(path) as stream:
        _wait_for_lock(stream, path, wait_s, busy, still_wanted)
        try:
            yield
        finally:
            _unlock(stream.fileno())


def _open_lock_file(path: Path) -> BinaryIO:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("a+b")
    except OSError as error:
        raise OutputWriteError(f"{path}: could not be created: {describe_os_error(error)}") from error


def _wait_for_lock(
    stream: BinaryIO, path: Path, wait_s: float, busy: Exception, still_wanted: Callable[[], None] | None
) -> None:
    deadline = time.monotonic() + wait_s
    while not _try_lock(stream.fileno(), path):
        if time.monotonic() >= deadline:
            raise busy
        if still_wanted is not None:
            still_wanted()
        time.sleep(LOCK_POLL_S)


if sys.platform == "win32":
    import msvcrt

    def _try_lock(descriptor: int, path: Path) -> bool:
        """Lock the file's first byte (msvcrt locks bytes from the current position); False when
        another holds it."""
        os.lseek(descriptor, 0, os.SEEK_SET)
        try:
            msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
        except OSError as error:
            if error.errno in (errno.EACCES, errno.EDEADLOCK):
                return False
            raise OutputWriteError(f"{path}: could not be locked: {describe_os_error(error)}") from error
        return True

    def _unlock(descriptor: int) -> None:
        os.lseek(descriptor, 0, os.SEEK_SET)
        msvcrt.locking(descriptor, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(descriptor: int, path: Path) -> bool:
        """flock, not fcntl's record locks: those do not exclude a second holder in the same
        process (the Slicer module exports in a thread); False when another holds it."""
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as error:
            raise OutputWriteError(f"{path}: could not be locked: {describe_os_error(error)}") from error
        return True

    def _unlock(descriptor: int) -> None:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
