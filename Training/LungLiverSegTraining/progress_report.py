"""What a training run tells the outside world: progress with ETA, curves, TensorBoard.

* ``bar``: one updating text line on stderr (epoch, step, loss, ETA) and a line per validation;
* ``json``: the JSON lines of ``LungLiverSegLib.cli.events`` on stdout (step, validation, epoch,
  done), for the Slicer module and other programs;
* ``curves.png``: loss and validation Dice per epoch, rewritten at every validation;
* TensorBoard event files, only when ``torch.utils.tensorboard`` imports (it needs the optional
  ``tensorboard`` package, which is deliberately not a dependency).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib
from LungLiverSegLib.cli.events import Event, TrainingDone, TrainingEpoch, TrainingStep, TrainingValidation
from LungLiverSegLib.evaluation.metrics import NSD_KEY, NSD_TOLERANCE_MM
from LungLiverSegLib.files import atomic_output
from LungLiverSegLib.tables import progress_bar

matplotlib.use("Agg")
import matplotlib.pyplot as plt

EventCallback = Callable[[dict[str, Any]], None]
"""Receives each event's JSON object (``Event.to_dict()``), as ``json`` mode prints it."""
BAR_WIDTH = 24
STEP_EVENT_INTERVAL_S = 0.5


class Reporter:
    """Turns training events into the chosen display, plus an optional Python callback.

    ``total_steps`` is the run's epochs times the steps of one epoch; ``done_steps`` those done
    before this process started (a resumed run).
    """

    def __init__(
        self,
        mode: str,
        total_steps: int,
        done_steps: int,
        callback: EventCallback | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.mode = mode
        self.total_steps = total_steps
        self.start_steps = done_steps
        self.callback = callback
        self.started = time.monotonic()
        self.last_step_event = 0.0
        self.tensorboard = _tensorboard_writer(log_dir) if log_dir is not None else None

    def eta_s(self, done_steps: int) -> float | None:
        """Extrapolated from the steps done in this process (a resumed run's own speed)."""
        done_here = done_steps - self.start_steps
        if done_here <= 0:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed / done_here * (self.total_steps - done_steps)

    def step(self, epoch: int, step: int, steps: int, loss: float, done_steps: int) -> None:
        """Step ``step`` of ``steps`` in ``epoch``; reported at most every STEP_EVENT_INTERVAL_S
        seconds, and always at the end of an epoch."""
        now = time.monotonic()
        last = done_steps == self.total_steps or step == steps
        if not last and now - self.last_step_event < STEP_EVENT_INTERVAL_S:
            return
        self.last_step_event = now
        eta = self.eta_s(done_steps)
        self._emit(
            TrainingStep(
                epoch=epoch,
                epochs=self.total_steps // steps,
                step=step,
                steps=steps,
                loss=round(loss, 5),
                fraction=round(done_steps / self.total_steps, 4),
                eta_s=None if eta is None else round(eta, 1),
            )
        )

    def epoch_end(self, record: dict[str, Any]) -> None:
        """The epoch's record (epoch, loss, lr, val: the validation scores or None, ...)."""
        if self.tensorboard is not None:
            self.tensorboard.add_scalar("loss/train", record["loss"], record["epoch"])
            self.tensorboard.add_scalar("lr", record["lr"], record["epoch"])
            for name, value in (record.get("val") or {}).get("dice", {}).items():
                self.tensorboard.add_scalar(f"dice/{name}", value, record["epoch"])
            self.tensorboard.flush()
        if record.get("val") is not None:
            self._emit(TrainingValidation.from_dict({"epoch": record["epoch"], **record["val"]}))
        self._emit(TrainingEpoch.from_dict({k: v for k, v in record.items() if k != "val"}))

    def done(self, summary: dict[str, Any]) -> None:
        """The exported bundle and the best epoch (``TrainingDone``'s fields)."""
        if self.tensorboard is not None:
            self.tensorboard.close()
        self._emit(TrainingDone(**summary))

    def _emit(self, event: Event) -> None:
        if self.callback is not None:
            self.callback(event.to_dict())
        if self.mode == "json":
            print(event.to_json(), flush=True)
        elif self.mode == "bar":
            _print_bar(event)


def _print_bar(event: Event) -> None:
    """Steps redraw one line on stderr; a validation and the end each get a line of their own."""
    match event:
        case TrainingStep():
            eta = "--" if event.eta_s is None else f"{event.eta_s:.0f}s"
            print(
                f"\repoch {event.epoch:4d} step {event.step:4d}/{event.steps:<4d} "
                f"{progress_bar(event.fraction, BAR_WIDTH)} loss {event.loss:.4f} ETA {eta:>6}",
                end="",
                file=sys.stderr,
                flush=True,
            )
        case TrainingValidation():
            dice = ", ".join(f"{name} {value:.3f}" for name, value in event.dice.items())
            print(
                f"\nvalidation after epoch {event.epoch}: Dice {dice} (mean {event.mean_dice:.3f})",
                file=sys.stderr,
                flush=True,
            )
        case TrainingDone():
            print(
                f"\nbest mean Dice {event.best_mean_dice:.3f} at epoch {event.best_epoch}; "
                f"bundle: {event.bundle}",
                file=sys.stderr,
                flush=True,
            )


def _tensorboard_writer(log_dir: Path) -> Any | None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(log_dir))


def write_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Plot training loss and validation Dice per epoch into ``path`` (atomically replaced)."""
    figure, (loss_axes, dice_axes) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axes.plot([r["epoch"] for r in history], [r["loss"] for r in history], label="train loss")
    loss_axes.set(xlabel="epoch", ylabel="DiceCE loss", title="training loss")
    validated = [r for r in history if r.get("val")]
    names = list(validated[0]["val"]["dice"]) if validated else []
    for name in names:
        dice_axes.plot(
            [r["epoch"] for r in validated],
            [r["val"]["dice"][name] for r in validated],
            marker="o",
            label=f"Dice {name}",
        )
        dice_axes.plot(
            [r["epoch"] for r in validated],
            [r["val"][NSD_KEY][name] for r in validated],
            linestyle="--",
            label=f"NSD@{NSD_TOLERANCE_MM:g}mm {name}",
        )
    dice_axes.set(xlabel="epoch", ylabel="score", ylim=(0, 1), title="validation")
    for axes in (loss_axes, dice_axes):
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend(fontsize=8)
    figure.tight_layout()
    with atomic_output(path) as temporary:  # keeps the ".png" that tells matplotlib the format
        figure.savefig(temporary, dpi=80)
    plt.close(figure)
