"""``lunglivseg models import``: a bundle folder or .zip, validated completely, installed into the
user's models folder as ``<name>-v<version>/`` with its own files only.

Nothing lost: the bundle is staged in a hidden folder of the models folder and renamed into place,
so a failed or killed import never leaves a half-installed model (and what a killed one staged is
removed by the next import or listing: ``catalogue.import_staging``). Nothing trusted: files are
copied only from plain files (``sources``), and model.json, the weights' header against the network
built on the meta device, their checksum, and loading them into the network on the CPU are all
checked before anything is installed. An import never changes what an existing model name runs
unless asked to (``replace``), and says what changed when it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from LungLiverSegLib.bundle.catalogue import (
    CatalogueEntry,
    import_staging,
    install_folder_name,
    installed_entry,
    list_models,
    preference,
)
from LungLiverSegLib.bundle.sources import copy_bundle, open_source
from LungLiverSegLib.bundle.spec import ModelBundle, semver_key
from LungLiverSegLib.errors import BundleError
from LungLiverSegLib.paths import user_models_dir


@dataclass(frozen=True)
class ImportResult:
    """The installed model, and what the user should be told: names that run it now instead of
    another model, files of the source that were left out."""

    entry: CatalogueEntry
    notices: tuple[str, ...] = ()


@dataclass(frozen=True)
class NameChange:
    """``--model`` values (``name``, ``name@version``) that would run the imported bundle instead
    of ``was``."""

    keys: tuple[str, ...]
    was: CatalogueEntry

    def describe(self) -> str:
        return " and ".join(f"--model {key}" for key in self.keys)


def name_changes(bundle: ModelBundle, destination: Path) -> list[NameChange]:
    """What installing ``bundle`` at ``destination`` would change: ``name`` when it would be the
    newest (or tie with a bundled one), ``name@version`` when a bundled model has that version.
    Replacing the user's own copy of that version (at ``destination``) is ``overwrite``'s business."""
    runnable = [entry for entry in list_models() if entry.error is None and entry.name == bundle.name]
    keys: dict[CatalogueEntry, list[str]] = {}
    if runnable:
        current = max(runnable, key=preference)
        if (semver_key(bundle.version), True) > preference(current):
            keys.setdefault(current, []).append(bundle.name)
    for entry in runnable:
        if entry.version == bundle.version and entry.folder != destination:
            keys.setdefault(entry, []).append(f"{bundle.name}@{bundle.version}")
    return [NameChange(tuple(names), was) for was, names in keys.items()]


def _check_allowed(
    bundle: ModelBundle, destination: Path, changes: list[NameChange], *, overwrite: bool, replace: bool
) -> None:
    """Refuse, in one line saying which option allows it, to replace an installed copy or to change
    what an existing name runs."""
    if destination.exists() and not overwrite:
        raise BundleError(
            f"{destination} already exists; use --overwrite (Python: overwrite=True) to replace it"
        )
    if changes and not replace:
        now = "; ".join(f"{change.describe()} runs {change.was.described}" for change in changes)
        raise BundleError(
            f"installing {bundle.name} {bundle.version} would change what an existing model name runs "
            f"(now {now}); add --replace (Python: replace=True) to do so, or rename the bundle"
        )


def _change_notices(bundle: ModelBundle, origin: Path, changes: list[NameChange]) -> list[str]:
    return [
        f"{change.describe()} now {'runs' if len(change.keys) == 1 else 'run'} {bundle.version} "
        f"(imported from {origin}), was {change.was.version} ({change.was.source})"
        for change in changes
    ]


def import_model(path: str | Path, *, overwrite: bool = False, replace: bool = False) -> ImportResult:
    """Validate a bundle folder or .zip completely and install it as ``<user dir>/<name>-v<version>/``,
    atomically. An installed copy of the same version is replaced only with ``overwrite``; a name
    that would then run this bundle instead of another model changes only with ``replace``."""
    from LungLiverSegLib.bundle.weights import load_network, move_into_place  # torch: not for listing

    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: no such bundle folder or .zip")
    with import_staging() as staging, open_source(path) as source:
        bundle, left_out = copy_bundle(source, staging / "bundle")
        destination = user_models_dir() / install_folder_name(bundle.name, bundle.version)
        changes = name_changes(bundle, destination)
        _check_allowed(bundle, destination, changes, overwrite=overwrite, replace=replace)
        load_network(bundle, "cpu")
        move_into_place(bundle.stored_folder, destination, overwrite=overwrite)
    notices = _change_notices(bundle, path, changes) + ([left_out] if left_out else [])
    return ImportResult(installed_entry(bundle, destination), tuple(notices))
