"""Which models exist, where they live, and which one a name runs.

Two sources: the bundles shipped with the extension, listed in ``Resources/Models/Models.json``
(cheap to list: no bundle is opened), and the user's own folder, where ``importing.import_model``
installs validated bundles as ``<name>-v<version>/``. Everything works offline.

A name runs its newest version, a user's copy winning a tie with a bundled one; but a copy that
cannot run (listed as broken, with the reason) never hides one that can: ``find_model`` skips it
with a warning that says what runs instead. The user's folder also holds the hidden staging
folders of imports (``.import-*``): one left behind by a killed import is removed by the next
import or listing, never one whose import is still running (an import holds the folder's lock).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from LungLiverSegLib.bundle.json_fields import JsonFields, is_number
from LungLiverSegLib.bundle.model_json import check_weights, load_bundle
from LungLiverSegLib.bundle.sources import copy_bundle, open_source
from LungLiverSegLib.bundle.spec import (
    MODEL_JSON,
    NAME_RULE,
    SEMVER_RULE,
    ModelBundle,
    TextRule,
    semver_key,
)
from LungLiverSegLib.errors import BundleError, LungLiverSegWarning
from LungLiverSegLib.files import exclusive_lock, is_hidden
from LungLiverSegLib.jsonio import read_json
from LungLiverSegLib.paths import bundled_models_dir, user_models_dir
from LungLiverSegLib.tables import text_table

CATALOGUE_FILE = "Models.json"
SUPPORTED_CATALOGUE_VERSIONS = (1,)
FOLDER_NAME_RULE = TextRule(
    re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$"), "a folder name in the models folder"
)
UNKNOWN_VERSION = "?"
USER, BUNDLED = "user", "bundled"
STAGING_PREFIX = ".import-"
LOCK_FILE = ".import.lock"
IMPORT_WAIT_S = 60.0

# Bundles given as a .zip path to find_model are extracted once per process and removed at exit.
_SESSION_EXTRACTIONS: list[tempfile.TemporaryDirectory[str]] = []


@dataclass(frozen=True)
class CatalogueEntry:
    """One model as listed: enough to choose it without loading its weights.

    ``error`` is set (and the other fields are placeholders, but for the name and version that
    its folder's name gives) for a user bundle that fails validation, so a listing shows what is
    broken instead of crashing.
    """

    name: str
    version: str
    title: str
    modality: str
    dims: int
    segments: tuple[str, ...]
    license: str
    cpu_time_s: float | None
    gpu_time_s: float | None
    folder: Path
    source: str
    error: str | None = None

    @property
    def described(self) -> str:
        """``name version (source)``, as messages name the entry."""
        return f"{self.name} {self.version} ({self.source})"


# --------------------------------------------------------------------------------------------
# The user's folder: its lock, and the staging of imports
# --------------------------------------------------------------------------------------------


class _ImportRunning(Exception):  # noqa: N818  (not an error: a state the listing steps around)
    """The models folder's lock is held: an import is running."""


def _remove_stale_staging(models_dir: Path) -> None:
    """Only under the folder's lock: then no import is running, so every staging folder is stale."""
    for folder in models_dir.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(folder, ignore_errors=True)


def _clean_up_after_killed_imports(models_dir: Path) -> None:
    """Remove what killed imports left, unless an import is running now (it holds the lock)."""
    if not any(models_dir.glob(f"{STAGING_PREFIX}*")):
        return
    try:
        with exclusive_lock(models_dir / LOCK_FILE, wait_s=0.0, busy=_ImportRunning()):
            _remove_stale_staging(models_dir)
    except (_ImportRunning, OSError):  # OSError: a read-only models folder; a listing is still a listing
        pass


@contextmanager
def import_staging() -> Iterator[Path]:
    """A new hidden staging folder in the user's models folder (same file system: the finished
    bundle is renamed into place), with the folder locked throughout: imports run one at a time,
    and what a killed one left is removed first. The staging folder is removed at the end."""
    models_dir = user_models_dir()
    models_dir.mkdir(parents=True, exist_ok=True)
    busy = BundleError(f"{models_dir}: another import is running; try again once it has finished")
    with exclusive_lock(models_dir / LOCK_FILE, wait_s=IMPORT_WAIT_S, busy=busy):
        _remove_stale_staging(models_dir)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=models_dir))
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------------------------


def _bundled_entry(fields: JsonFields, models_dir: Path) -> CatalogueEntry:
    return CatalogueEntry(
        name=fields.text("name", NAME_RULE),
        version=fields.text("version", SEMVER_RULE),
        title=fields.text("title"),
        modality=fields.text("modality"),
        dims=fields.choice("dims", (2, 3)),
        segments=fields.strings("segments"),
        license=fields.text("license"),
        cpu_time_s=fields.optional_number("cpu_time_s"),
        gpu_time_s=fields.optional_number("gpu_time_s"),
        folder=models_dir / fields.text("folder", FOLDER_NAME_RULE),
        source=BUNDLED,
    )


def _bundled_entries() -> list[CatalogueEntry]:
    models_dir = bundled_models_dir()
    catalogue_path = models_dir / CATALOGUE_FILE
    if not catalogue_path.is_file():
        return []
    top = JsonFields(read_json(catalogue_path, BundleError, "the model catalogue"), catalogue_path)
    top.schema_version(SUPPORTED_CATALOGUE_VERSIONS)
    models = top.get("models")
    if not isinstance(models, list):
        top.fail("models", "expected a list")
    return [
        _bundled_entry(JsonFields(item, catalogue_path, f"models[{index}]"), models_dir)
        for index, item in enumerate(models)
    ]


def _seconds_or_none(value: object) -> float | None:
    return float(value) if is_number(value) else None


def _entry_from_bundle(bundle: ModelBundle, source: str) -> CatalogueEntry:
    """A listing entry; timings come from the bundle's validation block when Training recorded them."""
    return CatalogueEntry(
        name=bundle.name,
        version=bundle.version,
        title=bundle.title,
        modality=bundle.modality,
        dims=bundle.dims,
        segments=bundle.segment_names,
        license=bundle.license,
        cpu_time_s=_seconds_or_none(bundle.validation.get("cpu_time_s")),
        gpu_time_s=_seconds_or_none(bundle.validation.get("gpu_time_s")),
        folder=bundle.folder or Path(),
        source=source,
    )


def install_folder_name(name: str, version: str) -> str:
    """``<name>-v<version>``: the folder an import installs a bundle as."""
    return f"{name}-v{version}"


def _name_and_version(folder: Path) -> tuple[str, str]:
    """What a broken bundle was, as its folder's name says (``install_folder_name``), so that it
    is still a candidate for its name, one that ``find_model`` skips saying so."""
    name, separator, version = folder.name.rpartition("-v")
    if separator and NAME_RULE.pattern.match(name) and SEMVER_RULE.pattern.match(version):
        return name, version
    return folder.name, UNKNOWN_VERSION


def _broken_entry(folder: Path, error: BundleError) -> CatalogueEntry:
    name, version = _name_and_version(folder)
    return CatalogueEntry(name, version, "", "?", 0, (), "?", None, None, folder, USER, str(error))


def installed_entry(bundle: ModelBundle, folder: Path) -> CatalogueEntry:
    """The listing entry of ``bundle``, validated in memory and just installed into ``folder``."""
    return _entry_from_bundle(replace(bundle, folder=folder), USER)


def user_entry(folder: Path) -> CatalogueEntry:
    """The listing entry of a bundle folder in the user's models folder (broken ones included)."""
    try:
        return _entry_from_bundle(load_bundle(folder, verify_checksum=False), USER)
    except BundleError as error:
        return _broken_entry(folder, error)


def _user_entries() -> list[CatalogueEntry]:
    """Every bundle folder in the user dir; hidden folders are imports in progress and skipped."""
    models_dir = user_models_dir()
    if not models_dir.is_dir():
        return []
    _clean_up_after_killed_imports(models_dir)
    return [
        user_entry(folder)
        for folder in sorted(models_dir.iterdir())
        if not is_hidden(folder) and folder.is_dir()
    ]


def list_models() -> list[CatalogueEntry]:
    """Bundled models, then the user's (checksums are verified when a model is loaded, not here)."""
    return _bundled_entries() + _user_entries()


# --------------------------------------------------------------------------------------------
# Choosing
# --------------------------------------------------------------------------------------------


def preference(entry: CatalogueEntry) -> tuple[tuple[int, int, int, int, str], bool]:
    """What a name runs is the entry with the highest key: the newest version, a user copy
    winning a tie with a bundled one."""
    return semver_key(entry.version), entry.source == USER


def _candidates(name: str, version: str | None, entries: list[CatalogueEntry]) -> list[CatalogueEntry]:
    """The entries called ``name`` (of ``version`` if given), broken ones too, most preferred first."""
    named = [entry for entry in entries if entry.name == name and entry.version != UNKNOWN_VERSION]
    if not named:
        available = ", ".join(sorted({entry.name for entry in entries if entry.error is None}))
        raise BundleError(
            f"unknown model {name!r}; available: {available or 'none installed'} "
            "(or give the path of a bundle folder or .zip)"
        )
    if version is not None:
        versions = ", ".join(sorted({entry.version for entry in named}, key=semver_key))
        named = [entry for entry in named if entry.version == version]
        if not named:
            raise BundleError(f"model {name!r} has no version {version}; available: {versions}")
    return sorted(named, key=preference, reverse=True)


def _loaded(entry: CatalogueEntry) -> ModelBundle | str:
    """The validated bundle of ``entry`` (checksum included), or why it cannot run."""
    if entry.error is not None:
        return entry.error
    try:
        return load_bundle(entry.folder)
    except BundleError as error:
        return str(error)


def _first_that_runs(candidates: list[CatalogueEntry]) -> ModelBundle:
    """The bundle of the first candidate that loads; each one skipped before it is a warning."""
    skipped: list[tuple[CatalogueEntry, str]] = []
    for entry in candidates:
        loaded = _loaded(entry)
        if isinstance(loaded, str):
            skipped.append((entry, loaded))
            continue
        for broken, reason in skipped:
            warnings.warn(
                LungLiverSegWarning(
                    f"{broken.described} in {broken.folder} cannot run, so {entry.described} runs "
                    f"instead: {reason}"
                ),
                stacklevel=3,
            )
        return loaded
    raise BundleError(skipped[0][1])


def _is_bundle_path(name_or_path: str) -> bool:
    path = Path(name_or_path)
    has_separator = "/" in name_or_path or os.sep in name_or_path
    return has_separator or path.suffix == ".zip" or (path / MODEL_JSON).is_file()


def _load_zip_for_session(zip_path: Path) -> ModelBundle:
    """The bundle's own files, extracted to a temporary folder that lives as long as the process."""
    extraction = tempfile.TemporaryDirectory(prefix="lunglivseg-bundle-")
    _SESSION_EXTRACTIONS.append(extraction)
    target = Path(extraction.name) / "bundle"
    with open_source(zip_path) as source:
        bundle, _ = copy_bundle(source, target)
    return check_weights(bundle)


def find_model(name_or_path: str | Path) -> ModelBundle:
    """The validated bundle for a catalogue name (``name`` or ``name@version``; the newest version
    that can run wins, see ``preference``), or for the path of a bundle folder, its model.json, or
    a .zip of it."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or _is_bundle_path(text):
        path = Path(text)
        return _load_zip_for_session(path) if path.suffix == ".zip" else load_bundle(path)
    name, _, version = text.partition("@")
    return _first_that_runs(_candidates(name, version or None, list_models()))


def installed_model(name: str, version: str) -> CatalogueEntry | None:
    """The user's installed ``name`` ``version``, which importing that version again would replace
    (None when there is none; a bundled model of that version is never replaced)."""
    folder = user_models_dir() / install_folder_name(name, version)
    return user_entry(folder) if folder.exists() else None


# --------------------------------------------------------------------------------------------
# Display
# --------------------------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _table_row(entry: CatalogueEntry) -> tuple[str, ...]:
    if entry.error is not None:
        return (entry.name, entry.version, "", "", "", "", "", entry.source, f"BROKEN: {entry.error}")
    return (
        entry.name,
        entry.version,
        f"{entry.dims}D",
        entry.modality,
        ", ".join(entry.segments),
        _seconds(entry.cpu_time_s),
        _seconds(entry.gpu_time_s),
        entry.source,
        entry.title,
    )


def format_models_table(entries: list[CatalogueEntry]) -> str:
    """A plain-text table for ``lunglivseg models``."""
    if not entries:
        return (
            f"no models found (bundled: {bundled_models_dir()}, yours: {user_models_dir()}); "
            "install one with `lunglivseg models import <bundle folder or .zip>`"
        )
    header = ("name", "version", "dims", "modality", "segments", "CPU s", "GPU s", "source", "title")
    return text_table([header, *(_table_row(entry) for entry in entries)], align="l" * len(header))
