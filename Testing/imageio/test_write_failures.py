"""Writes that cannot complete: a full or read-only disk, a long name, a folder where a file is.

Each ends in one ``OutputWriteError`` (one ``lunglivseg: error:`` line from the CLI) naming the
file, with nothing left behind: never exit 0 with a short file in place (ITK's NIfTI writer
reports a full disk only in a log line), never a traceback. The disks are real: small tmpfs mounts
(root on Linux; skipped with the reason elsewhere).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from LungLiverSegLib.cli import main
from LungLiverSegLib.errors import OutputWriteError
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.imageio import read_image, write_image, write_segmentation
from LungLiverSegLib.labels import LabelInfo

DISK_BYTES = 1 << 20
# Random voxels do not compress: 4 MB of them cannot fit on a 1 MiB disk in any format.
NOISE = Image(
    np.random.default_rng(0).integers(-1000, 1000, (16, 256, 256)).astype(np.int16),
    (1.0, 1.0, 2.0),
    (0.0, 0.0, 0.0),
)
LUNG = {1: LabelInfo(1, "lungs")}
LABEL_NOISE = NOISE.with_array(np.random.default_rng(1).integers(0, 256, NOISE.array.shape).astype(np.uint8))


def mounted_tmpfs(folder: Path, *options: str) -> Iterator[Path]:
    folder.mkdir()
    if sys.platform != "linux":
        pytest.skip("needs Linux tmpfs mounts")
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join([f"size={DISK_BYTES}", *options]), "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mount.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    yield from mounted_tmpfs(tmp_path / "disk")


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    yield from mounted_tmpfs(tmp_path / "disk", "ro")


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_an_image_too_big_for_the_disk_is_refused_and_nothing_is_left(full_disk: Path, suffix: str):
    with pytest.raises(OutputWriteError, match=rf"ct{suffix.replace('.', '[.]')}: could not be written"):
        write_image(full_disk / f"ct{suffix}", NOISE)
    assert list(full_disk.iterdir()) == []


def test_a_segmentation_too_big_for_the_disk_is_refused_and_nothing_is_left(full_disk: Path):
    labels = {value: LabelInfo(value, f"label {value}") for value in range(1, 256)}
    with pytest.raises(OutputWriteError, match=r"labels[.]seg[.]nrrd: could not be written"):
        write_segmentation(full_disk / "labels.seg.nrrd", LABEL_NOISE, labels)
    assert list(full_disk.iterdir()) == []


def test_what_fits_is_written_and_reads_back_whole(full_disk: Path):
    small = NOISE.with_array(NOISE.array[:2, :64, :64].copy())
    np.testing.assert_array_equal(read_image(write_image(full_disk / "ct.nii.gz", small)).array, small.array)


def test_a_read_only_disk_is_one_line_naming_the_file(read_only_disk: Path):
    with pytest.raises(
        OutputWriteError, match=r"ct[.]nii[.]gz: could not be written: Read-only file system$"
    ):
        write_image(read_only_disk / "ct.nii.gz", NOISE)


def test_a_name_that_fits_the_file_system_is_written_whatever_its_length(tmp_path: Path):
    """The temporary name is short: a 248-character name (255 is the limit) must not fail on it."""
    path = tmp_path / ("x" * 248 + ".nii.gz")
    write_image(path, NOISE.with_array(NOISE.array[:2].copy()))
    assert [entry.name for entry in tmp_path.iterdir()] == [path.name]


def test_the_cli_reports_a_full_disk_in_one_line_with_exit_status_2(full_disk: Path, tmp_path: Path, capsys):
    image = write_image(tmp_path / "ct.nii.gz", NOISE)
    labels = write_segmentation(tmp_path / "labels.seg.nrrd", NOISE.with_array(NOISE.array > 0), LUNG)
    code = main(["export", str(image), str(labels), str(full_disk / "dataset"), "--case-id", "c1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("lunglivseg: error: "), err
    assert "could not be written" in err and str(full_disk) in err


def test_the_cli_reports_a_dataset_folder_that_is_a_file_in_one_line(tmp_path: Path, capsys):
    small = NOISE.with_array(NOISE.array[:2].copy())
    image = write_image(tmp_path / "ct.nii.gz", small)
    labels = write_segmentation(tmp_path / "labels.seg.nrrd", small.with_array(small.array > 0), LUNG)
    (tmp_path / "dataset").write_text("not a folder")
    code = main(["export", str(image), str(labels), str(tmp_path / "dataset"), "--case-id", "c1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("lunglivseg: error: "), err


def test_threads_below_one_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_status:
        main(["segment", "in.nii.gz", "out.nii.gz", "--threads", "-1"])
    assert exit_status.value.code == 2
    assert "--threads: must be at least 1, got -1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (lambda tmp, disk: disk / "labels.nii.gz", "read-only"),
        (lambda tmp, disk: _file(tmp / "taken.nii.gz"), "already exists"),
        (lambda tmp, disk: _file(tmp / "a_file") / "labels.nii.gz", "is a file, not a folder"),
        (lambda tmp, disk: tmp, "is a folder"),
        (lambda tmp, disk: tmp / "labels.txt", "cannot write this format"),
    ],
    ids=["read-only disk", "existing file", "parent is a file", "a folder", "unknown format"],
)
def test_segment_refuses_an_output_it_could_not_write_before_any_work(
    output, message, read_only_disk: Path, tmp_path: Path, capsys
):
    """The output is checked before the model is even looked up (an unknown model would be the
    first error otherwise) and before minutes of segmentation, not after them."""
    target = output(tmp_path, read_only_disk)
    source = tmp_path / "dicom"  # an (empty) DICOM folder: one case, never read
    source.mkdir()
    code = main(["segment", str(source), str(target), "--model", "no-such-model", "--progress", "none"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_the_api_checks_the_output_before_reading_the_input(tmp_path: Path):
    from LungLiverSegLib.api import segment

    taken = _file(tmp_path / "taken.nii.gz")
    with pytest.raises(FileExistsError, match="already exists"):
        segment(tmp_path / "not-read.nii.gz", taken, "no-such-model")


def _file(path: Path) -> Path:
    path.write_text("a user's file")
    return path
