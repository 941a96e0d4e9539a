"""Model catalogue: listing bundled and user models, choosing by name, safe offline import."""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from factories import REPO_ROOT, make_bundle, save_tiny_bundle
from LungLiverSegLib.bundle.catalogue import (
    find_model,
    format_models_table,
    import_model,
    installed_model,
    list_models,
)
from LungLiverSegLib.bundle.model_json import load_bundle
from LungLiverSegLib.errors import BundleError
from LungLiverSegLib.paths import BUNDLED_MODELS_ENV, USER_MODELS_ENV, bundled_models_dir, user_models_dir

REPO_MODELS = REPO_ROOT / "Resources" / "Models"


@pytest.fixture
def bundled_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bundled models folder with one shipped bundle listed in Models.json."""
    folder = tmp_path / "bundled"
    save_tiny_bundle(folder / "shipped-ct-v2.0.0", make_bundle(name="shipped-ct", version="2.0.0"))
    entry = {
        "name": "shipped-ct",
        "version": "2.0.0",
        "folder": "shipped-ct-v2.0.0",
        "title": "Shipped model",
        "modality": "CT",
        "dims": 3,
        "segments": ["right lung", "left lung"],
        "license": "Apache-2.0",
        "cpu_time_s": 40,
        "gpu_time_s": None,
    }
    (folder / "Models.json").write_text(json.dumps({"schema_version": 1, "models": [entry]}))
    monkeypatch.setenv(BUNDLED_MODELS_ENV, str(folder))
    return folder


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "user-models"
    monkeypatch.setenv(USER_MODELS_ENV, str(folder))
    return folder


@pytest.fixture
def source_bundle(tmp_path: Path) -> Path:
    return save_tiny_bundle(tmp_path / "downloads" / "tiny-lungs-v1.0.0")


def zip_folder(folder: Path, zip_path: Path) -> Path:
    with zipfile.ZipFile(zip_path, "w") as archive:
        for file in folder.iterdir():
            archive.write(file, f"{folder.name}/{file.name}")
    return zip_path


def installed_folders(user_dir: Path) -> list[str]:
    return sorted(path.name for path in user_dir.iterdir())


def test_default_folders_are_the_repository_resources_and_the_home_folder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(BUNDLED_MODELS_ENV, raising=False)
    monkeypatch.delenv(USER_MODELS_ENV, raising=False)
    assert bundled_models_dir() == REPO_MODELS
    assert user_models_dir() == Path.home() / ".lunglivseg" / "models"
    assert json.loads((REPO_MODELS / "Models.json").read_text())["schema_version"] == 1


def test_import_from_folder_installs_a_validated_copy(source_bundle: Path, user_dir: Path) -> None:
    entry = import_model(source_bundle)
    assert (entry.name, entry.version, entry.source) == ("tiny-lungs", "1.0.0", "user")
    assert entry.folder == user_dir / "tiny-lungs-v1.0.0"
    assert entry.segments == ("right lung", "left lung")
    assert entry.cpu_time_s == 3.0
    assert installed_folders(user_dir) == ["tiny-lungs-v1.0.0"]
    assert load_bundle(entry.folder).weights_sha256 == load_bundle(source_bundle).weights_sha256


def test_import_from_zip(source_bundle: Path, user_dir: Path, tmp_path: Path) -> None:
    entry = import_model(zip_folder(source_bundle, tmp_path / "tiny.zip"))
    assert entry.folder == user_dir / "tiny-lungs-v1.0.0"
    assert find_model("tiny-lungs").folder == entry.folder


@pytest.mark.parametrize("member", ["../evil", "/tmp/evil", "bundle/../../evil", "C:/evil"])
def test_import_refuses_a_zip_that_writes_outside_its_folder(
    source_bundle: Path, user_dir: Path, tmp_path: Path, member: str
) -> None:
    zip_path = zip_folder(source_bundle, tmp_path / "evil.zip")
    with zipfile.ZipFile(zip_path, "a") as archive:
        archive.writestr(member, "payload")
    with pytest.raises(BundleError, match="unsafe member"):
        import_model(zip_path)
    assert not (tmp_path / "evil").exists()
    assert installed_folders(user_dir) == []


def test_import_refuses_a_corrupt_bundle_and_leaves_nothing(source_bundle: Path, user_dir: Path) -> None:
    weights = source_bundle / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(BundleError, match=re.escape("weights.sha256")):
        import_model(source_bundle)
    assert installed_folders(user_dir) == []


def test_import_refuses_the_same_version_unless_overwrite(source_bundle: Path, user_dir: Path) -> None:
    import_model(source_bundle)
    with pytest.raises(BundleError, match="already exists"):
        import_model(source_bundle)
    entry = import_model(source_bundle, overwrite=True)
    assert entry.folder == user_dir / "tiny-lungs-v1.0.0"
    assert installed_folders(user_dir) == ["tiny-lungs-v1.0.0"]


def test_installed_model_is_the_users_copy_that_an_import_of_that_version_replaces(
    bundled_dir: Path, source_bundle: Path, user_dir: Path
) -> None:
    assert installed_model("tiny-lungs", "1.0.0") is None
    assert installed_model("shipped-ct", "2.0.0") is None  # bundled: an import never replaces it
    import_model(source_bundle)
    installed = installed_model("tiny-lungs", "1.0.0")
    assert installed is not None and installed.error is None
    assert (installed.folder, installed.source) == (user_dir / "tiny-lungs-v1.0.0", "user")
    assert installed_model("tiny-lungs", "1.0.1") is None
    (user_dir / "tiny-lungs-v1.0.1").mkdir()  # broken, yet an import would still have to replace it
    assert "model.json" in installed_model("tiny-lungs", "1.0.1").error


def test_list_models_shows_bundled_user_and_broken_models(
    bundled_dir: Path, source_bundle: Path, user_dir: Path
) -> None:
    import_model(source_bundle)
    (user_dir / "half-copied").mkdir()
    (user_dir / "half-copied" / "model.json").write_text("{}")

    entries = {entry.name: entry for entry in list_models()}
    assert entries["shipped-ct"].source == "bundled"
    assert entries["shipped-ct"].folder == bundled_dir / "shipped-ct-v2.0.0"
    assert entries["shipped-ct"].cpu_time_s == 40
    assert entries["tiny-lungs"].source == "user"
    assert entries["tiny-lungs"].error is None
    assert "schema_version: missing" in entries["half-copied"].error

    table = format_models_table(list(entries.values()))
    assert "shipped-ct" in table and "right lung, left lung" in table
    assert "BROKEN" in table


def test_a_bundle_with_the_old_nsd_key_still_installs_and_lists(tmp_path: Path, user_dir: Path) -> None:
    """Bundles trained before the NSD key became "nsd@2mm" say "nsd_2mm" in their validation."""
    validation = {"dice": {"right lung": 0.9}, "nsd_2mm": {"right lung": 0.8}, "cpu_time_s": 2.5}
    old = replace(make_bundle(name="old-lungs"), validation=validation)
    import_model(save_tiny_bundle(tmp_path / "old-lungs-v1.0.0", old))
    [entry] = [entry for entry in list_models() if entry.name == "old-lungs"]
    assert entry.error is None and entry.cpu_time_s == 2.5
    assert "old-lungs" in format_models_table([entry])
    assert load_bundle(entry.folder).validation == validation


def test_empty_catalogue_tells_how_to_import(bundled_dir: Path, user_dir: Path) -> None:
    assert "lunglivseg models import" in format_models_table([])


def test_invalid_catalogue_entry_names_its_field(bundled_dir: Path, user_dir: Path) -> None:
    catalogue = bundled_dir / "Models.json"
    document = json.loads(catalogue.read_text())
    document["models"][0]["folder"] = "../elsewhere"
    catalogue.write_text(json.dumps(document))
    with pytest.raises(BundleError, match=r"Models.json: models\[0\].folder"):
        list_models()


def test_find_model_picks_the_newest_version_unless_one_is_named(
    bundled_dir: Path, user_dir: Path, tmp_path: Path
) -> None:
    for version in ("2.0.0", "2.1.0", "10.0.0-rc.1"):
        import_model(save_tiny_bundle(tmp_path / version, make_bundle(name="shipped-ct", version=version)))
    assert find_model("shipped-ct").version == "10.0.0-rc.1"
    bundled = find_model("shipped-ct@2.0.0")
    assert bundled.version == "2.0.0"
    assert bundled.folder == user_dir / "shipped-ct-v2.0.0"  # a user copy wins a tie
    with pytest.raises(
        BundleError, match=re.escape("no version 9.9.9; available: 2.0.0, 2.1.0, 10.0.0-rc.1")
    ):
        find_model("shipped-ct@9.9.9")


def test_find_model_unknown_name_lists_the_available_ones(
    bundled_dir: Path, source_bundle: Path, user_dir: Path
) -> None:
    import_model(source_bundle)
    with pytest.raises(BundleError, match="unknown model 'livers'; available: shipped-ct, tiny-lungs"):
        find_model("livers")


def test_find_model_accepts_a_folder_or_zip_path(source_bundle: Path, user_dir: Path, tmp_path: Path) -> None:
    assert find_model(str(source_bundle)).folder == source_bundle
    from_zip = find_model(zip_folder(source_bundle, tmp_path / "tiny.zip"))
    assert from_zip.name == "tiny-lungs"
    assert (from_zip.folder / "model.safetensors").is_file()
    assert not user_dir.exists()
