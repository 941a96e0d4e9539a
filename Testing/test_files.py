"""``files``: a no-overwrite write that two racing writers cannot both win, the temporary names
(made, recognised, cleaned up), and the lock writers take turns with, which a killed holder
never leaves behind."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from LungLiverSegLib.errors import OutputWriteError
from LungLiverSegLib.files import (
    atomic_output,
    exclusive_lock,
    is_hidden,
    is_temporary,
    remove_temporaries,
    temporary_path,
)

WRITERS = 4
HOLD_THE_LOCK = """
import sys, time
from LungLiverSegLib.files import exclusive_lock
with exclusive_lock(sys.argv[1], wait_s=0, busy=RuntimeError("busy")):
    print("locked", flush=True)
    time.sleep(60)
"""


def race_without_overwrite(target: Path) -> tuple[list[int], list[BaseException]]:
    """``WRITERS`` threads write ``target`` without overwrite; all pass the existence check before
    any publishes (a barrier inside the write). Returns the winners and the losers' errors."""
    barrier = threading.Barrier(WRITERS)
    winners: list[int] = []
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            with atomic_output(target, overwrite=False) as temporary:
                temporary.write_bytes(f"writer {writer}".encode())
                barrier.wait()
            winners.append(writer)
        except (OSError, threading.BrokenBarrierError) as error:
            errors.append(error)

    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return winners, errors


def test_two_writers_of_one_name_without_overwrite_never_both_succeed(tmp_path: Path) -> None:
    for attempt in range(5):
        target = tmp_path / f"labels{attempt}.nii.gz"
        winners, errors = race_without_overwrite(target)
        assert len(winners) == 1, f"{len(winners)} writers replaced one another's {target.name}"
        assert [type(error) for error in errors] == [FileExistsError] * (WRITERS - 1)
        assert all("already exists; pass overwrite=True" in str(error) for error in errors)
        assert target.read_bytes() == f"writer {winners[0]}".encode()
    assert sorted(path.name for path in tmp_path.iterdir()) == [f"labels{n}.nii.gz" for n in range(5)]


@pytest.mark.parametrize("reason", [errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV])
def test_without_hard_links_no_overwrite_falls_back_to_a_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reason: int
) -> None:
    """FAT and some network shares cannot hard-link: the write still works, and still refuses."""

    def cannot_link(source: Path, target: Path) -> None:
        raise OSError(reason, os.strerror(reason))

    monkeypatch.setattr(os, "link", cannot_link)
    target = tmp_path / "out.json"
    with atomic_output(target, overwrite=False) as temporary:
        temporary.write_text("first")
    with (
        pytest.raises(FileExistsError, match="already exists"),
        atomic_output(target, overwrite=False) as temporary,
    ):
        temporary.write_text("second")
    assert target.read_text() == "first" and [path.name for path in tmp_path.iterdir()] == ["out.json"]


def test_another_failure_to_publish_is_one_error_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(source: Path, target: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "link", no_space)
    with (
        pytest.raises(OutputWriteError, match=r"out\.json: could not be written: No space left on device$"),
        atomic_output(tmp_path / "out.json", overwrite=False) as temporary,
    ):
        temporary.write_text("data")
    assert list(tmp_path.iterdir()) == []


def test_temporary_names_are_recognised_and_hidden(tmp_path: Path) -> None:
    with atomic_output(tmp_path / "ct.nii.gz") as temporary:
        assert is_temporary(temporary) and is_hidden(temporary)
        assert temporary.name.endswith(".nii.gz")
    assert is_temporary(temporary_path(tmp_path / "curve.png", ".png"))
    assert is_temporary(temporary_path(tmp_path / "README"))
    for name in ("ct.nii.gz", ".lunglivseg.lock", ".tmp-notes.txt", "._ct_0000.nii.gz", "a.tmp-1234abcd"):
        assert not is_temporary(tmp_path / name), name
    assert is_hidden(tmp_path / "._ct_0000.nii.gz") and not is_hidden(tmp_path / "ct.nii.gz")


def test_remove_temporaries_removes_only_temporaries_and_reports_their_sizes(tmp_path: Path) -> None:
    (tmp_path / "imagesTr").mkdir()
    left = [temporary_path(tmp_path / "imagesTr" / "a_0000.nii.gz"), temporary_path(tmp_path / "x.json")]
    for size, path in enumerate(left, start=3):
        path.write_bytes(b"x" * size)
    kept = [tmp_path / "imagesTr" / "a_0000.nii.gz", tmp_path / ".notes", tmp_path / ".lunglivseg.lock"]
    for path in kept:
        path.write_bytes(b"mine")
    (tmp_path / "imagesTr" / temporary_path(tmp_path / "sub").name).mkdir()  # not a file: not ours
    assert sorted(remove_temporaries([tmp_path, tmp_path / "imagesTr", tmp_path / "absent"])) == [3, 4]
    assert not any(path.exists() for path in left) and all(path.exists() for path in kept)


def test_a_held_lock_makes_the_next_holder_wait_then_fail_and_dies_with_its_holder(tmp_path: Path) -> None:
    """flock/msvcrt locks belong to the holder's open file: a SIGKILL-ed holder leaves no stale lock."""
    lock = tmp_path / "folder" / ".lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with (
            pytest.raises(TimeoutError, match="busy"),
            exclusive_lock(lock, wait_s=0.2, busy=TimeoutError("busy")),
        ):
            pytest.fail("two holders at once")
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs
        holder.wait()
    with exclusive_lock(lock, wait_s=5, busy=TimeoutError("stale lock")):
        assert lock.exists()
    assert lock.exists()  # kept: deleting it would let a waiter lock a file no one else sees


def test_a_lock_that_cannot_be_created_is_one_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "dataset").write_text("a file, not a folder")
    with (
        pytest.raises(OutputWriteError, match=r"dataset/\.lock: could not be created"),
        exclusive_lock(tmp_path / "dataset" / ".lock", wait_s=0, busy=TimeoutError()),
    ):
        pytest.fail("locked inside a file")
