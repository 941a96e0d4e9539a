"""The server-side folder a page may browse (``--data``): what one of its folders holds, as the
page lists it, and the DICOM series of a folder to choose from.

Everything a page sends back is a name relative to the data folder and goes through
``security.confined`` before it is opened.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from LungLiverSegLib.browser.security import confined, relative_name
from LungLiverSegLib.files import is_hidden
from LungLiverSegLib.imageio import list_dicom_series, split_image_name
from LungLiverSegLib.imageio.dicom_lengths import has_dicom_magic

FOLDER, IMAGE = "folder", "image"
DICOM_PROBE_FILES = 20
"""How many files of a folder are opened to see whether it holds DICOM slices (listing stays fast)."""


@dataclass(frozen=True)
class Entry:
    """One row of the page's file list: ``path`` is relative to the data folder."""

    name: str
    path: str
    kind: str


@dataclass(frozen=True)
class Listing:
    """A folder of the data folder: its subfolders and images, and whether it holds DICOM slices
    (then the page offers to open it as a series)."""

    path: str
    parent: str | None
    entries: tuple[Entry, ...]
    has_dicom: bool

    def as_state(self) -> dict[str, object]:
        """Plain JSON for the page's state."""
        return asdict(self)


def list_folder(root: Path, relative: str = "") -> Listing:
    """The subfolders (first) and image files of a folder of ``root``, hidden names left out."""
    folder = confined(root, relative) if relative else root.resolve()
    base = root.resolve()
    children = sorted(
        (path for path in folder.iterdir() if not is_hidden(path) and _leads_inside(path, base)),
        key=lambda p: p.name.lower(),
    )
    folders = [Entry(p.name, relative_name(root, p), FOLDER) for p in children if p.is_dir()]
    images = [
        Entry(p.name, relative_name(root, p), IMAGE)
        for p in children
        if p.is_file() and split_image_name(p)[1]
    ]
    files = [p for p in children if p.is_file()][:DICOM_PROBE_FILES]
    parent = None if folder == root.resolve() else relative_name(root, folder.parent)
    return Listing(
        relative_name(root, folder), parent, (*folders, *images), any(has_dicom_magic(p) for p in files)
    )


def _leads_inside(path: Path, base: Path) -> bool:
    """Whether ``path`` stays in ``base`` once links are followed: a link out of the data folder (or
    a link loop) is left out of the listing, as ``confined`` refuses to open it."""
    try:
        return path.resolve().is_relative_to(base)
    except (OSError, RuntimeError):  # a link loop: RuntimeError up to Python 3.12, OSError after
        return False


def dicom_series_choices(root: Path, relative: str) -> list[dict[str, str]]:
    """The series of a DICOM folder as the page's choice list: UID, and a title with the modality,
    description and number of slices."""
    folder = confined(root, relative)
    return [
        {
            "uid": series.uid,
            "title": f"{series.modality or '?'} {series.description or '(no description)'}, "
            f"{len(series.files)} files",
        }
        for series in list_dicom_series(folder)
    ]
