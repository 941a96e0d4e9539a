"""The process runner against real child processes: JSON progress, exit codes, tree-wide cancel."""

from __future__ import annotations

import os
import sys
import tempfile
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
from LungLiverSegLib.cli import build_parser
from LungLiverSegLib.cli.segment import print_done, progress_printer
from LungLiverSegLib.cli.train_request import TrainRequest
from LungLiverSegLib.paths import LIBRARY_PARENT, python_path_entries
from LungLiverSegLib.progress import ProgressEvent
from LungLiverSegLib.slicer_module.process import (
    CaseDone,
    EpochValidated,
    ProcessResult,
    ProgressUpdate,
    SegmentRequest,
    ThreadedProcessRunner,
    child_environment,
    parse_line,
    popen_options,
    segmentation_command,
    training_command,
)
from LungLiverSegTraining.cli import add_train_command
from LungLiverSegTraining.progress_report import Reporter

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
    """The child prints with the segment command's own printers, as ``lunglivseg segment`` does."""
    recorder, result = run_to_end(
        """
        import sys
        from pathlib import Path
        from LungLiverSegLib.cli.segment import print_done, progress_printer
        from LungLiverSegLib.progress import ProgressEvent
        print("loading the model")
        report = progress_printer("json")
        for fraction in (0.25, 1.0):
            report(ProgressEvent(fraction, "inference", 1.0, 3.0), "ct.nrrd")
        print_done("json", Path("in.nrrd"), Path("out.nrrd"))
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
    assert result.warnings == ("odd spacing",)


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
    assert result.warnings == ("something first",)


def test_only_the_clis_own_warnings_reach_the_user_not_other_libraries():
    """A command that warns twice through the real ``cli.main``: ours becomes a warning for the
    panel, a third-party library's ``UserWarning`` goes to the log in Python's own format."""
    _, result = run_to_end(
        """
        import argparse, warnings
        from LungLiverSegLib.cli import main
        from LungLiverSegLib.errors import LungLiverSegWarning

        def run(args, cancel):
            warnings.warn("input unlike the training data", LungLiverSegWarning)
            warnings.warn("a deprecated torch argument", UserWarning)
            warnings.warn("input unlike the training data", LungLiverSegWarning)  # shown again

        def register(commands: argparse._SubParsersAction) -> None:
            commands.add_parser("warn").set_defaults(run=run)

        raise SystemExit(main(["warn"], plugins={"warn": register}))
        """
    )
    assert result.succeeded, result.error
    assert result.warnings == ("input unlike the training data",) * 2
    assert any("UserWarning: a deprecated torch argument" in line for line in result.log)


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


def test_cancel_clicked_twice_signals_the_child_once(tmp_path: Path):
    """The CLI stops at once (no cleanup) on a second SIGTERM, as on a second Ctrl-C."""
    runner, recorder = ThreadedProcessRunner(grace_s=10.0), Recorder()
    count_file = tmp_path / "sigterms"
    code = f"""
        import signal, sys, time
        def count(*_):
            with open({str(count_file)!r}, "a") as file:
                file.write("x")
        signal.signal(signal.SIGTERM, count)
        print('{{"event": "progress", "fraction": 0.0, "stage": "load", "eta_s": null}}', flush=True)
        time.sleep(1.0)
        sys.exit(130)
    """
    runner.start(python_command(code), recorder.on_event, recorder.on_finished)
    while not recorder.events:
        assert runner.wait(0.05) is None
    runner.cancel()
    runner.cancel()
    result = runner.wait(15)
    assert result is not None and result.cancelled and result.exit_code == 130
    assert count_file.read_text() == "x"


def test_cancel_reaches_a_cli_that_no_signal_reaches_through_the_cancel_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """As on Windows (no signal a windowless console process obeys) or behind a launcher that
    forwards none: the real ``cli.main`` with SIGTERM ignored still stops cooperatively (exit 130,
    its own message) well before the grace period's kill, and the cancel file is cleaned up."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the runner puts the cancel file
    runner, recorder = ThreadedProcessRunner(grace_s=20.0), Recorder()
    code = """
        import argparse, signal, time
        from LungLiverSegLib.cli import main

        def run(args, cancel):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print('{"event": "progress", "fraction": 0.0, "stage": "load", "eta_s": null}', flush=True)
            while True:
                cancel.check()
                time.sleep(0.05)

        def register(commands: argparse._SubParsersAction) -> None:
            commands.add_parser("work").set_defaults(run=run)

        raise SystemExit(main(["work"], plugins={"work": register}))
    """
    runner.start(python_command(code), recorder.on_event, recorder.on_finished)
    while not recorder.events:
        assert runner.wait(0.05) is None
    started = time.monotonic()
    runner.cancel()
    result = runner.wait(15)
    assert result is not None and result.cancelled and result.exit_code == 130
    assert "lunglivseg: cancelled; nothing was written" in result.log
    assert time.monotonic() - started < 5.0, "the CLI must not wait for the kill"
    assert list(tmp_path.iterdir()) == []


LAUNCHER = """#!/bin/sh
# Like CTK's AppLauncher (PythonSlicer): the interpreter runs as a child, no signal is forwarded.
"$@"
"""


def test_cancel_through_a_launcher_waits_for_the_interpreters_cooperative_stop(tmp_path: Path):
    """Slicer's PythonSlicer dies at SIGTERM at once; the interpreter behind it (same process
    group) must still get the grace period to clean up, not a SIGKILL a moment later."""
    launcher = tmp_path / "PythonSlicer"
    launcher.write_text(LAUNCHER)
    launcher.chmod(0o755)
    cleaned = tmp_path / "cleaned-up"
    code = f"""
        import signal, sys, time
        def stop(*_):
            time.sleep(1.0)  # removing partial output takes a moment
            open({str(cleaned)!r}, "w").write("130")
            sys.exit(130)
        signal.signal(signal.SIGTERM, stop)
        print('{{"event": "progress", "fraction": 0.0, "stage": "load", "eta_s": null}}', flush=True)
        time.sleep(60)
    """
    runner, recorder = ThreadedProcessRunner(grace_s=5.0), Recorder()
    runner.start([str(launcher), *python_command(code)], recorder.on_event, recorder.on_finished)
    while not recorder.events:  # the handler is installed once the first line arrived
        assert runner.wait(0.05) is None
    started = time.monotonic()
    runner.cancel()
    result = runner.wait(15)
    assert result is not None and result.cancelled and result.error is None
    assert cleaned.is_file(), "the interpreter was killed before its cooperative stop finished"
    assert time.monotonic() - started < 4.0, "a cooperative stop should not wait for the SIGKILL"


def test_on_windows_the_child_gets_its_own_group_and_no_console_window():
    create_new_process_group, create_no_window = 0x00000200, 0x08000000
    assert popen_options("nt") == {"creationflags": create_new_process_group | create_no_window}
    assert popen_options("posix") == {"start_new_session": True}


def test_non_ascii_error_text_reaches_the_runner_whatever_the_childs_locale():
    """A Windows code page (here: ASCII) must not mangle a file name in the error line."""
    locale_env = {"PATH": os.environ["PATH"], "LC_ALL": "C", "PYTHONIOENCODING": "ascii", "PYTHONUTF8": "0"}
    code = "import sys; print('lunglivseg: error: cannot read Müller/肺.nrrd', file=sys.stderr); sys.exit(2)"
    runner, recorder = ThreadedProcessRunner(), Recorder()
    runner.start(
        [sys.executable, "-c", code],
        recorder.on_event,
        recorder.on_finished,
        env=child_environment(locale_env),
    )
    assert runner.wait(30).error == "lunglivseg: error: cannot read Müller/肺.nrrd"


def test_what_the_segment_command_prints_becomes_progress_and_done(capsys: pytest.CaptureFixture[str]):
    report = progress_printer("json")
    report(ProgressEvent(0.42317, "inference", 3.14159, 4.27), "2/3 ct.nrrd")
    report(ProgressEvent(0.0, "load", 0.0, None), "3/3 ct2.nrrd")
    print_done("json", Path("in/ct.nrrd"), Path("out/ct.seg.nrrd"))
    lines = capsys.readouterr().out.splitlines()
    assert [parse_line(line) for line in lines] == [
        ProgressUpdate(0.4232, "inference", 4.3, "2/3 ct.nrrd"),
        ProgressUpdate(0.0, "load", None, "3/3 ct2.nrrd"),
        CaseDone(str(Path("in/ct.nrrd")), str(Path("out/ct.seg.nrrd"))),
    ]


def test_what_training_prints_becomes_progress_validation_and_done(capsys: pytest.CaptureFixture[str]):
    reporter = Reporter("json", total_steps=40 * 5, done_steps=2 * 5)  # 40 epochs of 5 steps, resumed
    reporter.step(epoch=3, step=5, steps=5, loss=0.410934, done_steps=15)
    scores = {
        "dice": {"lungs": 0.95, "liver": 0.91},
        "nsd@2mm": {"lungs": 0.9, "liver": 0.8},
        "mean_dice": 0.93,
    }
    reporter.epoch_end(
        {"epoch": 3, "loss": 0.4, "lr": 0.003, "val": {**scores, "cases": 2, "cpu_time_s": 1.1}}
    )
    reporter.done(
        {"bundle": "runs/x/bundle/x-v0.1.0", "best_epoch": 3, "best_mean_dice": 0.93, "training_time_s": 9.0}
    )
    step, validation, epoch, done = [parse_line(line) for line in capsys.readouterr().out.splitlines()]
    assert step.eta_s is not None and step.eta_s >= 0  # 185 steps left at this process's speed
    assert replace(step, eta_s=None) == ProgressUpdate(
        0.075, "epoch 3/40, loss 0.41", None, epoch=3, loss=0.41093, epochs=40
    )
    assert validation == EpochValidated(3, 0.93, {"lungs": 0.95, "liver": 0.91})
    assert epoch is None  # it repeats what the step and validation lines said
    assert done == CaseDone("", "runs/x/bundle/x-v0.1.0")


@pytest.mark.parametrize(
    "line",
    ['{"event": "other"}', "[1, 2]", "Traceback (most recent call last):", "lunglivseg: error: x"],
)
def test_other_lines_are_not_events(line: str):
    assert parse_line(line) is None


def test_the_cli_parses_the_segmentation_command_as_given():
    python = "/slicer/bin/PythonSlicer"
    request = SegmentRequest(Path("/in"), "/out", "lungs-ct-3d", "cuda", output_format=".seg.nrrd")
    command = segmentation_command(python, request)
    assert command[:3] == [python, "-m", "LungLiverSegLib.cli"]
    args = build_parser().parse_args(command[3:])
    assert (args.command, args.input, args.output) == ("segment", Path("/in"), Path("/out"))
    assert (args.model, args.device, args.progress) == ("lungs-ct-3d", "cuda", "json")
    assert args.format == ".seg.nrrd"
    assert not args.overwrite
    overwrite = segmentation_command("py", SegmentRequest("in.nrrd", "out.nrrd", "m", overwrite=True))
    assert build_parser().parse_args(overwrite[3:]).overwrite


@pytest.mark.parametrize(
    "request_",
    [
        TrainRequest(Path("data"), Path("run"), config="lungs-ct-3d"),
        TrainRequest(Path("data"), Path("run"), resume=True, epochs=3, device="cpu", threads=2),
        TrainRequest(
            Path("/d"), Path("/r"), "cfg.json", init_from=Path("/m/x-v1"), seed=7, data_card=Path("c.md")
        ),
    ],
)
def test_trainings_parser_reads_back_the_training_command(request_: TrainRequest):
    """The command runs Training's own composition root; its parser reads back the same request."""
    command = training_command("/slicer/bin/PythonSlicer", request_)
    assert command[:3] == ["/slicer/bin/PythonSlicer", "-m", "LungLiverSegTraining"]
    args = build_parser({"train": add_train_command}).parse_args(command[3:])
    assert args.command == "train"
    assert TrainRequest.from_args(args) == replace(request_, progress="json")


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
