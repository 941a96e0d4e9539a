"""What the browser app checks because it is a server: who may connect, which server files a page
may name, and what an upload may be.

Every connection must present the access token (wslink's ``secret``, which trame's client sends
from the page's ``?secret=`` URL parameter), on localhost too: another user of the same machine
can reach a local port. The token is random unless the user gives one, and a host other than
localhost is refused without a token the user chose or was shown.

A page names server files only relative to the ``--data`` folder; ``confined`` refuses absolute
paths, ``..`` and symbolic links leading out of it. Uploads keep only a safe base name (a client
may send ``../../.bashrc`` as a file name) and a bounded size.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from pathlib import Path, PurePosixPath

from LungLiverSegLib.errors import LungLiverSegError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
TOKEN_BYTES = 24
MIN_TOKEN_LENGTH = 16
"""A token the user chooses must be at least this long: a short one can be guessed over the network."""
DEFAULT_MAX_UPLOAD_MB = 2048
"""A whole-body CT as .nii is a few hundred MB; a DICOM series uploaded as a folder is larger."""
MAX_NAME_LENGTH = 255
"""The longest file name common file systems take (in bytes; a safe name is ASCII)."""
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class AccessError(LungLiverSegError):
    """A request the app refuses: a path outside the data folder, an upload too large or unnamed,
    a network address without a token."""


def new_token() -> str:
    """A random URL-safe token (like Jupyter's), printed with the app's address."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def is_local(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (a loopback name or address)."""
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def checked_token(token: str | None) -> str:
    """The token to require: the user's (long enough to resist guessing) or a new random one."""
    if token is None:
        return new_token()
    if len(token) < MIN_TOKEN_LENGTH or not token.isprintable() or " " in token:
        raise AccessError(f"the access token must be at least {MIN_TOKEN_LENGTH} characters without spaces")
    return token


def token_matches(given: object, expected: str) -> bool:
    """Constant-time comparison, so the time of a refusal does not tell how much of a guess was right."""
    return isinstance(given, str) and secrets.compare_digest(given.encode(), expected.encode())


def confined(root: Path, relative: str) -> Path:
    """``root / relative`` when it stays inside ``root`` once symbolic links are followed.

    ``relative`` is what a page sent: POSIX separators, no drive, no absolute path, no ``..``.
    """
    if not isinstance(relative, str):  # what a page sent: any JSON value
        raise AccessError(f"{relative!r} is not a path inside the data folder")
    parts = PurePosixPath(relative.replace("\\", "/")).parts
    bad = relative.startswith(("/", "\\")) or any(part == ".." for part in parts)
    if bad or ":" in relative or "\0" in relative:  # NUL: the OS layer would raise ValueError
        raise AccessError(f"{relative!r} is not a path inside the data folder")
    base = root.resolve()
    try:
        target = base.joinpath(*parts).resolve()
    except (OSError, RuntimeError):  # a link loop: RuntimeError up to Python 3.12, OSError after
        raise AccessError(f"{relative!r} is a symbolic link that cannot be followed") from None
    if not target.is_relative_to(base):
        raise AccessError(f"{relative!r} leads outside the data folder (a symbolic link)")
    if not target.exists():
        raise AccessError(f"{relative!r} does not exist in the data folder")
    return target


def relative_name(root: Path, path: Path) -> str:
    """The name a page shows and sends back for a file inside ``root`` (POSIX separators)."""
    return path.resolve().relative_to(root.resolve()).as_posix()


def upload_name(name: object) -> str:
    """A client's file name reduced to a safe base name (its folders and odd characters dropped)."""
    if not isinstance(name, str) or not name.strip():
        raise AccessError("an uploaded file has no name")
    base = PurePosixPath(name.replace("\\", "/")).name
    safe = _SAFE_NAME.sub("_", base).lstrip(".")
    if not safe:
        raise AccessError(f"the uploaded file name {name!r} has no usable characters")
    if len(safe) > MAX_NAME_LENGTH:  # writing it would fail with an OSError, not a message
        raise AccessError(
            f"the uploaded file name {name[:40]!r}... is too long (over {MAX_NAME_LENGTH} characters)"
        )
    return safe


def check_upload_size(total_bytes: int, max_mb: float) -> None:
    """Refuse an upload over the limit before any of it is written."""
    if total_bytes > max_mb * 1e6:
        raise AccessError(
            f"the upload is {total_bytes / 1e6:.0f} MB, over the app's limit of {max_mb:.0f} MB "
            "(start the app with a larger --max-upload-mb, or put the file in the --data folder)"
        )
