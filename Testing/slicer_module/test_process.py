"""The process runner against real child processes: JSON progress, exit codes, tree-wide cancel."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest
from LungLiverSegLib.paths import LIBRARY_PARENT, python_path_entries
from LungLiverSegLib.slicer_module.process import (
    CaseDone,
    ProcessResult,
    ProgressUpdate,
    ThreadedProcessRunner,
    child_environment,
    parse_line,
    segmentation_command,
)

pytestmark = pytest.mark.skipif(os.name == "nt", reason="the tree-kill checks use POSIX signals")


class Recorder:
    """Collects what the runner reports, in order."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self.results: list[ProcessResult] = []

    def on_event(self, event: object) -> None:
        self.events.append(event)

    def on_finished(self, result: ProcessResult) -> None:
        self.results.append(result)


def python_command(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def run_to_end(code: str, timeout: float = 30.0) -> tuple[Recorder, ProcessResult]:
    runner, recorder = ThreadedProcessRunner(), Recorder()
    runner.start(python_command(code), recorder.on_event, recorder.on_finished)
    result = runner.wait(timeout)
    assert result is not None, "the child did not finish in time"
    return recorder, result


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed grandchild stays a zombie until init reaps it; it no longer runs."""
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "\nState:\tZ" in status.read_text()


def wait_until_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_progress_lines_become_events_and_other_lines_go_to_the_log():
    recorder, result = run_to_end(
        """
        import json, sys
        print("loading the model")
        for fraction in (0.25, 1.0):
            print(json.dumps({"event": "progress", "case": "ct.nrrd", "fraction": fraction,
                              "stage": "inference", "elapsed_s": 1.0, "eta_s": 3.0}), flush=True)
        print(json.dumps({"event": "done", "input": "in.nrrd", "output": "out.nrrd"}))
        print("lunglivseg: warning: odd spacing", file=sys.stderr)
        """
    )
    assert recorder.events == [
        ProgressUpdate(0.25, "inference", 3.0, "ct.nrrd"),
        ProgressUpdate(1.0, "inference", 3.0, "ct.nrrd"),
        CaseDone("in.nrrd", "out.nrrd"),
    ]
    assert recorder.results == [result]
    assert result.succeeded and result.exit_code == 0 and result.error is None
    assert set(result.log) == {"loading the model", "lunglivseg: warning: odd spacing"}


def test_failure_reports_the_last_stderr_line_as_the_error():
    _, result = run_to_end(
        """
        import sys
        print("lunglivseg: warning: something first", file=sys.stderr)
        print("lunglivseg: error: model 'x' not found", file=sys.stderr)
        sys.exit(2)
        """
    )
    assert not result.succeeded and not result.cancelled
    assert result.exit_code == 2
    assert result.error == "lunglivseg: error: model 'x' not found"


def test_silent_failure_names_the_exit_status():
    _, result = run_to_end("import sys; sys.exit(3)")
    assert result.error == "the process exited with status 3"


def test_wait_with_timeout_returns_none_while_running_and_the_runner_is_reusable():
    runner, recorder = ThreadedProcessRunner(grace_s=1.0), Recorder()
    runner.start(python_command("import time; time.sleep(30)"), recorder.on_event, recorder.on_finished)
    assert runner.wait(0.2) is None and runner.is_running
    with pytest.raises(RuntimeError, match="already running"):
        runner.start(python_command("pass"), recorder.on_event, recorder.on_finished)
    runner.cancel()
    assert runner.wait(10).cancelled
    runner.start(python_command("print('again')"), recorder.on_event, recorder.on_finished)
    assert runner.wait(10).log == ("again",)
    assert len(recorder.results) == 2


def test_cancel_kills_the_child_and_its_grandchild(tmp_path: Path):
    """The child ignores SIGTERM and spawns a grandchild in its group: both must be gone."""
    pid_file = tmp_path / "grandchild.pid"
    runner, recorder = ThreadedProcessRunner(grace_s=0.5), Recorder()
    code = f"""
        import json, signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pid_file)!r}, "w").write(str(grandchild.pid))
        print(json.dumps({{"event": "progress", "fraction": 0.1, "stage": "inference", "eta_s": None}}),
              flush=True)
        time.sleep(60)
    """
    runner.start(python_command(code), recorder.on_event, recorder.on_finished)
    while not recorder.events:  # the grandchild exists once the first progress line arrived
        assert runner.wait(0.05) is None
    child_pid, grandchild_pid = runner.pid, int(pid_file.read_text())
    assert is_alive(child_pid) and is_alive(grandchild_pid)
    runner.cancel()
    result = runner.wait(15)
    assert result is not None and result.cancelled and not result.succeeded
    assert result.error is None
    assert wait_until_gone(child_pid) and wait_until_gone(grandchild_pid)
    assert recorder.events == [ProgressUpdate(0.1, "inference", None)]


def test_cancel_lets_a_cooperative_child_end_cleanly():
    runner, recorder = ThreadedProcessRunner(grace_s=10.0), Recorder()
    code = """
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
        print('{"event": "progress", "fraction": 0.0, "stage": "load", "eta_s": null}', flush=True)
        time.sleep(60)
    """
    runner.start(python_command(code), recorder.on_event, recorder.on_finished)
    while not recorder.events:  # the handler is installed once the first line arrived
        assert runner.wait(0.05) is None
    started = time.monotonic()
    runner.cancel()
    result = runner.wait(15)
    assert result.exit_code == 130 and result.cancelled
    assert time.monotonic() - started < 5.0, "a cooperative child should not wait for the SIGKILL"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            '{"event": "progress", "fraction": 0.5, "stage": "load", "eta_s": 2.5}',
            ProgressUpdate(0.5, "load", 2.5),
        ),
        ('{"event": "done", "input": "a", "output": "b"}', CaseDone("a", "b")),
        ('{"event": "other"}', None),
        ("[1, 2]", None),
        ("Traceback (most recent call last):", None),
    ],
)
def test_parse_line(line: str, expected: object):
    assert parse_line(line) == expected


def test_segmentation_command_runs_the_cli_module_with_json_progress():
    command = segmentation_command(
        "/slicer/bin/PythonSlicer",
        Path("/tmp/in"),
        "/tmp/out",
        "lungs-ct-3d",
        "cuda",
        output_format=".seg.nrrd",
    )
    assert command[:4] == ["/slicer/bin/PythonSlicer", "-m", "LungLiverSegLib.cli", "segment"]
    assert command[4:6] == ["/tmp/in", "/tmp/out"]
    flags = dict(zip(command[6::2], command[7::2], strict=True))
    assert flags == {
        "--model": "lungs-ct-3d",
        "--device": "cuda",
        "--progress": "json",
        "--format": ".seg.nrrd",
    }


def test_child_environment_makes_the_library_importable_without_an_installed_package():
    """``-S`` skips site-packages (and the editable install): as a fresh PythonSlicer sees things."""
    env = child_environment({"PATH": os.environ["PATH"], "PYTHONPATH": "/elsewhere"})
    assert env["PYTHONPATH"].split(os.pathsep) == [*map(str, python_path_entries()), "/elsewhere"]
    code = (
        "import json, LungLiverSegLib.slicer_module.process as p, LungLiverSegTraining as t; "
        "print(json.dumps({'event': 'done', 'input': p.__file__, 'output': t.__file__}))"
    )
    runner, recorder = ThreadedProcessRunner(), Recorder()
    runner.start([sys.executable, "-S", "-c", code], recorder.on_event, recorder.on_finished, env=env)
    assert runner.wait(30).succeeded
    assert Path(recorder.events[-1].input).parents[1] == LIBRARY_PARENT / "LungLiverSegLib"
    assert Path(recorder.events[-1].output).parent.name == "LungLiverSegTraining"
    bare_env = {"PATH": os.environ["PATH"]}
    runner.start([sys.executable, "-S", "-c", code], recorder.on_event, recorder.on_finished, env=bare_env)
    assert "ModuleNotFoundError" in runner.wait(30).error
