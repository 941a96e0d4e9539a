"""Progress reporting with ETA, and cooperative cancellation from another thread.

Long work takes a ``Progress`` object and calls ``update(stage, stage_fraction)`` as it goes;
each call forwards the overall fraction and ETA to a callback and is a cancellation point: once a
``CancelToken`` was cancelled from another thread (a GUI button, a signal handler), the next
``update`` (or ``CancelToken.check``) raises ``Cancelled``. Both are plain Python with no
dependencies, so the CLI (which the Slicer module runs as a child process), the Python API and
the tests share them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from LungLiverSegLib.errors import Cancelled


@dataclass(frozen=True)
class ProgressEvent:
    """One report to an in-process callback: overall fraction done (0..1), a stage name and the
    estimated time left. A child process writes it as ``cli.events.SegmentationProgress``."""

    fraction: float
    stage: str
    elapsed_s: float
    eta_s: float | None


ProgressCallback = Callable[[ProgressEvent], None]


class CancelToken:
    """Thread-safe cancel flag; ``check()`` raises ``Cancelled`` once ``cancel()`` was called."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled by the user")


class Progress:
    """Turns stage-local progress into overall fraction + ETA and forwards it to a callback.

    Stages are given with weights (expected share of the run time) so that the overall
    fraction moves smoothly; the ETA extrapolates from the elapsed time and the fraction.
    """

    def __init__(
        self,
        callback: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        stages: dict[str, float] | None = None,
    ) -> None:
        self.callback = callback
        self.cancel = cancel or CancelToken()
        weights = stages or {"work": 1.0}
        total = sum(weights.values())
        self._starts: dict[str, float] = {}
        self._weights: dict[str, float] = {}
        acc = 0.0
        for name, weight in weights.items():
            self._starts[name] = acc / total
            self._weights[name] = weight / total
            acc += weight
        self._t0 = time.monotonic()
        self.fraction = 0.0

    def update(self, stage: str, stage_fraction: float) -> None:
        """Report that ``stage`` is ``stage_fraction`` done; also a cancellation point."""
        self.cancel.check()
        start = self._starts.get(stage, self.fraction)
        weight = self._weights.get(stage, 0.0)
        self.fraction = max(self.fraction, min(1.0, start + weight * min(max(stage_fraction, 0.0), 1.0)))
        elapsed = time.monotonic() - self._t0
        eta = elapsed * (1.0 - self.fraction) / self.fraction if self.fraction > 0.02 else None
        if self.callback is not None:
            self.callback(ProgressEvent(self.fraction, stage, elapsed, eta))


@dataclass
class StageClock:
    """Wall seconds spent in each named stage of one run, in the order the stages were entered.

    What a user or ``bench/bench_stages.py`` reads to see where a run's time went (is it the
    network, or everything around it?); a stage entered twice adds up.
    """

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
