"""Commands from other packages: ``train`` comes from Training's side, and a plug-in that fails to
import says why instead of silently vanishing (argparse's "invalid choice")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from LungLiverSegLib.cli import build_parser
from LungLiverSegTraining.cli import add_train_command


def run(*args: str, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=60)


def test_train_is_offered_by_the_entry_point_and_by_trainings_own_main():
    for command in (["-m", "LungLiverSegLib.cli", "--help"], ["-m", "LungLiverSegTraining", "--help"]):
        completed = run(*command)
        assert completed.returncode == 0, completed.stderr
        listed = [line.split()[0] for line in completed.stdout.splitlines() if line.startswith("    ")]
        assert "train" in listed, completed.stdout


def test_a_plugin_given_directly_replaces_the_installed_one_of_the_same_name():
    parser = build_parser(plugins={"train": add_train_command})
    args = parser.parse_args(["train", "--dataset", "d", "--config", "lungs-ct-3d", "--out", "o"])
    assert args.command == "train"


def test_a_plugin_that_fails_to_import_names_the_missing_module(tmp_path: Path):
    """A real distribution on the path (dist-info + entry point), found by importlib.metadata."""
    dist_info = tmp_path / "broken_plugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[lunglivseg.commands]\nbroken = broken_plugin:add\n")
    (tmp_path / "broken_plugin.py").write_text("import a_dependency_that_is_not_installed\n")
    completed = run("-m", "LungLiverSegLib.cli", "--help", extra_path=tmp_path)
    assert completed.returncode != 0
    assert "No module named 'a_dependency_that_is_not_installed'" in completed.stderr
