"""``lunglivseg train``: user errors are one line (exit status 2), before anything trains."""

from __future__ import annotations

from LungLiverSegLib import cli


def test_cli_train_errors_are_one_line(tmp_path, capsys):
    code = cli.main(
        [
            "train",
            "--dataset",
            str(tmp_path / "nowhere"),
            "--config",
            "phantom-ct-3d",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("lunglivseg: error:") and "dataset folder not found" in error
    assert "\n" not in error


def test_cli_data_card_that_cannot_be_read_is_one_line(tmp_path, capsys):
    arguments = [
        "train",
        "--dataset",
        str(tmp_path),
        "--config",
        "phantom-ct-3d",
        "--out",
        str(tmp_path / "o"),
    ]
    assert cli.main([*arguments, "--data-card", str(tmp_path / "missing.md")]) == 2
    error = capsys.readouterr().err.strip()
    assert "--data-card" in error and "missing.md" in error and "\n" not in error
