"""Exports into one dataset from several processes at once, and exports killed with SIGKILL.

Real processes (``python -c WRITER``), started together: every case of every writer is listed
with its own complete files, two writers of one case id never both win, and a writer killed
mid-write leaves only hidden temporary files, which no reader takes for a case and the next
export removes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from LungLiverSegLib.dataset import export, layout
from LungLiverSegLib.dataset.export import StaleTemporariesRemoved, export_case, read_dataset
from LungLiverSegLib.demo.phantom import PHANTOM_LABELS
from LungLiverSegLib.files import is_hidden, is_temporary
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.imageio import read_image
from LungLiverSegTraining.config import load_config
from LungLiverSegTraining.dataset_reader import open_dataset

LABELS = {value: PHANTOM_LABELS[value] for value in (1, 2)}  # lungs, liver
SMALL, LARGE = "32,128,128", "64,256,256"  # noise: 1 MB (~0.05 s to write), 8 MB (~0.3 s)
ZEROS = Image(np.zeros((8, 12, 16), np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
A_CASE = (ZEROS, ZEROS.with_array(np.ones((8, 12, 16), np.uint8)), LABELS)
KILLS = 6
HANG_ENV = "LUNGLIVSEG_TEST_HANG_WRITING_IMAGES"
WRITER = """
import hashlib, json, os, sys, time
from pathlib import Path
import numpy as np
from LungLiverSegLib.dataset.export import export_case
from LungLiverSegLib.demo.phantom import PHANTOM_LABELS
from LungLiverSegLib.errors import LungLiverSegError
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.imageio import images

root, start, writer, shape, *case_ids = sys.argv[1:]
if os.environ.get("HANG_ENV"):  # stop for good inside the image's atomic write: a temporary file exists
    real_write = images.sitk.WriteImage
    def write_then_hang(image, name, useCompression):
        real_write(image, name, useCompression=useCompression)
        if "imagesTr" in name:
            print("mid-write", flush=True)
            time.sleep(600)
    images.sitk.WriteImage = write_then_hang
labels = {value: PHANTOM_LABELS[value] for value in (1, 2)}
rng = np.random.default_rng(int(writer))
print("ready", flush=True)
while start != "-" and not Path(start).exists():
    time.sleep(0.001)
for case_id in case_ids:
    voxels = rng.integers(-1000, 1000, [int(n) for n in shape.split(",")]).astype(np.int16)
    approved = np.where(voxels > 700, 1, np.where(voxels < -900, 2, 0)).astype(np.uint8)
    image = Image(voxels, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    try:
        export_case(root, case_id, image, image.with_array(approved), labels)
        outcome = {"image": hashlib.sha256(voxels).hexdigest(), "label": hashlib.sha256(approved).hexdigest()}
    except LungLiverSegError as error:
        outcome = {"error": str(error)}
    print(json.dumps({"case": case_id, "writer": writer, **outcome}), flush=True)
""".replace("HANG_ENV", HANG_ENV)


def start_writer(
    root: Path, start: str, writer: int, shape: str, case_ids: list[str]
) -> subprocess.Popen[str]:
    """A writer process, once it has imported everything (it then waits for ``start`` to exist)."""
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), start, str(writer), shape, *case_ids],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n", process.communicate()[1]
    return process


def run_writers(tmp_path: Path, root: Path, cases: list[list[str]]) -> list[dict[str, str]]:
    """One writer process per list of case ids, all let go at the same moment; their outcomes."""
    start = tmp_path / "start"
    writers = [start_writer(root, str(start), number, SMALL, ids) for number, ids in enumerate(cases)]
    start.touch()
    outcomes = []
    for writer in writers:
        out, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err
        outcomes += [json.loads(line) for line in out.splitlines()]
    return outcomes


def digest(path: Path, dtype: type) -> str:
    return hashlib.sha256(read_image(path).array.astype(dtype)).hexdigest()


def temporaries(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if is_temporary(path)]


def assert_valid(root: Path) -> list[str]:
    """Every case dataset.json lists is complete and readable, and no reader lists a hidden file;
    returns the listed case ids."""
    description = layout.read_dataset_json(root, AssertionError)
    listed = [case for case, _, _ in layout.listed_cases(root, description, AssertionError)]
    assert description["numTraining"] == len(listed)
    assert [record.case_id for record in read_dataset(root).cases] == listed  # image, label, record
    for case in listed:
        assert (
            read_image(layout.image_path(root, case)).size == read_image(layout.label_path(root, case)).size
        )
    assert [case.case_id for case in open_dataset(root, load_config("phantom-ct-3d")).cases] == listed
    assert not [image for _, image, _ in layout.found_cases(root, AssertionError) if is_hidden(image)]
    return listed


def test_concurrent_writers_of_different_cases_all_get_listed_with_their_own_files(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    cases = [[f"w{writer}c{case}" for case in range(3)] for writer in range(4)]
    outcomes = run_writers(tmp_path, root, cases)
    assert [outcome.get("error") for outcome in outcomes] == [None] * 12
    assert sorted(assert_valid(root)) == sorted(case for ids in cases for case in ids)
    assert len((root / "cases.jsonl").read_text().splitlines()) == 12
    for outcome in outcomes:
        assert digest(layout.image_path(root, outcome["case"]), np.int16) == outcome["image"]
        assert digest(layout.label_path(root, outcome["case"]), np.uint8) == outcome["label"]
    assert temporaries(root) == []


def test_concurrent_writers_of_one_case_id_without_overwrite_exactly_one_wins(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    outcomes = run_writers(tmp_path, root, [["same"]] * 4)
    [winner] = [outcome for outcome in outcomes if "error" not in outcome]
    errors = [outcome["error"] for outcome in outcomes if "error" in outcome]
    assert (
        errors == [f"{root}: case 'same' already exists; pass overwrite=True (--overwrite) to replace it"] * 3
    )
    assert assert_valid(root) == ["same"] and len((root / "cases.jsonl").read_text().splitlines()) == 1
    assert digest(layout.image_path(root, "same"), np.int16) == winner["image"]
    assert digest(layout.label_path(root, "same"), np.uint8) == winner["label"]


def test_an_export_killed_mid_write_leaves_temporaries_that_the_next_export_removes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "ds"
    export_case(root, "a", *A_CASE)
    monkeypatch.setenv(HANG_ENV, "1")
    writer = start_writer(root, "-", 0, SMALL, ["b"])
    assert writer.stdout is not None and writer.stdout.readline() == "mid-write\n"
    writer.kill()  # SIGKILL: no clean-up code runs
    writer.wait()
    [left] = temporaries(root)
    assert left.parent.name == "imagesTr" and left.stat().st_size > 0
    assert assert_valid(root) == ["a"]
    monkeypatch.setattr(export, "LOCK_WAIT_S", 2.0)  # the killed writer's lock died with it
    with pytest.warns(StaleTemporariesRemoved, match=rf"{root}: removed 1 temporary file \(\d\.\d MB\)"):
        export_case(root, "b", *A_CASE)
    assert temporaries(root) == [] and assert_valid(root) == ["a", "b"]


@pytest.mark.slow
def test_exports_killed_at_random_moments_leave_a_valid_dataset(tmp_path: Path) -> None:
    """Writers one after the other, each SIGKILL-ed at a random (seeded) moment of a run of exports."""
    root, moments, left_behind = tmp_path / "ds", random.Random(16), []
    export_case(root, "a", *A_CASE)
    for attempt in range(KILLS):
        writer = start_writer(root, "-", attempt, LARGE, [f"t{attempt}c{case}" for case in range(100)])
        with contextlib.suppress(subprocess.TimeoutExpired):
            writer.wait(timeout=moments.uniform(0.2, 1.2))
        writer.kill()  # SIGKILL: no clean-up code runs
        writer.communicate()
        left_behind.append(len(temporaries(root)))
        assert_valid(root)
    assert any(left_behind), f"no kill hit a write ({left_behind}): make the writes longer"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_case(root, "last", *A_CASE)
    removed = [warning for warning in caught if warning.category is StaleTemporariesRemoved]
    assert len(removed) == (1 if left_behind[-1] else 0)
    assert temporaries(root) == [] and assert_valid(root)[-1] == "last"
