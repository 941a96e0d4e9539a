"""Model catalogue: listing bundled and user models, choosing by name, and never letting a user
copy that cannot run hide one that can."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from factories import REPO_ROOT, forge_weights, make_bundle, save_tiny_bundle, zip_bundle
from LungLiverSegLib.bundle.catalogue import find_model, format_models_table, installed_model, list_models
from LungLiverSegLib.bundle.importing import import_model
from LungLiverSegLib.bundle.model_json import load_bundle
from LungLiverSegLib.errors import BundleError, LungLiverSegWarning
from LungLiverSegLib.paths import BUNDLED_MODELS_ENV, USER_MODELS_ENV, bundled_models_dir, user_models_dir

REPO_MODELS = REPO_ROOT / "Resources" / "Models"


def test_default_folders_are_the_repository_resources_and_the_home_folder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(BUNDLED_MODELS_ENV, raising=False)
    monkeypatch.delenv(USER_MODELS_ENV, raising=False)
    assert bundled_models_dir() == REPO_MODELS
    assert user_models_dir() == Path.home() / ".lunglivseg" / "models"
    assert json.loads((REPO_MODELS / "Models.json").read_text())["schema_version"] == 1


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


def test_timings_too_large_for_a_float_are_listed_as_unknown(tmp_path: Path, user_dir: Path) -> None:
    """JSON integers have no limit; formatting 10**400 seconds for the table would overflow."""
    huge = replace(make_bundle(name="slow-lungs"), validation={"cpu_time_s": 10**400, "gpu_time_s": 2})
    import_model(save_tiny_bundle(tmp_path / "slow", huge))
    [entry] = [entry for entry in list_models() if entry.name == "slow-lungs"]
    assert (entry.cpu_time_s, entry.gpu_time_s) == (None, 2.0)
    assert "slow-lungs" in format_models_table([entry])


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
        bundle = make_bundle(name="shipped-ct", version=version)
        import_model(save_tiny_bundle(tmp_path / version, bundle), replace=True)
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
    from_zip = find_model(zip_bundle(source_bundle, tmp_path / "tiny.zip"))
    assert from_zip.name == "tiny-lungs"
    assert (from_zip.folder / "model.safetensors").is_file()
    assert not user_dir.exists()


# --- a user copy that cannot run never hides a bundled model that can (issue 16, class 6) ----


def _install_by_hand(user_dir: Path, version: str) -> Path:
    """A user copy of shipped-ct, put in the user folder without an import (as older
    LungLiverSeg versions installed bundles: checked against their checksum only)."""
    bundle = make_bundle(name="shipped-ct", version=version)
    return save_tiny_bundle(user_dir / f"shipped-ct-v{version}", bundle)


@pytest.mark.parametrize(
    ("breakage", "listed_as"),
    [
        (lambda folder: forge_weights(folder, b"not a safetensors file"), "not a valid safetensors file"),
        (lambda folder: (folder / "model.json").write_text("{"), "cannot read model.json"),
    ],
    ids=["foreign weights, matching checksum", "unreadable model.json"],
)
def test_a_broken_user_copy_is_listed_broken_and_the_bundled_model_runs_instead(
    bundled_dir: Path, user_dir: Path, tmp_path: Path, breakage, listed_as: str
) -> None:
    copy = _install_by_hand(user_dir, "3.0.0")
    breakage(copy)
    [user] = [entry for entry in list_models() if entry.source == "user"]
    assert (user.name, user.version) == ("shipped-ct", "3.0.0") and listed_as in user.error
    with pytest.warns(
        LungLiverSegWarning, match=r"shipped-ct 3\.0\.0 \(user\) .* cannot run, so shipped-ct 2\.0\.0"
    ):
        assert find_model("shipped-ct").folder == bundled_dir / "shipped-ct-v2.0.0"


def test_a_user_copy_failing_its_checksum_gives_way_to_the_bundled_version(
    bundled_dir: Path, user_dir: Path, tmp_path: Path
) -> None:
    """Same version: the user copy would win the tie, but its weights were altered since."""
    weights = _install_by_hand(user_dir, "2.0.0") / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x01")
    with pytest.warns(LungLiverSegWarning, match=r"weights\.sha256"):
        assert find_model("shipped-ct@2.0.0").folder == bundled_dir / "shipped-ct-v2.0.0"


def test_when_nothing_of_a_name_can_run_the_error_says_why(user_dir: Path, tmp_path: Path) -> None:
    weights = save_tiny_bundle(user_dir / "tiny-lungs-v1.0.0") / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x01")
    with pytest.raises(BundleError, match=r"weights\.sha256: .* does not match"):
        find_model("tiny-lungs")
