"""``lunglivseg export``: where the label map comes from, what it prints, and its one-line errors.

The dataset format itself is tested in ``Testing/dataset/test_dataset_export.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from LungLiverSegLib.cli import main
from LungLiverSegLib.dataset import export as dataset_export
from LungLiverSegLib.dataset.export import LOCK_FILE, read_dataset
from LungLiverSegLib.demo.phantom import PHANTOM_LABELS
from LungLiverSegLib.files import exclusive_lock
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.imageio.images import write_image, write_segmentation

LABELS = {value: PHANTOM_LABELS[value] for value in (1, 2)}  # lungs, liver
SHAPE = (8, 12, 16)  # (k, j, i)


def boxes(image: Image, lung_shift_i: int = 0) -> Image:
    """Lungs: a 4x6x10 box (optionally shifted along i); liver: a 2x2x2 box."""
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:6, 2:8, 3 + lung_shift_i : 13 + lung_shift_i] = 1
    labels[5:7, 9:11, 1:3] = 2
    return image.with_array(labels)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A CT, its approved labels (.seg.nrrd: the names travel with it) and a model's proposal."""
    voxels = np.random.default_rng(0).integers(-1000, 500, SHAPE).astype(np.int16)
    image = Image(voxels, (1.0, 1.5, 2.0), (10.0, -5.0, 3.0))
    write_image(tmp_path / "ct.nii.gz", image)
    write_segmentation(tmp_path / "approved.seg.nrrd", boxes(image), LABELS)
    write_image(tmp_path / "proposal.nii.gz", boxes(image, lung_shift_i=2))
    write_image(tmp_path / "lungs.nii.gz", image.with_array((boxes(image).array == 1).astype(np.uint8)))
    return tmp_path


@pytest.fixture
def noisy_ct(tmp_path: Path) -> list[str]:
    """IMAGE and LABEL arguments: a noise CT of 1 MB (its write takes a while) and its labels."""
    voxels = np.random.default_rng(0).integers(-1000, 1000, (32, 128, 128)).astype(np.int16)
    image = Image(voxels, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    labels = image.with_array(np.where(voxels > 700, 1, np.where(voxels < -900, 2, 0)).astype(np.uint8))
    write_image(tmp_path / "ct.nii.gz", image)
    write_segmentation(tmp_path / "approved.seg.nrrd", labels, LABELS)
    return [str(tmp_path / "ct.nii.gz"), str(tmp_path / "approved.seg.nrrd")]


def export_at_once(arguments: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
    """``lunglivseg export`` processes started together, each with its own arguments, once all ended."""
    command = [sys.executable, "-m", "LungLiverSegLib.cli", "export"]
    processes = [
        subprocess.Popen([*command, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for args in arguments
    ]
    return [
        subprocess.CompletedProcess(process.args, process.wait(timeout=120), *process.communicate())
        for process in processes
    ]


def export(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["export", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_export_records_the_correction_and_refuses_to_overwrite(files: Path, capsys):
    root = files / "ds"
    arguments = [str(files / "ct.nii.gz"), str(files / "approved.seg.nrrd"), str(root), "--case-id", "p1"]
    code, out, err = export([*arguments, "--proposal", str(files / "proposal.nii.gz")], capsys)
    assert code == 0, err
    assert out.splitlines()[0] == f"exported case p1 into {root}"
    assert "1 corrected from a model proposal" in out
    [record] = read_dataset(root).cases
    assert record.source["path"] == str(files / "ct.nii.gz")
    assert record.correction["lungs"]["dice"] == pytest.approx(0.8)  # 8 of 10 columns overlap
    code, _, err = export(arguments, capsys)
    assert code == 2 and err.startswith("lunglivseg: error:") and "overwrite" in err


def test_a_label_map_file_must_agree_with_the_dataset(files: Path, capsys):
    root = files / "ds"
    code, _, err = export(
        [str(files / "ct.nii.gz"), str(files / "approved.seg.nrrd"), str(root), "--case-id", "a"], capsys
    )
    assert code == 0, err
    label_map = files / "labels.json"
    label_map.write_text(json.dumps({"1": {"name": "lungs", "color": [1, 0, 0]}}))
    lungs = [str(files / "ct.nii.gz"), str(files / "lungs.nii.gz"), str(root), "--case-id", "b"]
    code, _, err = export([*lungs, "--label-map", str(label_map)], capsys)
    assert code == 2 and "label 2 is 'liver' in the dataset but not defined" in err
    code, _, err = export(lungs, capsys)  # no names given: the dataset's own map
    assert code == 0, err
    assert [case.case_id for case in read_dataset(root).cases] == ["a", "b"]


def test_unnamed_labels_outside_a_dataset_are_refused(files: Path, capsys):
    code, _, err = export(
        [str(files / "ct.nii.gz"), str(files / "lungs.nii.gz"), str(files / "ds"), "--case-id", "a"], capsys
    )
    assert code == 2 and "--labels-from-model NAME or --label-map JSON" in err
    unreadable = files / "labels.json"
    unreadable.write_text("{not json")
    code, _, err = export(
        [
            str(files / "ct.nii.gz"),
            str(files / "lungs.nii.gz"),
            str(files / "ds"),
            "--case-id",
            "a",
            "--label-map",
            str(unreadable),
        ],
        capsys,
    )
    assert code == 2 and "cannot read the label map" in err


def test_a_model_names_the_datasets_channel_after_its_modality(tmp_path: Path, capsys):
    """An X-ray dataset must not get nnU-Net's CT normalisation (channel name "CT")."""
    x_ray = Image(
        np.random.default_rng(1).integers(0, 255, (32, 24)).astype(np.uint8), (0.2, 0.2), (0.0, 0.0)
    )
    lungs = np.zeros((32, 24), np.uint8)
    lungs[4:28, 2:10], lungs[4:28, 14:22] = 1, 2
    write_image(tmp_path / "cxr.png", x_ray)
    write_image(tmp_path / "lungs.png", x_ray.with_array(lungs))
    root = tmp_path / "ds"
    arguments = [str(tmp_path / "cxr.png"), str(tmp_path / "lungs.png"), str(root), "--case-id", "a"]
    code, _, err = export([*arguments, "--labels-from-model", "lungs-cxr-2d"], capsys)
    assert code == 0, err
    assert json.loads((root / "dataset.json").read_text())["channel_names"] == {"0": "CXR"}


def test_exports_started_together_are_all_listed(noisy_ct: list[str], tmp_path: Path):
    root = tmp_path / "ds"
    runs = export_at_once([[*noisy_ct, str(root), "--case-id", f"p{n}"] for n in range(4)])
    assert [(run.returncode, run.stderr) for run in runs] == [(0, "")] * 4
    assert sorted(case.case_id for case in read_dataset(root).cases) == ["p0", "p1", "p2", "p3"]


def test_of_two_exports_of_one_case_started_together_one_wins(noisy_ct: list[str], tmp_path: Path):
    root = tmp_path / "ds"
    runs = export_at_once([[*noisy_ct, str(root), "--case-id", "p1"]] * 2)
    assert sorted(run.returncode for run in runs) == [0, 2]
    [loser] = [run for run in runs if run.returncode == 2]
    assert loser.stderr.count("\n") == 1
    assert loser.stderr.startswith(
        f"lunglivseg: error: {root}: case 'p1' already exists; pass overwrite=True"
    )
    assert [case.case_id for case in read_dataset(root).cases] == ["p1"]


def test_a_dataset_another_export_keeps_busy_is_one_line_after_the_wait(
    files: Path, capsys, monkeypatch: pytest.MonkeyPatch
):
    root = files / "ds"
    monkeypatch.setattr(dataset_export, "LOCK_WAIT_S", 0.2)
    arguments = [str(files / "ct.nii.gz"), str(files / "approved.seg.nrrd"), str(root), "--case-id", "p1"]
    with exclusive_lock(root / LOCK_FILE, wait_s=0, busy=AssertionError("not free at first")):
        code, out, err = export(arguments, capsys)
    assert (code, out) == (2, "")
    assert (
        err == f"lunglivseg: error: dataset {root} is busy (another export is writing to it); waited 0.2 s\n"
    )
    assert export(arguments, capsys)[0] == 0


def test_cancel_stops_the_wait_for_a_busy_dataset(files: Path, capsys, monkeypatch: pytest.MonkeyPatch):
    """The Slicer module's Cancel (the cancel file) or Ctrl-C ends the wait for another export's
    turn at once, not after the 60 s it would wait."""
    import time

    from LungLiverSegLib.cli.events import CANCEL_FILE_ENV

    root = files / "ds"
    cancel_file = files / "cancel"
    cancel_file.touch()
    monkeypatch.setenv(CANCEL_FILE_ENV, str(cancel_file))
    arguments = [str(files / "ct.nii.gz"), str(files / "approved.seg.nrrd"), str(root), "--case-id", "p1"]
    start = time.monotonic()
    with exclusive_lock(root / LOCK_FILE, wait_s=0, busy=AssertionError("not free at first")):
        code, out, err = export(arguments, capsys)
    assert (code, out) == (130, "") and "cancelled" in err and time.monotonic() - start < 10
    assert not (root / "dataset.json").exists()
