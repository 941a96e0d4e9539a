"""The `lunglivseg` command: one-line errors with exit 2, batch folders, JSON progress, atomic outputs.

Runs the real command function (`cli.main`) with a real (tiny, random-weight) model bundle
installed into a temporary user models folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from factories import make_bundle, save_tiny_bundle
from LungLiverSegLib.bundle.spec import InferenceSpec
from LungLiverSegLib.cli import main
from LungLiverSegLib.cli.segment import print_bar
from LungLiverSegLib.demo.phantom import make_phantom
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.imageio.images import read_image, read_segmentation, write_image, write_segmentation
from LungLiverSegLib.progress import ProgressEvent

MODEL = "tiny-lungs"


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    # Big windows keep the window count (and the test's run time) small on a 2 mm grid.
    bundle = replace(
        make_bundle(), inference=InferenceSpec(patch_size=(64, 64, 32), overlap=0.25, batch_size=2)
    )
    save_tiny_bundle(folder / f"{MODEL}-v1.0.0", bundle)
    monkeypatch.setenv("LUNGLIVSEG_MODELS", str(folder))
    return folder


@pytest.fixture
def ct_file(tmp_path: Path) -> Path:
    ct, _, _ = make_phantom(size=(48, 40, 24), spacing=(4.0, 4.0, 6.0), seed=1)
    return write_image(tmp_path / "ct.nii.gz", ct)


def run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_segment_writes_a_segmentation_on_the_input_grid(models, ct_file, tmp_path, capsys):
    output = tmp_path / "out.seg.nrrd"
    code, _, err = run(["segment", str(ct_file), str(output), "--model", MODEL, "--progress", "none"], capsys)
    assert code == 0, err
    labels, label_map = read_segmentation(output)
    ct = read_image(ct_file)
    assert labels.array.shape == ct.array.shape
    np.testing.assert_allclose(labels.origin, ct.origin)
    assert [info.name for info in label_map.values()][:2] == ["right lung", "left lung"]


def test_existing_output_is_not_replaced_without_overwrite(models, ct_file, tmp_path, capsys):
    output = tmp_path / "out.nii.gz"
    output.write_bytes(b"precious")
    code, _, err = run(["segment", str(ct_file), str(output), "--model", MODEL, "--progress", "none"], capsys)
    assert code == 2 and "overwrite" in err and output.read_bytes() == b"precious"
    code, _, _ = run(
        ["segment", str(ct_file), str(output), "--model", MODEL, "--progress", "none", "--overwrite"], capsys
    )
    assert code == 0 and read_image(output).array.dtype == np.uint8


def test_json_progress_lines_for_programs(models, ct_file, tmp_path, capsys):
    code, out, _ = run(
        ["segment", str(ct_file), str(tmp_path / "o.nii.gz"), "--model", MODEL, "--progress", "json"], capsys
    )
    events = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert events[-1]["event"] == "done" and events[-1]["output"].endswith("o.nii.gz")


def test_folder_of_images_is_segmented_with_one_model_load(models, tmp_path, capsys):
    """Other files, segmentations and hidden files (a temporary file a killed writer left) beside
    the images are no inputs."""
    cases = tmp_path / "cases"
    for seed in (1, 2):
        ct, truth, label_map = make_phantom(size=(40, 32, 20), spacing=(4.0, 4.0, 6.0), seed=seed)
        write_image(cases / f"case{seed}.nii.gz", ct)
    write_segmentation(cases / "case1.seg.nrrd", truth, label_map)
    (cases / "notes.txt").write_text("case 2 is the harder one")
    (cases / ".tmp-0123abcd.nii.gz").write_bytes((cases / "case2.nii.gz").read_bytes()[:1000])
    code, _, err = run(
        ["segment", str(cases), str(tmp_path / "preds"), "--model", MODEL, "--progress", "none"], capsys
    )
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "preds").iterdir()) == ["case1.nii.gz", "case2.nii.gz"]


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


BAD_INPUTS = {
    "missing file": (lambda tmp: tmp / "nope.nii.gz", "nope.nii.gz"),
    "not an image": (lambda tmp: _write_text(tmp / "notes.nii.gz", "hello"), "notes.nii.gz"),
    "empty folder": (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "empty"),
    "constant image": (
        lambda tmp: write_image(
            tmp / "flat.nii.gz", Image(np.zeros((8, 9, 10), np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
        ),
        "constant",
    ),
    "2D image to a 3D model": (
        lambda tmp: write_image(
            tmp / "xray.png",
            Image((np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8), (1.0, 1.0), (0.0, 0.0)),
        ),
        "2D image",
    ),
    "NaN voxels": (
        lambda tmp: write_image(
            tmp / "nan.mha",
            Image(
                np.where(np.eye(10)[None].repeat(6, 0) > 0, np.nan, -500.0).astype(np.float32),
                (1.0, 1.0, 1.0),
                (0.0, 0.0, 0.0),
            ),
        ),
        "NaN",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_gets_one_line_and_exit_2(case, models, tmp_path, capsys):
    make_input, expected = BAD_INPUTS[case]
    source = make_input(tmp_path)
    output = tmp_path / "never.nii.gz"
    code, _, err = run(["segment", str(source), str(output), "--model", MODEL, "--progress", "none"], capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("lunglivseg: error:")]
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in err
    assert not output.exists()


def test_unknown_model_lists_the_available_ones(models, ct_file, tmp_path, capsys):
    code, _, err = run(
        ["segment", str(ct_file), str(tmp_path / "o.nii.gz"), "--model", "no-such-model"], capsys
    )
    assert code == 2 and "no-such-model" in err and MODEL in err


def test_corrupt_bundle_is_refused(models, ct_file, tmp_path, capsys):
    weights = models / f"{MODEL}-v1.0.0" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    code, _, err = run(["segment", str(ct_file), str(tmp_path / "o.nii.gz"), "--model", MODEL], capsys)
    assert code == 2 and "sha256" in err.lower()


def test_models_lists_and_imports(models, tmp_path, capsys, monkeypatch):
    code, out, _ = run(["models"], capsys)
    assert code == 0 and MODEL in out
    other = save_tiny_bundle(
        tmp_path / "incoming" / "other-v2.0.0", make_bundle(name="other", version="2.0.0")
    )
    code, out, _ = run(["models", "import", str(other)], capsys)
    assert code == 0 and "other" in out
    assert (models / "other-v2.0.0" / "model.json").exists()


def test_models_import_changes_what_a_name_runs_only_with_replace(models, tmp_path, capsys):
    newer = save_tiny_bundle(tmp_path / "incoming" / "newer", make_bundle(name=MODEL, version="2.0.0"))
    code, out, err = run(["models", "import", str(newer)], capsys)
    assert code == 2 and out == "" and "Traceback" not in err
    [line] = err.splitlines()
    assert f"--model {MODEL} runs {MODEL} 1.0.0 (user)" in line and "add --replace" in line
    assert not (models / f"{MODEL}-v2.0.0").exists()

    code, out, _ = run(["models", "import", str(newer), "--replace"], capsys)
    assert code == 0
    assert out.splitlines()[1] == f"--model {MODEL} now runs 2.0.0 (imported from {newer}), was 1.0.0 (user)"


def test_evaluate_prints_a_table_and_json(tmp_path, capsys):
    truth = np.zeros((10, 20, 20), np.uint8)
    truth[2:8, 5:15, 5:15] = 1
    pred = np.roll(truth, 1, axis=2)
    grid = {"spacing": (1.0, 1.0, 2.0), "origin": (0.0, 0.0, 0.0)}
    gt_path = write_image(tmp_path / "gt.nii.gz", Image(truth, **grid))
    pred_path = write_image(tmp_path / "pred.nii.gz", Image(pred, **grid))
    code, out, _ = run(["evaluate", str(pred_path), str(gt_path), "--labels", "1=box", "--json"], capsys)
    assert code == 0
    assert "0.9" in out and "box" in out  # Dice of a 10-wide box shifted by one voxel is 0.9
    code, out, _ = run(["evaluate", str(pred_path), str(gt_path)], capsys)
    assert code == 0 and "HD95" in out


def test_entry_point_is_installed():
    completed = subprocess.run(
        [Path(sys.executable).parent / "lunglivseg", "--help"], capture_output=True, text=True
    )
    assert completed.returncode == 0 and "segment" in completed.stdout and "evaluate" in completed.stdout


def test_progress_bar_redraws_one_line_on_stderr_until_the_case_is_done(capsys):
    print_bar(ProgressEvent(0.5, "inference", 2.0, 12.4), "case_with_a_name_longer_than_thirty.nii.gz")
    print_bar(ProgressEvent(1.0, "postprocess", 4.0, 0.0), "ct.nrrd")
    assert capsys.readouterr().err == (
        "\rcase_with_a_name_longer_than_t [###############...............]  50% inference   ETA   12s"
        "\rct.nrrd                        [##############################] 100% postprocess ETA    0s\n"
    )


def test_module_entry_point_runs_the_same_command():
    completed = subprocess.run(
        [sys.executable, "-m", "LungLiverSegLib.cli", "evaluate", "--help"], capture_output=True, text=True
    )
    assert completed.returncode == 0 and "--tolerance-mm" in completed.stdout


def test_batch_size_reaches_the_network(models, ct_file, tmp_path, capsys, monkeypatch):
    """``--batch-size`` was parsed and then dropped: the bundle's batch of 2 ran whatever was asked."""
    from LungLiverSegLib.segmentation import segment as segment_module

    batches: list[int] = []
    load_model = segment_module.load_model

    def load_and_watch(*args, **kwargs):
        loaded = load_model(*args, **kwargs)
        loaded.network.register_forward_pre_hook(lambda _, inputs: batches.append(inputs[0].shape[0]))
        return loaded

    monkeypatch.setattr(segment_module, "load_model", load_and_watch)
    arguments = ["segment", str(ct_file), str(tmp_path / "o.nii.gz"), "--model", MODEL, "--progress", "none"]
    code, _, err = run([*arguments, "--batch-size", "1"], capsys)
    assert code == 0, err
    assert batches and max(batches) == 1
    batches.clear()
    code, _, err = run([*arguments, "--batch-size", "3", "--overwrite"], capsys)
    assert code == 0, err
    assert max(batches) == 3


@pytest.mark.parametrize("value", ["0", "-2", "x"])
def test_batch_size_must_be_a_positive_whole_number(value, models, ct_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", str(ct_file), str(tmp_path / "o.nii.gz"), "--model", MODEL, "--batch-size", value])
    assert exit_info.value.code == 2
    assert "--batch-size" in capsys.readouterr().err


@pytest.mark.parametrize("tolerance", ["-1", "nan", "0", "inf"])
def test_evaluate_refuses_a_tolerance_that_is_not_a_distance(tolerance, tmp_path, capsys):
    truth = np.zeros((4, 6, 6), np.uint8)
    truth[1:3, 2:4, 2:4] = 1
    gt_path = write_image(tmp_path / "gt.nii.gz", Image(truth, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)))
    code, out, err = run(["evaluate", str(gt_path), str(gt_path), "--tolerance-mm", "1", tolerance], capsys)
    assert code == 2 and out == ""
    assert err.startswith("lunglivseg: error:") and "tolerances must be positive" in err
    assert len(err.strip().splitlines()) == 1
