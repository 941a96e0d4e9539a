"""``lunglivseg app``: its registration through the entry point, its options, the settings it refuses
before any server starts, and that registering it imports neither trame, slicer nor torch."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from LungLiverSegLib import paths
from LungLiverSegLib.browser.command import add_app_command, checked_settings, run_app
from LungLiverSegLib.browser.security import DEFAULT_MAX_UPLOAD_MB
from LungLiverSegLib.browser.settings import Settings
from LungLiverSegLib.cli import build_parser
from LungLiverSegLib.errors import LungLiverSegError


def app_args(*argv: str):
    return build_parser().parse_args(["app", *argv])


def run_cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "LungLiverSegLib.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "PYTHONUTF8": "1"},
    )


def test_app_is_registered_through_the_entry_point():
    (entry,) = [entry for entry in entry_points(group="lunglivseg.commands") if entry.name == "app"]
    assert entry.value == "LungLiverSegLib.browser.command:add_app_command"
    assert entry.load() is add_app_command


def test_the_options_and_their_defaults():
    args = app_args()
    assert args.run is run_app
    assert args.data == Path(".")
    assert args.work == paths.DEFAULT_APP_WORK
    assert (args.host, args.port, args.token, args.device) == ("127.0.0.1", 0, None, "auto")
    assert args.max_upload_mb == DEFAULT_MAX_UPLOAD_MB


def test_the_options_as_given(tmp_path: Path):
    args = app_args(
        "--data", str(tmp_path / "d"), "--work", str(tmp_path / "w"), "--host", "::1", "--port", "8123",
        "--token", "t" * 20, "--max-upload-mb", "12.5", "--device", "cpu",
    )  # fmt: skip
    assert (args.data, args.work) == (tmp_path / "d", tmp_path / "w")
    assert (args.host, args.port, args.token, args.max_upload_mb, args.device) == (
        "::1", 8123, "t" * 20, 12.5, "cpu",
    )  # fmt: skip


def test_checked_settings_resolves_the_folders_and_creates_the_work_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    args = app_args("--data", "data", "--work", "runs/app/work", "--max-upload-mb", "3", "--device", "cpu")
    settings = checked_settings(args)
    assert settings == Settings(
        data=(tmp_path / "data").resolve(), work=(tmp_path / "runs/app/work").resolve(), max_upload_mb=3.0,
        device="cpu",
    )  # fmt: skip
    assert settings.work.is_dir() and settings.data.is_absolute() and settings.work.is_absolute()


def test_checked_settings_expands_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "images").mkdir()
    settings = checked_settings(app_args("--data", "~/images", "--work", "~/work"))
    assert (settings.data, settings.work) == ((tmp_path / "images").resolve(), (tmp_path / "work").resolve())
    assert (tmp_path / "work").is_dir() and not Path("~").exists()


def refusal(args) -> str:
    with pytest.raises(LungLiverSegError) as refused:
        checked_settings(args)
    message = str(refused.value)
    assert "\n" not in message
    return message


def test_a_missing_data_folder_is_refused_and_nothing_is_created(tmp_path: Path):
    message = refusal(app_args("--data", str(tmp_path / "missing"), "--work", str(tmp_path / "work")))
    assert message == f"--data {tmp_path / 'missing'}: not a folder"
    assert not (tmp_path / "work").exists()


def test_a_data_file_is_refused(tmp_path: Path):
    (tmp_path / "ct.nii.gz").write_bytes(b"")
    assert "not a folder" in refusal(app_args("--data", str(tmp_path / "ct.nii.gz"), "--work", str(tmp_path)))


@pytest.mark.parametrize("limit", ["0", "-1", "-0.5"])
def test_a_non_positive_upload_limit_is_refused(tmp_path: Path, limit: str):
    args = app_args("--data", str(tmp_path), "--work", str(tmp_path / "work"), "--max-upload-mb", limit)
    assert refusal(args) == "--max-upload-mb must be positive"
    assert not (tmp_path / "work").exists()


def test_registering_the_command_imports_neither_trame_nor_slicer_nor_torch():
    code = (
        "import sys, LungLiverSegLib.browser.command; "
        "print([m for m in sys.modules if m.startswith(('trame', 'slicer', 'torch'))])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_whole_parser_imports_neither_trame_nor_slicer():
    code = (
        "import sys; from LungLiverSegLib.cli import build_parser; build_parser(); "
        "print([m for m in sys.modules if m.startswith(('trame', 'slicer'))])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_app_with_a_missing_data_folder_exits_2_with_one_line(tmp_path: Path):
    result = run_cli("app", "--data", "/nonexistent", "--work", str(tmp_path / "work"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["lunglivseg: error: --data /nonexistent: not a folder"]
    assert result.stdout == "" and not (tmp_path / "work").exists()


def test_app_with_a_short_token_exits_2_before_any_server_starts(tmp_path: Path):
    result = run_cli(
        "app", "--data", str(tmp_path), "--work", str(tmp_path / "w"), "--token", "short", cwd=tmp_path
    )
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("lunglivseg: error: the access token must be at least 16 characters")
    assert result.stdout == ""


def test_the_console_script_reports_the_same(tmp_path: Path):
    script = Path(sys.executable).with_name("lunglivseg")
    if not script.is_file():
        pytest.skip(f"no console script at {script} (the package is not installed in this environment)")
    result = subprocess.run(
        [str(script), "app", "--data", "/nonexistent"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert (result.returncode, result.stderr.splitlines()) == (
        2, ["lunglivseg: error: --data /nonexistent: not a folder"],
    )  # fmt: skip
