"""Where an imported bundle's files come from, a folder or a .zip, and copying just those files.

A bundle is ``model.json``, the weights file it names and the ``README.md`` model card; nothing
else is copied, so a folder or archive cannot slip other files into the models folder. Every file
is copied as a new regular file, and only from a regular file: a symbolic link (which could make
an import publish a file the user may read but not share, world-readable), a file with other hard
links (the same, under a second name), a device or a pipe is refused, naming it. Archives are
checked before anything is extracted (paths outside the archive, too many members, too many bytes).

No torch: the session copy of a ``.zip`` given to ``find_model`` uses this too.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from LungLiverSegLib.bundle.model_json import read_model_json
from LungLiverSegLib.bundle.spec import (
    MODEL_CARD,
    MODEL_CARD_MAX_BYTES,
    MODEL_JSON,
    MODEL_JSON_MAX_BYTES,
    WEIGHTS_MAX_BYTES,
    ModelBundle,
    listed,
)
from LungLiverSegLib.errors import BundleError

MAX_ZIP_MEMBERS = 100
MAX_ZIP_BYTES = 4 << 30  # far above any sensible bundle; refuses zip bombs before extracting
COPY_CHUNK_BYTES = 1 << 20
ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError)
"""What reading a member can raise: corrupt data, an unsupported compression, a password (RuntimeError)."""
_OPEN_FLAGS = os.O_RDONLY | sum(getattr(os, flag, 0) for flag in ("O_NOFOLLOW", "O_NONBLOCK", "O_BINARY"))
"""No link followed, no wait on a pipe swapped in after the check, no newline translation (Windows)."""


class BundleSource(Protocol):
    """A bundle's files before they are copied: a folder or the bundle's folder in an archive."""

    origin: Path

    def has(self, name: str) -> bool:
        """Whether the bundle's top holds ``name``."""
        ...

    def copy(self, name: str, target: Path, max_bytes: int) -> None:
        """Copy ``name`` as the new file ``target``: only a plain file of at most ``max_bytes``."""
        ...

    def others(self, own: set[str]) -> list[str]:
        """Everything in the source but the ``own`` files, as the user would name it."""
        ...


def _write_copy(read: Callable[[int], bytes], target: Path, max_bytes: int, shown: str) -> None:
    """Write what ``read`` yields as the new file ``target``, flushed to disk, refusing more than
    ``max_bytes`` (a size read beforehand may lie: a file grows, a zip header is forged)."""
    with target.open("xb") as out:
        written = 0
        while chunk := read(COPY_CHUNK_BYTES):
            written += len(chunk)
            if written > max_bytes:
                raise BundleError(f"{shown}: more than {max_bytes:,} bytes; too large for a model bundle")
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())


def _check_size(shown: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise BundleError(f"{shown}: {size:,} bytes; too large for a model bundle")


def _refuse_unless_plain(path: Path, info: os.stat_result) -> None:
    """A regular file with one name only, or one line saying what it is instead."""
    if stat.S_ISLNK(info.st_mode):
        why = "is a symbolic link"
    elif not stat.S_ISREG(info.st_mode):
        why = "is not a regular file (a folder, device or pipe)"
    elif info.st_nlink > 1:
        why = f"has {info.st_nlink - 1} other hard link(s)"
    else:
        return
    raise BundleError(
        f"{path}: {why}; a bundle is imported from plain files only (copy the file itself there)"
    )


@dataclass
class FolderSource:
    """A bundle folder on disk."""

    origin: Path

    def has(self, name: str) -> bool:
        return os.path.lexists(self.origin / name)

    def copy(self, name: str, target: Path, max_bytes: int) -> None:
        path = self.origin / name
        try:
            before = os.lstat(path)
            _refuse_unless_plain(path, before)
            _check_size(str(path), before.st_size, max_bytes)
            descriptor = os.open(path, _OPEN_FLAGS)
            with os.fdopen(descriptor, "rb") as stream:
                opened = os.fstat(stream.fileno())
                _refuse_unless_plain(path, opened)
                if (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
                    raise BundleError(f"{path}: was replaced while being imported; try again")
                _write_copy(stream.read, target, max_bytes, str(path))
        except OSError as error:
            raise BundleError(f"{path}: cannot copy it into the models folder: {error}") from error

    def others(self, own: set[str]) -> list[str]:
        return sorted(name for name in os.listdir(self.origin) if name not in own)


def _check_members(zip_path: Path, members: list[zipfile.ZipInfo]) -> None:
    """Refuse archives that would write outside the target, fill the disk, or say two things at once."""
    if len(members) > MAX_ZIP_MEMBERS:
        raise BundleError(f"{zip_path}: {len(members)} files is too many for a model bundle")
    if sum(member.file_size for member in members) > MAX_ZIP_BYTES:
        raise BundleError(f"{zip_path}: unpacks to more than {MAX_ZIP_BYTES >> 30} GiB; refusing to extract")
    names = [member.filename.replace("\\", "/") for member in members]
    for name in names:
        if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in PurePosixPath(name).parts:
            raise BundleError(f"{zip_path}: unsafe member {name!r} (absolute or '..' path); refused")
    if len(set(names)) != len(names):
        raise BundleError(f"{zip_path}: a member name appears twice; refused")


def _bundle_prefix(zip_path: Path, names: set[str]) -> str:
    """Where model.json is: the top of the archive or a single folder (``name/``) at its top."""
    if MODEL_JSON in names:
        return ""
    in_a_folder = re.compile(rf"([^/]+/){re.escape(MODEL_JSON)}")
    folders = {match.group(1) for match in map(in_a_folder.fullmatch, names) if match}
    if len(folders) != 1:
        raise BundleError(f"{zip_path}: no {MODEL_JSON} at the top of the archive or in its single folder")
    return folders.pop()


def _is_plain_member(member: zipfile.ZipInfo) -> bool:
    """Not a folder, and not a link or device as the Unix mode a zip may carry says (0: none given)."""
    mode = member.external_attr >> 16
    return not member.is_dir() and (stat.S_IFMT(mode) in (0, stat.S_IFREG))


class ZipSource:
    """The bundle inside an open .zip archive, its members checked when it is opened."""

    def __init__(self, origin: Path, archive: zipfile.ZipFile) -> None:
        self.origin = origin
        self.archive = archive
        members = archive.infolist()
        _check_members(origin, members)
        self.members = {member.filename.replace("\\", "/"): member for member in members}
        self.prefix = _bundle_prefix(origin, set(self.members))

    def has(self, name: str) -> bool:
        return self.prefix + name in self.members

    def copy(self, name: str, target: Path, max_bytes: int) -> None:
        member = self.members[self.prefix + name]
        shown = f"{self.origin}: {member.filename}"
        if not _is_plain_member(member):
            raise BundleError(f"{shown}: is not a regular file (a folder or link); refused")
        _check_size(shown, member.file_size, max_bytes)
        try:
            with self.archive.open(member) as stream:
                _write_copy(stream.read, target, max_bytes, shown)
        except ZIP_READ_ERRORS as error:
            raise BundleError(f"{shown}: cannot extract it: {error}") from error

    def others(self, own: set[str]) -> list[str]:
        kept = {self.prefix + name for name in own}
        files = (name for name, member in self.members.items() if not member.is_dir())
        return sorted(name for name in files if name not in kept)


@contextlib.contextmanager
def open_source(path: Path) -> Iterator[BundleSource]:
    """The bundle at ``path``: a folder, its model.json, or a .zip of it."""
    if path.name == MODEL_JSON and path.is_file():
        yield FolderSource(path.parent)
    elif path.is_dir():
        yield FolderSource(path)
    elif path.is_file() and zipfile.is_zipfile(path):  # is_file first: reading a pipe would wait forever
        try:
            archive = zipfile.ZipFile(path)
        except ZIP_READ_ERRORS as error:
            raise BundleError(f"{path}: cannot read the archive: {error}") from error
        with archive:
            yield ZipSource(path, archive)
    else:
        raise BundleError(f"{path}: expected a bundle folder or a .zip of one")


def copy_bundle(source: BundleSource, target: Path) -> tuple[ModelBundle, str | None]:
    """Copy the bundle's own files into the new folder ``target``; the bundle as its model.json
    says (weights not yet checked), and a notice naming what was left out (None: nothing)."""
    if not source.has(MODEL_JSON):
        raise BundleError(f"{source.origin}: not a model bundle (no {MODEL_JSON} found)")
    target.mkdir()
    source.copy(MODEL_JSON, target / MODEL_JSON, MODEL_JSON_MAX_BYTES)
    bundle = read_model_json(target)
    if not source.has(bundle.weights_file):
        raise BundleError(
            f"{source.origin}: {MODEL_JSON}: weights.file: {bundle.weights_file} is not in the bundle"
        )
    source.copy(bundle.weights_file, target / bundle.weights_file, WEIGHTS_MAX_BYTES)
    if source.has(MODEL_CARD):
        source.copy(MODEL_CARD, target / MODEL_CARD, MODEL_CARD_MAX_BYTES)
    left_out = source.others({MODEL_JSON, bundle.weights_file, MODEL_CARD})
    notice = f"left out what is not part of a model bundle: {listed(left_out)}" if left_out else None
    return bundle, notice
