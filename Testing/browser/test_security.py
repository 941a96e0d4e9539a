"""The browser app's server checks: access tokens, local addresses, paths a page may name and uploads.

Pure library code (no trame, no slicer): every expectation here is written out by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from LungLiverSegLib.browser.security import (
    MIN_TOKEN_LENGTH,
    AccessError,
    check_upload_size,
    checked_token,
    confined,
    is_local,
    new_token,
    relative_name,
    token_matches,
    upload_name,
)
from LungLiverSegLib.errors import LungLiverSegError

URL_SAFE = re.compile(r"[A-Za-z0-9_-]+")

# --- tokens ------------------------------------------------------------------------------------------


def test_new_tokens_are_long_url_safe_and_differ():
    tokens = [new_token() for _ in range(50)]
    assert all(len(token) == 32 for token in tokens), "24 random bytes are 32 base64 characters"
    assert all(URL_SAFE.fullmatch(token) for token in tokens), "the token goes into a URL unescaped"
    assert len(set(tokens)) == len(tokens)


def test_no_token_given_means_a_new_random_one():
    first, second = checked_token(None), checked_token(None)
    assert first != second
    assert len(first) >= MIN_TOKEN_LENGTH and URL_SAFE.fullmatch(first)


def test_a_users_token_is_kept_when_long_enough():
    assert MIN_TOKEN_LENGTH == 16
    assert checked_token("a" * 16) == "a" * 16
    assert checked_token("correct-horse-battery-staple") == "correct-horse-battery-staple"


@pytest.mark.parametrize(
    "token", ["", "short", "a" * 15, "sixteen chars ok", "tab\tin-the-token-x", "new\nline-in-the-token"]
)
def test_a_guessable_or_unprintable_token_is_refused(token: str):
    with pytest.raises(AccessError, match="at least 16 characters") as refused:
        checked_token(token)
    assert isinstance(refused.value, LungLiverSegError), "the CLI reports it as a user error (exit 2)"


def test_token_matches_only_the_same_string():
    expected = "s3cret-token-of-enough-length"
    assert token_matches(expected, expected)
    assert token_matches(str(expected), expected)
    assert not token_matches(expected[:-1], expected)
    assert not token_matches(expected + "x", expected)
    assert not token_matches("", expected)
    assert not token_matches("é" * 29, expected), "a non-ASCII guess is refused, not an error"


@pytest.mark.parametrize(
    "given", [None, 42, b"s3cret-token-of-enough-length", ["s3cret-token-of-enough-length"]]
)
def test_token_matches_refuses_what_is_not_a_string(given: object):
    assert not token_matches(given, "s3cret-token-of-enough-length")


# --- hosts -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2", "127.255.255.254"])
def test_loopback_hosts_are_local(host: str):
    assert is_local(host)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "192.168.1.1", "10.0.0.1", "example.org", "", "localhost.example.org"]
)
def test_other_hosts_are_not_local(host: str):
    assert not is_local(host)


# --- paths a page may name ---------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A data folder with one file at its top, one in a subfolder, and a file outside it."""
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "ct.nii.gz").write_bytes(b"ct")
    (data / "sub" / "inner.nrrd").write_bytes(b"inner")
    (tmp_path / "secret.txt").write_text("outside")
    return data


def test_a_file_inside_is_given_as_its_real_path(root: Path):
    assert confined(root, "ct.nii.gz") == (root / "ct.nii.gz").resolve()
    assert confined(root, "sub/inner.nrrd") == (root / "sub" / "inner.nrrd").resolve()
    assert confined(root, "sub") == (root / "sub").resolve()
    assert confined(root, "./sub/./inner.nrrd") == (root / "sub" / "inner.nrrd").resolve()


@pytest.mark.parametrize(
    "relative",
    [
        "../secret.txt",
        "sub/../../secret.txt",
        "sub/..",
        "..",
        "/etc/passwd",
        "//etc/passwd",
        "\\etc\\passwd",
        "..\\secret.txt",
        "sub\\..\\..\\secret.txt",
        "C:\\Windows\\win.ini",
        "C:/Windows/win.ini",
        "C:secret.txt",
        "\\\\server\\share\\ct.nii.gz",
    ],
)
def test_paths_leaving_the_data_folder_are_refused(root: Path, relative: str):
    with pytest.raises(AccessError, match="not a path inside the data folder"):
        confined(root, relative)


def test_an_absolute_path_to_a_file_inside_is_refused_too(root: Path):
    """A page names files relatively; an absolute path is refused even where it would be inside."""
    with pytest.raises(AccessError):
        confined(root, str((root / "ct.nii.gz").resolve()))


def test_a_symbolic_link_out_of_the_data_folder_is_refused(root: Path, tmp_path: Path):
    (root / "innocent.nii.gz").symlink_to(tmp_path / "secret.txt")
    (root / "sub" / "escape").symlink_to(tmp_path)
    with pytest.raises(AccessError, match="leads outside the data folder"):
        confined(root, "innocent.nii.gz")
    with pytest.raises(AccessError, match="leads outside the data folder"):
        confined(root, "sub/escape/secret.txt")


def test_a_symbolic_link_within_the_data_folder_is_followed(root: Path):
    (root / "alias.nrrd").symlink_to(root / "sub" / "inner.nrrd")
    (root / "sub" / "up").symlink_to(root)
    assert confined(root, "alias.nrrd") == (root / "sub" / "inner.nrrd").resolve()
    assert confined(root, "sub/up/ct.nii.gz") == (root / "ct.nii.gz").resolve()


def test_a_data_folder_reached_through_a_link_still_confines(root: Path, tmp_path: Path):
    linked_root = tmp_path / "data-link"
    linked_root.symlink_to(root)
    assert confined(linked_root, "ct.nii.gz") == (root / "ct.nii.gz").resolve()
    with pytest.raises(AccessError):
        confined(linked_root, "../secret.txt")


def test_a_missing_file_is_refused(root: Path):
    with pytest.raises(AccessError, match="does not exist"):
        confined(root, "missing.nii.gz")
    (root / "dangling.nii.gz").symlink_to(root / "gone.nii.gz")
    with pytest.raises(AccessError, match="does not exist"):
        confined(root, "dangling.nii.gz")


def test_a_symbolic_link_loop_is_refused_as_any_bad_path(root: Path):
    (root / "loop").symlink_to(root / "loop")
    (root / "ping").symlink_to(root / "pong")
    (root / "pong").symlink_to(root / "ping")
    for relative in ("loop", "ping", "loop/ct.nii.gz"):
        with pytest.raises(AccessError):
            confined(root, relative)


@pytest.mark.parametrize("relative", ["ct\x00.nii.gz", "sub/\x00", "\x00"])
def test_a_name_with_a_nul_character_is_refused_as_any_bad_path(root: Path, relative: str):
    """A page can send any string; a NUL byte must be a refusal, not a ValueError from the OS layer."""
    with pytest.raises(AccessError):
        confined(root, relative)


@pytest.mark.parametrize("relative", [None, 3, ["ct.nii.gz"], {"path": "ct.nii.gz"}])
def test_a_path_that_is_no_string_is_refused(root: Path, relative: object):
    """A page sends any JSON value; what is not a string is refused, not an AttributeError."""
    with pytest.raises(AccessError):
        confined(root, relative)  # type: ignore[arg-type]


def test_relative_name_is_what_the_page_sends_back(root: Path):
    assert relative_name(root, root / "sub" / "inner.nrrd") == "sub/inner.nrrd"
    assert confined(root, relative_name(root, root / "sub" / "inner.nrrd")) == (root / "sub" / "inner.nrrd")


# --- uploads -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ct.nii.gz", "ct.nii.gz"),
        ("../../.bashrc", "bashrc"),
        ("/etc/passwd", "passwd"),
        ("C:\\x\\ct.nii.gz", "ct.nii.gz"),
        ("..\\..\\Windows\\evil.nii.gz", "evil.nii.gz"),
        ("my scan (1).nrrd", "my_scan_1_.nrrd"),
        ("Röntgen.png", "R_ntgen.png"),
        ("IM0001", "IM0001"),
        ("folder/", "folder"),
    ],
)
def test_upload_names_keep_only_a_safe_base_name(name: str, expected: str):
    assert upload_name(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "../../.bashrc",
        "..",
        "a/..",
        "./.",
        ".../...",
        "x/../../../etc/passwd",
        "~/.ssh/id_rsa",
        "\\\\srv\\s\\.x",
    ],
)
def test_an_upload_name_is_never_a_path_nor_hidden(name: str, tmp_path: Path):
    try:
        safe = upload_name(name)
    except AccessError:
        return
    assert "/" not in safe and "\\" not in safe and not safe.startswith(".")
    assert safe not in ("", ".", "..")
    assert (tmp_path / safe).parent == tmp_path


@pytest.mark.parametrize("name", [None, "", "   ", 7, b"ct.nii.gz", "..", "...", "/", "\\"])
def test_an_upload_without_a_usable_name_is_refused(name: object):
    with pytest.raises(AccessError):
        upload_name(name)


def test_an_upload_name_too_long_for_a_file_system_is_refused(tmp_path: Path):
    """Longer than a file name may be (255 bytes on common file systems): refused in one line, where
    writing it would fail with an OSError the page cannot show."""
    longest = "x" * (255 - len(".nii.gz")) + ".nii.gz"
    assert upload_name(longest) == longest
    (tmp_path / upload_name(longest)).write_bytes(b"fits")
    with pytest.raises(AccessError, match="too long"):
        upload_name("x" * 300 + ".nii.gz")


def test_upload_size_at_the_limit_passes_and_one_byte_over_is_refused():
    check_upload_size(1_000_000, 1)
    check_upload_size(0, 1)
    check_upload_size(2_500_000, 2.5)
    with pytest.raises(AccessError, match="over the app's limit of 1 MB") as refused:
        check_upload_size(1_000_001, 1)
    assert "--max-upload-mb" in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(AccessError):
        check_upload_size(2_500_001, 2.5)
