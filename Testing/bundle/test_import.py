"""Importing a model bundle (issue 16, "Nothing lost, nothing trusted"): validated completely,
only the bundle's own files and only from plain files, no silent change of what a model name
runs, and nothing left behind by a failed or killed import."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from factories import forge_weights, make_bundle, random_state_dict, save_tiny_bundle, zip_bundle
from LungLiverSegLib.bundle import sources
from LungLiverSegLib.bundle.catalogue import LOCK_FILE, find_model, list_models
from LungLiverSegLib.bundle.importing import import_model
from LungLiverSegLib.bundle.model_json import load_bundle
from LungLiverSegLib.bundle.spec import ArchitectureSpec
from LungLiverSegLib.errors import BundleError
from LungLiverSegLib.paths import USER_MODELS_ENV
from safetensors.torch import save

posix_only = pytest.mark.skipif(os.name == "nt", reason="symbolic links, pipes and signals of POSIX")
BUNDLE_FILES = ["README.md", "model.json", "model.safetensors"]


def models_folder(user_dir: Path) -> list[str]:
    """What the user's models folder holds, but for the lock file that imports share."""
    return sorted(path.name for path in user_dir.iterdir() if path.name != LOCK_FILE)


def test_import_from_folder_installs_a_validated_copy(source_bundle: Path, user_dir: Path) -> None:
    result = import_model(source_bundle)
    entry = result.entry
    assert (entry.name, entry.version, entry.source) == ("tiny-lungs", "1.0.0", "user")
    assert entry.folder == user_dir / "tiny-lungs-v1.0.0"
    assert entry.segments == ("right lung", "left lung")
    assert entry.cpu_time_s == 3.0
    assert result.notices == ()
    assert models_folder(user_dir) == ["tiny-lungs-v1.0.0"]
    assert load_bundle(entry.folder).weights_sha256 == load_bundle(source_bundle).weights_sha256


def test_import_from_zip(source_bundle: Path, user_dir: Path, tmp_path: Path) -> None:
    result = import_model(zip_bundle(source_bundle, tmp_path / "tiny.zip"))
    assert result.entry.folder == user_dir / "tiny-lungs-v1.0.0"
    assert find_model("tiny-lungs").folder == result.entry.folder


def test_import_refuses_the_same_version_unless_overwrite(source_bundle: Path, user_dir: Path) -> None:
    import_model(source_bundle)
    with pytest.raises(BundleError, match="already exists; use --overwrite"):
        import_model(source_bundle)
    result = import_model(source_bundle, overwrite=True)  # your own copy: no --replace needed
    assert result.entry.folder == user_dir / "tiny-lungs-v1.0.0" and result.notices == ()
    assert models_folder(user_dir) == ["tiny-lungs-v1.0.0"]


# --- the import validates completely (class 6) --------------------------------------------


def test_import_refuses_a_corrupt_bundle_and_leaves_nothing(source_bundle: Path, user_dir: Path) -> None:
    weights = source_bundle / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(BundleError, match=re.escape("weights.sha256")):
        import_model(source_bundle)
    assert models_folder(user_dir) == []


@pytest.mark.parametrize(
    ("weights", "error"),
    [
        (lambda: b"\x08" + b"\0" * 7 + b"not json", "not a valid safetensors file"),
        (
            lambda: save(
                random_state_dict(
                    replace(
                        make_bundle(),
                        architecture=ArchitectureSpec("UNet", {"channels": [4, 16], "strides": [2]}),
                    )
                )
            ),
            "weight shapes or dtypes do not fit the network",
        ),
        (
            lambda: save({key: value.double() for key, value in random_state_dict(make_bundle()).items()}),
            "F64",
        ),
    ],
    ids=["not safetensors", "another architecture", "float64"],
)
def test_import_refuses_weights_the_network_cannot_load_even_with_a_matching_checksum(
    source_bundle: Path, user_dir: Path, weights, error: str
) -> None:
    forge_weights(source_bundle, weights())
    with pytest.raises(BundleError, match=error):
        import_model(source_bundle)
    assert models_folder(user_dir) == []


# --- plain files only (class 5) ------------------------------------------------------------


def _secret(tmp_path: Path) -> Path:
    """A file the user may read but not share (like a 0640 system file)."""
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the models folder")
    secret.chmod(0o640)
    return secret


@posix_only
def test_import_refuses_a_model_card_that_is_a_link_to_another_file(
    source_bundle: Path, user_dir: Path, tmp_path: Path
) -> None:
    card = source_bundle / "README.md"
    card.unlink()
    card.symlink_to(_secret(tmp_path))
    with pytest.raises(BundleError, match=rf"^{re.escape(str(card))}: is a symbolic link"):
        import_model(source_bundle)
    assert models_folder(user_dir) == []


@posix_only
def test_import_refuses_weights_that_link_to_a_file_with_their_checksum(
    source_bundle: Path, user_dir: Path, tmp_path: Path
) -> None:
    weights = source_bundle / "model.safetensors"
    elsewhere = weights.rename(tmp_path / "elsewhere.safetensors")
    weights.symlink_to(elsewhere)
    with pytest.raises(BundleError, match=r"model\.safetensors: is a symbolic link"):
        import_model(source_bundle)
    assert models_folder(user_dir) == []


@posix_only
def test_import_refuses_a_file_with_another_hard_link(
    source_bundle: Path, user_dir: Path, tmp_path: Path
) -> None:
    os.link(source_bundle / "model.json", tmp_path / "second-name.json")
    with pytest.raises(BundleError, match=r"model\.json: has 1 other hard link"):
        import_model(source_bundle)
    assert models_folder(user_dir) == []


@posix_only
def test_import_refuses_a_pipe_without_waiting_for_it(source_bundle: Path, user_dir: Path) -> None:
    card = source_bundle / "README.md"
    card.unlink()
    os.mkfifo(card)
    with pytest.raises(BundleError, match=r"README\.md: is not a regular file"):
        import_model(source_bundle)
    assert models_folder(user_dir) == []


def test_import_refuses_a_zip_member_that_is_a_link(
    source_bundle: Path, user_dir: Path, tmp_path: Path
) -> None:
    (source_bundle / "README.md").unlink()
    zip_path = zip_bundle(source_bundle, tmp_path / "link.zip")
    with zipfile.ZipFile(zip_path, "a") as archive:
        link = zipfile.ZipInfo(f"{source_bundle.name}/README.md")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(BundleError, match=r"README\.md: is not a regular file"):
        import_model(zip_path)
    assert models_folder(user_dir) == []


# --- only the bundle's own files (class 7) -------------------------------------------------


def test_zip_import_installs_only_the_bundles_own_files(
    source_bundle: Path, user_dir: Path, tmp_path: Path
) -> None:
    zip_path = zip_bundle(source_bundle, tmp_path / "tiny.zip")
    with zipfile.ZipFile(zip_path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{source_bundle.name}/junk.bin", bytes(8 << 20))
        archive.writestr(f"{source_bundle.name}/more/junk.txt", "junk")
        archive.writestr("notes.txt", "beside the bundle folder")
        archive.writestr(f"__MACOSX/{source_bundle.name}/._model.json", "Finder's metadata")
    result = import_model(zip_path)
    assert sorted(path.name for path in result.entry.folder.iterdir()) == BUNDLE_FILES
    assert result.notices == (
        "left out what is not part of a model bundle: __MACOSX/tiny-lungs-v1.0.0/._model.json, "
        "notes.txt, tiny-lungs-v1.0.0/junk.bin, tiny-lungs-v1.0.0/more/junk.txt",
    )


def test_folder_import_says_what_it_left_out(source_bundle: Path, user_dir: Path) -> None:
    (source_bundle / "training.log").write_text("epoch 1")
    result = import_model(source_bundle)
    assert sorted(path.name for path in result.entry.folder.iterdir()) == BUNDLE_FILES
    assert result.notices == ("left out what is not part of a model bundle: training.log",)


@pytest.mark.parametrize("member", ["../evil", "/tmp/evil", "bundle/../../evil", "C:/evil"])
def test_import_refuses_a_zip_that_writes_outside_its_folder(
    source_bundle: Path, user_dir: Path, tmp_path: Path, member: str
) -> None:
    zip_path = zip_bundle(source_bundle, tmp_path / "evil.zip")
    with zipfile.ZipFile(zip_path, "a") as archive:
        archive.writestr(member, "payload")
    with pytest.raises(BundleError, match="unsafe member"):
        import_model(zip_path)
    assert not (tmp_path / "evil").exists()
    assert models_folder(user_dir) == []


def test_import_refuses_a_zip_that_unpacks_to_too_much_before_extracting(
    source_bundle: Path, user_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "MAX_ZIP_BYTES", 1 << 20)
    zip_path = zip_bundle(source_bundle, tmp_path / "bomb.zip")
    with zipfile.ZipFile(zip_path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.bin", bytes(2 << 20))
    with pytest.raises(BundleError, match="unpacks to more than"):
        import_model(zip_path)
    assert models_folder(user_dir) == []


def test_import_refuses_a_model_json_too_large_to_be_one(
    source_bundle: Path, user_dir: Path, tmp_path: Path
) -> None:
    zip_path = tmp_path / "big.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.json", b" " * (2 << 20))
    with pytest.raises(BundleError, match=r"model\.json: 2,097,152 bytes; too large"):
        import_model(zip_path)
    assert models_folder(user_dir) == []


# --- no silent change of what a model name runs (class 8) ---------------------------------


def test_a_newer_version_of_a_bundled_model_needs_replace(
    bundled_dir: Path, user_dir: Path, tmp_path: Path
) -> None:
    newer = save_tiny_bundle(tmp_path / "newer", make_bundle(name="shipped-ct", version="3.0.0"))
    with pytest.raises(
        BundleError,
        match=re.escape("(now --model shipped-ct runs shipped-ct 2.0.0 (bundled)); add --replace"),
    ):
        import_model(newer)
    assert models_folder(user_dir) == []
    assert find_model("shipped-ct").folder == bundled_dir / "shipped-ct-v2.0.0"

    result = import_model(newer, replace=True)
    assert result.notices == (
        f"--model shipped-ct now runs 3.0.0 (imported from {newer}), was 2.0.0 (bundled)",
    )
    assert find_model("shipped-ct").version == "3.0.0"


def test_a_copy_of_a_bundled_version_needs_replace(bundled_dir: Path, user_dir: Path, tmp_path: Path) -> None:
    copy = save_tiny_bundle(tmp_path / "copy", make_bundle(name="shipped-ct", version="2.0.0"))
    with pytest.raises(BundleError, match=r"--model shipped-ct and --model shipped-ct@2\.0\.0 runs"):
        import_model(copy)
    result = import_model(copy, replace=True)
    assert result.notices == (
        f"--model shipped-ct and --model shipped-ct@2.0.0 now run 2.0.0 (imported from {copy}), "
        "was 2.0.0 (bundled)",
    )


def test_an_older_version_of_a_bundled_model_installs_without_replace(
    bundled_dir: Path, user_dir: Path, tmp_path: Path
) -> None:
    older = save_tiny_bundle(tmp_path / "older", make_bundle(name="shipped-ct", version="1.0.0"))
    assert import_model(older).notices == ()
    assert find_model("shipped-ct").folder == bundled_dir / "shipped-ct-v2.0.0"
    assert find_model("shipped-ct@1.0.0").folder == user_dir / "shipped-ct-v1.0.0"


def test_a_newer_version_of_an_imported_model_needs_replace(
    source_bundle: Path, user_dir: Path, tmp_path: Path
) -> None:
    import_model(source_bundle)
    newer = save_tiny_bundle(tmp_path / "newer", make_bundle(version="1.1.0"))
    with pytest.raises(BundleError, match=re.escape("--model tiny-lungs runs tiny-lungs 1.0.0 (user)")):
        import_model(newer)
    assert import_model(newer, replace=True).notices == (
        f"--model tiny-lungs now runs 1.1.0 (imported from {newer}), was 1.0.0 (user)",
    )


# --- nothing left behind by a killed import (class 10) -------------------------------------

STALLED_IMPORT = """
import pathlib, sys, time

def stall(self, target):  # the bundle is staged, about to be renamed into place
    print("staged", flush=True)
    time.sleep(120)

pathlib.Path.rename = stall
from LungLiverSegLib.bundle.importing import import_model
import_model(sys.argv[1])
"""


@posix_only
def test_what_a_killed_import_staged_is_removed_by_the_next_listing_or_import(
    source_bundle: Path, user_dir: Path
) -> None:
    environment = {**os.environ, USER_MODELS_ENV: str(user_dir)}
    command = [sys.executable, "-c", STALLED_IMPORT, str(source_bundle)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=environment)
    try:
        assert child.stdout is not None and child.stdout.readline() == "staged\n"
        [staging] = user_dir.glob(".import-*")
        assert sorted(path.name for path in (staging / "bundle").iterdir()) == BUNDLE_FILES
        list_models()
        assert staging.exists(), "the staging of a running import was removed"
    finally:
        child.kill()  # SIGKILL: no clean-up of its own
        child.wait()
    assert staging.exists()  # killed: it could not clean up
    assert not any(entry.source == "user" for entry in list_models())
    assert models_folder(user_dir) == []  # the listing did

    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=environment)
    try:
        assert child.stdout is not None and child.stdout.readline() == "staged\n"
    finally:
        child.kill()
        child.wait()
    import_model(source_bundle)
    assert models_folder(user_dir) == ["tiny-lungs-v1.0.0"]
