"""Run the segmentation or training CLI in a child process and turn its JSON lines into events.

Segmentation and training never run inside Slicer's process: a crash, an out-of-memory kill or a
hung model would take the application (and the user's unsaved work) down with it, and the Qt
thread must stay free to repaint. The child is ``python -m LungLiverSegLib.cli segment ...`` or
``python -m LungLiverSegTraining train ...``, with ``--progress json``; reader threads put its
lines into a queue, and ``poll()`` hands them out on the caller's thread (a ``QTimer`` in
Slicer, a loop in ``wait()`` for scripts and tests), so callbacks may touch MRML.

Cancel stops the whole process tree: the cancel file (``cli.events.CANCEL_FILE_ENV``) and
SIGTERM to the child's process group (the CLI cancels cooperatively and removes its partial
output), then SIGKILL after a grace period for anything
left, grandchildren included. The grace period lasts until the whole *group* is gone, not just
the child: inside Slicer the child is the ``PythonSlicer`` launcher, which dies at once and does
not wait for the interpreter it started (CTK's AppLauncher forwards no signals). Nothing here
imports Slicer or Qt.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, TextIO, TypedDict

from LungLiverSegLib.cli import events
from LungLiverSegLib.cli.train_request import TrainRequest
from LungLiverSegLib.errors import LungLiverSegError
from LungLiverSegLib.paths import python_path_entries

DEFAULT_GRACE_S = 5.0
_POLL_INTERVAL_S = 0.05
_STDOUT, _STDERR = "stdout", "stderr"
WARNING_PREFIX = "lunglivseg: warning: "
"""How the CLI prints a warning to stderr (unusual input, uncertain result): one line each."""
# Windows process creation flags (``subprocess`` defines them only on Windows).
_CREATE_NEW_PROCESS_GROUP = 0x00000200
_CREATE_NO_WINDOW = 0x08000000

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgressUpdate:
    """What a front end shows in its progress bar, from a child's segmentation ``progress`` or
    training ``step`` line (``cli.events``): overall fraction, stage text and estimated seconds
    left; training steps also carry their epoch, the number of epochs and the loss. The training
    job reports each validation as its epoch's last step again, with ``validation_dice`` (the mean
    Dice), so that a front end can draw both curves."""

    fraction: float
    stage: str
    eta_s: float | None
    case: str = ""
    epoch: int | None = None
    loss: float | None = None
    epochs: int | None = None
    validation_dice: float | None = None


@dataclass(frozen=True)
class CaseDone:
    """A child's ``done`` line, as a front end needs it: an input was segmented into ``output``,
    or a training run exported its bundle folder (``output``; no ``input``)."""

    input: str
    output: str


@dataclass(frozen=True)
class EpochValidated:
    """A training ``validation`` line, as a front end shows it: the mean Dice (and Dice per
    segment) after an epoch."""

    epoch: int
    mean_dice: float
    dice: dict[str, float]


ProcessEvent = ProgressUpdate | CaseDone | EpochValidated


class JobRunningError(LungLiverSegError, RuntimeError):
    """A segmentation or training was started while another one runs (one at a time)."""


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """How a job ended: cancelled, failed (``error``, one line for the user), or succeeded, and
    the child's ``warnings`` for the user (e.g. "input unlike the training data"), without the
    ``lunglivseg: warning:`` prefix.

    The base of the child process's result and of the module's segmentation and training outcomes.
    """

    cancelled: bool = False
    error: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def succeeded(self) -> bool:
        return not self.cancelled and self.error is None


@dataclass(frozen=True, kw_only=True)
class ProcessResult(Outcome):
    """How the child ended. ``error`` is the last stderr line when it failed and was not cancelled
    (a failure always has one), so ``succeeded`` means exit status 0, not cancelled."""

    exit_code: int
    log: tuple[str, ...] = ()


ProcessEventCallback = Callable[[ProcessEvent], None]
ProcessFinishedCallback = Callable[[ProcessResult], None]
ProgressUpdateCallback = Callable[[ProgressUpdate], None]
"""What the module's jobs call with each progress update (the progress bar and status line)."""


class ProcessRunner(Protocol):
    """What the logic needs from a process runner (a fake or a Qt-driven one can stand in)."""

    def start(
        self,
        command: Sequence[str],
        on_event: ProcessEventCallback,
        on_finished: ProcessFinishedCallback,
        env: dict[str, str] | None = None,
    ) -> None: ...

    def poll(self) -> bool: ...

    def cancel(self) -> None: ...

    @property
    def is_running(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> ProcessResult | None: ...


def parse_line(line: str) -> ProcessEvent | None:
    """The event a CLI stdout line carries (read with ``cli.events.from_json``), as a front end
    shows it; None for anything else (logged, not shown).

    Training's ``epoch`` lines repeat what its ``step`` and ``validation`` lines said: None.
    """
    match events.from_json(line):
        case events.SegmentationProgress() as progress:
            return ProgressUpdate(progress.fraction, progress.stage, progress.eta_s, case=progress.case)
        case events.TrainingStep() as step:
            status = training_status(step.epoch, step.loss, step.epochs)
            return ProgressUpdate(
                step.fraction, status, step.eta_s, epoch=step.epoch, loss=step.loss, epochs=step.epochs
            )
        case events.TrainingValidation() as validation:
            return EpochValidated(validation.epoch, validation.mean_dice, validation.dice)
        case events.SegmentationDone() as done:
            return CaseDone(done.input, done.output)
        case events.TrainingDone() as done:
            return CaseDone("", done.bundle)
    return None


def training_status(
    epoch: int, loss: float, epochs: int | None = None, mean_dice: float | None = None
) -> str:
    """``epoch 12/200, loss 0.31, val Dice 0.93``: the total and the Dice where they are known."""
    text = f"epoch {epoch}/{epochs}" if epochs is not None else f"epoch {epoch}"
    text += f", loss {loss:.2f}"
    return text if mean_dice is None else f"{text}, val Dice {mean_dice:.2f}"


class ThreadedProcessRunner:
    """``subprocess.Popen`` in its own session, two reader threads and a queue drained by ``poll()``.

    Callbacks run only inside ``poll()``/``wait()``, on the thread that calls them. One runner
    serves run after run, one at a time.
    """

    def __init__(self, grace_s: float = DEFAULT_GRACE_S) -> None:
        self.grace_s = grace_s
        self._run: _Run | None = None

    @property
    def is_running(self) -> bool:
        return self._run is not None and self._run.result is None

    @property
    def pid(self) -> int | None:
        """The child's process id (also its process group id), for tests and diagnostics."""
        return self._run.process.pid if self._run is not None else None

    def start(
        self,
        command: Sequence[str],
        on_event: ProcessEventCallback,
        on_finished: ProcessFinishedCallback,
        env: dict[str, str] | None = None,
    ) -> None:
        if self.is_running:
            raise JobRunningError("a process is already running; cancel it or wait for it first")
        self._run = _Run(command, on_event, on_finished, env)

    def poll(self) -> bool:
        """Deliver the lines read so far; finish once the child exited. True while it runs."""
        if self._run is not None:
            self._run.poll()
        return self.is_running

    def wait(self, timeout: float | None = None) -> ProcessResult | None:
        """Poll until the child ended (its result) or ``timeout`` seconds passed (None)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll():
            if deadline is not None and time.monotonic() > deadline:
                return None
            time.sleep(_POLL_INTERVAL_S)
        return self._run.result if self._run is not None else None

    def cancel(self) -> None:
        """Ask the process tree to stop (SIGTERM), and kill what is left after the grace period."""
        if self._run is not None and self.is_running:
            self._run.cancel(self.grace_s)


class _Run:
    """One child process and what was read from it; its reader threads only touch its own queue."""

    def __init__(
        self,
        command: Sequence[str],
        on_event: ProcessEventCallback,
        on_finished: ProcessFinishedCallback,
        env: dict[str, str] | None,
    ) -> None:
        self.on_event, self.on_finished = on_event, on_finished
        self.lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
        self.log: list[str] = []
        self.warnings: list[str] = []
        self.last_error_line: str | None = None
        self.cancelled = False
        self.result: ProcessResult | None = None
        self.cancel_file = Path(tempfile.gettempdir()) / f"lunglivseg-cancel-{uuid.uuid4().hex}"
        env = {**(os.environ if env is None else env), events.CANCEL_FILE_ENV: str(self.cancel_file)}
        self.process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=env,
            **popen_options(),
        )
        self.open_streams = 2
        for name, stream in ((_STDOUT, self.process.stdout), (_STDERR, self.process.stderr)):
            threading.Thread(target=_read_lines, args=(name, stream, self.lines), daemon=True).start()

    def poll(self) -> None:
        while self.result is None:
            try:
                stream, line = self.lines.get_nowait()
            except queue.Empty:
                break
            self.handle(stream, line)
        if self.result is None and self.open_streams == 0 and self.process.poll() is not None:
            self.finish(self.process.returncode)

    def handle(self, stream: str, line: str | None) -> None:
        if line is None:
            self.open_streams -= 1
            return
        event = parse_line(line) if stream == _STDOUT else None
        if event is not None:
            self.on_event(event)
            return
        if line.strip():
            self.log.append(line)
            logger.info("child process: %s", line)
            if stream == _STDERR:
                self.last_error_line = line.strip()
                if self.last_error_line.startswith(WARNING_PREFIX):
                    self.warnings.append(self.last_error_line.removeprefix(WARNING_PREFIX))

    def finish(self, exit_code: int) -> None:
        self.cancel_file.unlink(missing_ok=True)
        failed = exit_code != 0 and not self.cancelled
        error = (self.last_error_line or f"the process exited with status {exit_code}") if failed else None
        self.result = ProcessResult(
            exit_code=exit_code,
            cancelled=self.cancelled,
            error=error,
            warnings=tuple(self.warnings),
            log=tuple(self.log),
        )
        self.on_finished(self.result)

    def cancel(self, grace_s: float) -> None:
        """The cancel file and SIGTERM, once: a second SIGTERM (Cancel clicked twice) would make the
        CLI stop at once, as a second Ctrl-C does, instead of cleaning up. The kill after the
        grace period is set here."""
        if self.cancelled:
            return
        self.cancelled = True
        self.cancel_file.touch()  # reaches the CLI behind a launcher, and on Windows
        _signal_tree(self.process, graceful=True)
        threading.Thread(target=self._kill_after, args=(grace_s,), daemon=True).start()

    def _kill_after(self, grace_s: float) -> None:
        deadline = time.monotonic() + grace_s
        while _tree_alive(self.process) and time.monotonic() < deadline:
            time.sleep(_POLL_INTERVAL_S)
        _signal_tree(self.process, graceful=False)  # grandchildren may outlive the child


def _read_lines(name: str, stream: TextIO, lines: queue.Queue[tuple[str, str | None]]) -> None:
    """Reader thread: every line of one pipe, then None when the pipe closes."""
    for line in stream:
        lines.put((name, line.rstrip("\r\n")))
    lines.put((name, None))


class PopenOptions(TypedDict, total=False):
    """The keyword arguments of ``subprocess.Popen`` that ``popen_options`` sets."""

    creationflags: int
    start_new_session: bool


def popen_options(platform: str = os.name) -> PopenOptions:
    """Popen arguments for ``platform`` (``os.name``): the child leads a new process group, so its
    tree can be signalled; on Windows it also gets no console window (a GUI-started
    ``PythonSlicer.exe`` would otherwise open one for the whole run, and closing it fails the run).
    """
    if platform == "nt":
        return {"creationflags": _CREATE_NEW_PROCESS_GROUP | _CREATE_NO_WINDOW}
    return {"start_new_session": True}


def _signal_tree(process: subprocess.Popen[str], *, graceful: bool) -> None:
    if os.name == "nt":
        # No process groups to signal: taskkill walks the tree (/F forces, as the grace is over).
        force = [] if graceful else ["/F"]
        command = ["taskkill", *force, "/T", "/PID", str(process.pid)]
        subprocess.run(command, capture_output=True, check=False, creationflags=_CREATE_NO_WINDOW)
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the whole group is gone already
        os.killpg(process.pid, signal.SIGTERM if graceful else signal.SIGKILL)


def _tree_alive(process: subprocess.Popen[str]) -> bool:
    """Whether anything of the child's tree still runs: on POSIX any process of its group (the
    interpreter behind a launcher outlives the launcher); on Windows the child itself."""
    if os.name == "nt":
        return process.poll() is None
    try:
        os.killpg(process.pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def slicer_python() -> str:
    """Slicer's own interpreter (``PythonSlicer``) when running inside Slicer, else this Python."""
    return shutil.which("PythonSlicer") or sys.executable


def child_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The current environment with both packages importable, output unbuffered and UTF-8.

    Inside Slicer the library lives in the module folder, which is on Slicer's ``sys.path`` but
    not on the path of a fresh ``PythonSlicer``. UTF-8 whatever the locale (a Windows code page):
    error lines name the user's files, and the runner decodes them as UTF-8.
    """
    env = dict(os.environ if base is None else base)
    paths = [*map(str, python_path_entries()), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONUTF8"] = "1"
    return env


@dataclass(frozen=True)
class SegmentRequest:
    """One ``lunglivseg segment`` command for a child process.

    ``output_format`` (e.g. ``.seg.nrrd``) applies when the input is a folder of images.
    """

    input_path: str | Path
    output_path: str | Path
    model: str
    device: str = "auto"
    output_format: str | None = None
    overwrite: bool = False


def segmentation_command(python: str, request: SegmentRequest) -> list[str]:
    """``python -m LungLiverSegLib.cli segment INPUT OUTPUT ... --progress json``."""
    paths = [str(request.input_path), str(request.output_path)]
    command = [python, "-m", "LungLiverSegLib.cli", "segment", *paths]
    command += ["--model", request.model, "--device", request.device, "--progress", "json"]
    if request.output_format is not None:
        command += ["--format", request.output_format]
    if request.overwrite:
        command.append("--overwrite")
    return command


def training_command(python: str, request: TrainRequest) -> list[str]:
    """``python -m LungLiverSegTraining train <request's options> --progress json``.

    Training's own composition root, so that ``train`` exists without package metadata (an
    installed extension has none).
    """
    request = replace(request, progress="json")
    return [python, "-m", "LungLiverSegTraining", "train", *request.to_argv()]
