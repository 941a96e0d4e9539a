"""Which models exist, where they live, and how a user adds one.

Two sources: the bundles shipped with the extension, listed in ``Resources/Models/Models.json``
(cheap to list: no bundle is opened), and the user's own folder, where ``import_model`` installs
validated bundles as ``<name>-v<version>/``. Everything works offline; an import is atomic so a
failed or interrupted one never leaves a half-installed model that would later be picked.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from LungLiverSegLib.bundle.json_fields import JsonFields
from LungLiverSegLib.bundle.model_json import load_bundle
from LungLiverSegLib.bundle.spec import (
    MODEL_CARD,
    MODEL_JSON,
    NAME_RULE,
    SEMVER_RULE,
    ModelBundle,
    TextRule,
    semver_key,
)
from LungLiverSegLib.errors import BundleError
from LungLiverSegLib.jsonio import read_json
from LungLiverSegLib.paths import bundled_models_dir, user_models_dir
from LungLiverSegLib.tables import text_table

CATALOGUE_FILE = "Models.json"
SUPPORTED_CATALOGUE_VERSIONS = (1,)
FOLDER_NAME_RULE = TextRule(
    re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$"), "a folder name in the models folder"
)
MAX_ZIP_MEMBERS = 100
MAX_ZIP_BYTES = 4 << 30  # far above any sensible bundle; refuses zip bombs before extracting
USER, BUNDLED = "user", "bundled"

# Bundles given as a .zip path to find_model are extracted once per process and removed at exit.
_SESSION_EXTRACTIONS: list[tempfile.TemporaryDirectory[str]] = []


@dataclass(frozen=True)
class CatalogueEntry:
    """One model as listed: enough to choose it without loading its weights.

    ``error`` is set (and the other fields are placeholders) for a user bundle that fails
    validation, so a listing shows what is broken instead of crashing.
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


def _entry_from_bundle(bundle: ModelBundle, source: str) -> CatalogueEntry:
    """A listing entry; timings come from the bundle's validation block when Training recorded them."""
    timings = {key: bundle.validation.get(key) for key in ("cpu_time_s", "gpu_time_s")}
    return CatalogueEntry(
        name=bundle.name,
        version=bundle.version,
        title=bundle.title,
        modality=bundle.modality,
        dims=bundle.dims,
        segments=bundle.segment_names,
        license=bundle.license,
        cpu_time_s=timings["cpu_time_s"] if isinstance(timings["cpu_time_s"], int | float) else None,
        gpu_time_s=timings["gpu_time_s"] if isinstance(timings["gpu_time_s"], int | float) else None,
        folder=bundle.folder or Path(),
        source=source,
    )


def _broken_entry(folder: Path, error: BundleError) -> CatalogueEntry:
    return CatalogueEntry(folder.name, "?", "", "?", 0, (), "?", None, None, folder, USER, str(error))


def _user_entries() -> list[CatalogueEntry]:
    """Every bundle folder in the user dir; hidden folders are imports in progress and skipped."""
    models_dir = user_models_dir()
    if not models_dir.is_dir():
        return []
    entries = []
    for folder in sorted(models_dir.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        try:
            entries.append(_entry_from_bundle(load_bundle(folder, verify_checksum=False), USER))
        except BundleError as error:
            entries.append(_broken_entry(folder, error))
    return entries


def list_models() -> list[CatalogueEntry]:
    """Bundled models, then the user's (checksums are verified when a model is loaded, not here)."""
    return _bundled_entries() + _user_entries()


# --------------------------------------------------------------------------------------------
# Choosing
# --------------------------------------------------------------------------------------------


def _choose_entry(name: str, version: str | None, entries: list[CatalogueEntry]) -> CatalogueEntry:
    """The newest usable entry called ``name`` (of ``version`` if given); a user copy wins a tie."""
    usable = [entry for entry in entries if entry.error is None]
    candidates = [entry for entry in usable if entry.name == name]
    if not candidates:
        available = ", ".join(sorted({entry.name for entry in usable})) or "none installed"
        raise BundleError(
            f"unknown model {name!r}; available: {available} (or give the path of a bundle folder or .zip)"
        )
    if version is not None:
        versions = ", ".join(sorted({entry.version for entry in candidates}, key=semver_key))
        candidates = [entry for entry in candidates if entry.version == version]
        if not candidates:
            raise BundleError(f"model {name!r} has no version {version}; available: {versions}")
    return max(candidates, key=lambda entry: (semver_key(entry.version), entry.source == USER))


def _is_bundle_path(name_or_path: str) -> bool:
    path = Path(name_or_path)
    has_separator = "/" in name_or_path or os.sep in name_or_path
    return has_separator or path.suffix == ".zip" or (path / MODEL_JSON).is_file()


def _load_zip_for_session(zip_path: Path) -> ModelBundle:
    extraction = tempfile.TemporaryDirectory(prefix="lunglivseg-bundle-")
    _SESSION_EXTRACTIONS.append(extraction)
    target = Path(extraction.name)
    _safe_extract(zip_path, target)
    return load_bundle(_bundle_root(target, zip_path))


def find_model(name_or_path: str | Path) -> ModelBundle:
    """The validated bundle for a catalogue name (``name`` or ``name@version``; the newest version
    wins), or for the path of a bundle folder, its model.json, or a .zip of it."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or _is_bundle_path(text):
        path = Path(text)
        return _load_zip_for_session(path) if path.suffix == ".zip" else load_bundle(path)
    name, _, version = text.partition("@")
    return load_bundle(_choose_entry(name, version or None, list_models()).folder)


# --------------------------------------------------------------------------------------------
# Importing
# --------------------------------------------------------------------------------------------


def _check_zip_members(zip_path: Path, members: list[zipfile.ZipInfo]) -> None:
    """Refuse archives that would write outside the target or fill the disk."""
    if len(members) > MAX_ZIP_MEMBERS:
        raise BundleError(f"{zip_path}: {len(members)} files is too many for a model bundle")
    if sum(member.file_size for member in members) > MAX_ZIP_BYTES:
        raise BundleError(f"{zip_path}: unpacks to more than {MAX_ZIP_BYTES >> 30} GiB; refusing to extract")
    for member in members:
        name = member.filename.replace("\\", "/")
        if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in PurePosixPath(name).parts:
            raise BundleError(
                f"{zip_path}: unsafe member {member.filename!r} (absolute or '..' path); refused"
            )


def _safe_extract(zip_path: Path, target: Path) -> None:
    try:
        with zipfile.ZipFile(zip_path) as archive:
            _check_zip_members(zip_path, archive.infolist())
            archive.extractall(target)
    except (zipfile.BadZipFile, OSError) as error:
        raise BundleError(f"{zip_path}: cannot extract the bundle: {error}") from error


def _bundle_root(extracted: Path, origin: Path) -> Path:
    """The folder holding model.json: the top of the archive or its single top folder."""
    if (extracted / MODEL_JSON).is_file():
        return extracted
    folders = [child for child in extracted.iterdir() if child.is_dir()]
    if len(folders) == 1 and (folders[0] / MODEL_JSON).is_file():
        return folders[0]
    raise BundleError(f"{origin}: no {MODEL_JSON} at the top of the archive or in its single folder")


def _copy_bundle_files(folder: Path, target: Path) -> Path:
    """Copy just the bundle's own files (not whatever else sits in the folder)."""
    bundle = load_bundle(folder, verify_checksum=False)
    target.mkdir()
    for file_name in (MODEL_JSON, bundle.weights_file, MODEL_CARD):
        if (bundle.stored_folder / file_name).is_file():
            shutil.copyfile(bundle.stored_folder / file_name, target / file_name)
    return target


def _stage(path: Path, staging: Path) -> Path:
    if path.is_dir() or path.name == MODEL_JSON:
        return _copy_bundle_files(path, staging / "bundle")
    if zipfile.is_zipfile(path):
        _safe_extract(path, staging / "bundle")
        return _bundle_root(staging / "bundle", path)
    raise BundleError(f"{path}: expected a bundle folder or a .zip of one")


def _install_folder(name: str, version: str) -> Path:
    return user_models_dir() / f"{name}-v{version}"


def installed_model(name: str, version: str) -> CatalogueEntry | None:
    """The user's installed ``name`` ``version``, which importing that version again would replace
    (None when there is none; a bundled model of that version is never replaced)."""
    folder = _install_folder(name, version)
    if not folder.exists():
        return None
    try:
        return _entry_from_bundle(load_bundle(folder, verify_checksum=False), USER)
    except BundleError as error:
        return _broken_entry(folder, error)


def import_model(path: str | Path, *, overwrite: bool = False) -> CatalogueEntry:
    """Validate a bundle folder or .zip (checksum included) and install it as
    ``<user dir>/<name>-v<version>/``, atomically; an installed same version needs ``overwrite``."""
    from LungLiverSegLib.bundle.weights import move_into_place  # torch: not for listing models

    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: no such bundle folder or .zip")
    models_dir = user_models_dir()
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=models_dir))
    try:
        bundle = load_bundle(_stage(path, staging))
        destination = _install_folder(bundle.name, bundle.version)
        move_into_place(bundle.stored_folder, destination, overwrite=overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _entry_from_bundle(load_bundle(destination, verify_checksum=False), USER)


# --------------------------------------------------------------------------------------------
# Display
# --------------------------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _table_row(entry: CatalogueEntry) -> tuple[str, ...]:
    if entry.error is not None:
        return (entry.name, "?", "", "", "", "", "", entry.source, f"BROKEN: {entry.error}")
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
