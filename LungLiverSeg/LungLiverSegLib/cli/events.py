"""The JSON-lines protocol between a child process and its front end: the one place it is spelled.

With ``--progress json``, ``lunglivseg segment`` and ``lunglivseg train`` write one JSON object
per stdout line, its kind in ``"event"``. The producers (``cli/segment.py``; Training's
``progress_report.Reporter``) build the dataclasses below and print ``to_json()``; the consumer
(``slicer_module.process.parse_line``) reads lines back with ``from_json``. Other programs may
read these lines too, so their keys only ever grow.

Reading is lenient where it can be: a line that is not one of these events (a warning, a
traceback) reads as None, as does an event without the fields a front end shows; fields only
some readers want may be missing (None). Unknown keys are kept in ``extra`` where an event has
one (validation scores, epoch records: whatever Training measures) and ignored elsewhere.

Three progress types, three roles: ``progress.ProgressEvent`` is what library code reports to an
in-process callback; ``SegmentationProgress``/``TrainingStep`` here are what a child process
writes; ``slicer_module.process.ProgressUpdate`` is what a front end shows in its progress bar.

Cancel goes the other way: SIGTERM to the child's process group, and, because a launcher such
as Slicer's ``PythonSlicer`` may stand between the front end and the interpreter (and Windows has
no signal a windowless console process obeys), a file: the front end names it in the child's
``LUNGLIVSEG_CANCEL_FILE`` and creates it to cancel; the CLI watches for it.

Standard library only: front ends read this before torch is installed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from LungLiverSegLib.progress import ProgressEvent

CANCEL_FILE_ENV = "LUNGLIVSEG_CANCEL_FILE"
"""The environment variable naming the file whose creation cancels the child's job."""


def _optional(read: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else read(value)


# How a field of each declared type is read from JSON (the annotations are strings here).
_READERS: dict[str, Callable[[Any], Any]] = {
    "str": str,
    "int": int,
    "float": float,
    "int | None": _optional(int),
    "float | None": _optional(float),
    "dict[str, float]": lambda value: {str(name): float(number) for name, number in value.items()},
    "dict[str, Any]": dict,
}


class Event:
    """An event's JSON form: ``{"event": EVENT, **fields, **extra}``."""

    EVENT: ClassVar[str]
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]  # every event is a dataclass

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (also what Training's Python callback receives)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        extra = values.pop("extra", {})
        return {"event": self.EVENT, **values, **extra}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, message: Mapping[str, Any]) -> Self:
        """The event from its JSON object; KeyError, TypeError or ValueError when it is not one."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = {
            name: _READERS[str(known[name].type)](value)
            for name, value in message.items()
            if name in known and name != "extra"
        }
        missing = [
            f.name
            for f in known.values()
            if f.name not in values
            and f.name != "extra"
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise KeyError(f"{cls.EVENT} event without {', '.join(missing)}")
        if "extra" in known:
            values["extra"] = {k: v for k, v in message.items() if k not in known and k != "event"}
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class SegmentationProgress(Event):
    """How far the segmentation of one case is (a ``ProgressEvent`` plus the case's name)."""

    EVENT: ClassVar[str] = "progress"
    case: str = ""
    fraction: float
    stage: str
    elapsed_s: float | None = None
    eta_s: float | None = None

    @classmethod
    def of(cls, event: ProgressEvent, case: str) -> SegmentationProgress:
        """The line for ``event``, rounded to what a progress display can show."""
        eta = None if event.eta_s is None else round(event.eta_s, 1)
        return cls(
            case=case,
            fraction=round(event.fraction, 4),
            stage=event.stage,
            elapsed_s=round(event.elapsed_s, 2),
            eta_s=eta,
        )


@dataclass(frozen=True, kw_only=True)
class SegmentationDone(Event):
    """``input`` was segmented into ``output`` (written completely)."""

    EVENT: ClassVar[str] = "done"
    input: str = ""
    output: str


@dataclass(frozen=True, kw_only=True)
class TrainingStep(Event):
    """A training step: ``fraction`` of all ``epochs * steps`` done, the step's loss."""

    EVENT: ClassVar[str] = "step"
    epoch: int
    epochs: int | None = None
    step: int | None = None
    steps: int | None = None
    loss: float
    fraction: float
    eta_s: float | None = None


@dataclass(frozen=True, kw_only=True)
class TrainingValidation(Event):
    """The validation after an epoch: mean Dice, Dice per segment, and in ``extra`` whatever else
    Training measured (NSD per segment, case count, seconds per case, ...)."""

    EVENT: ClassVar[str] = "validation"
    epoch: int
    dice: dict[str, float]
    mean_dice: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class TrainingEpoch(Event):
    """The end of an epoch: its mean loss, the learning rate, and in ``extra`` the rest of the
    epoch's record (e.g. which weights it ended with)."""

    EVENT: ClassVar[str] = "epoch"
    epoch: int
    loss: float
    lr: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class TrainingDone(Event):
    """The run exported its best epoch as the bundle folder ``bundle``."""

    EVENT: ClassVar[str] = "done"
    bundle: str
    best_epoch: int | None = None
    best_mean_dice: float | None = None
    training_time_s: float | None = None


_BY_NAME: dict[str, type[Event]] = {
    kind.EVENT: kind for kind in (SegmentationProgress, TrainingStep, TrainingValidation, TrainingEpoch)
}


def from_json(line: str) -> Event | None:
    """The event one stdout line carries, or None for any other line.

    Both commands end with ``done``: training's names its ``bundle``, segmentation's its ``output``.
    """
    try:
        message = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(message, dict):
        return None
    name = message.get("event")
    if name == "done":
        kind: type[Event] | None = TrainingDone if "bundle" in message else SegmentationDone
    else:
        kind = _BY_NAME.get(str(name))
    if kind is None:
        return None
    try:
        return kind.from_dict(message)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
