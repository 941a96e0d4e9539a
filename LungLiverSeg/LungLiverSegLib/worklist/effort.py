"""Is correcting still paying off? The correction effort of the approved cases, the running mean
over the last few, the mean per model (before and after each retrain), and the advice the front
ends show: when to retrain, and when retraining stopped reducing the effort.

The effort of a case is what the export measured between the model's proposal and the approved
labels: the changed volume (mL, summed over segments) and the Dice (mean over segments).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from statistics import fmean

from LungLiverSegLib.svg_plot import Series, line_chart
from LungLiverSegLib.worklist.store import APPROVED, Case

WINDOW = 4
"""The running mean covers the last this many approvals."""
STALL_FRACTION = 0.1
"""A retrain "reduced the effort" when the mean changed mL dropped by more than this fraction."""
STALL_RETRAINS = 2
"""After this many retrains in a row that did not reduce the effort, the advice says so."""
CHANGED_COLOUR, DICE_COLOUR = "#ef8a62", "#67a9cf"


@dataclass(frozen=True)
class Effort:
    """One approved case's correction: changed mL (all segments) and mean Dice, and the model
    generation that proposed it."""

    case_id: str
    generation: int | None
    changed_ml: float
    dice: float


@dataclass(frozen=True)
class GenerationEffort:
    """The mean effort of the cases one model (generation) proposed."""

    generation: int
    model: str
    cases: int
    changed_ml: float
    dice: float


def case_effort(case: Case) -> tuple[float, float] | None:
    """A case's correction: changed mL summed over its segments and their mean Dice (None when it
    has no measured correction)."""
    if not case.effort:
        return None
    values = case.effort.values()
    return sum(float(v["changed_ml"]) for v in values), fmean(float(v["dice"]) for v in values)


def efforts(cases: list[Case]) -> list[Effort]:
    """The approved cases with a measured correction, in the order they were approved (cases
    annotated from scratch have no proposal, hence no effort)."""
    approved = sorted((c for c in cases if c.state == APPROVED), key=lambda c: c.approved_at or "")
    return [
        Effort(case.case_id, case.generation, *effort)
        for case in approved
        if (effort := case_effort(case)) is not None
    ]


def running_mean(points: list[Effort], window: int = WINDOW) -> list[tuple[int, float, float]]:
    """``(approval number from 1, mean changed mL, mean Dice)`` over the last ``window`` approvals."""
    means = []
    for end in range(1, len(points) + 1):
        last = points[max(0, end - window) : end]
        means.append((end, fmean(p.changed_ml for p in last), fmean(p.dice for p in last)))
    return means


def by_generation(points: list[Effort], models: list[tuple[int, str]]) -> list[GenerationEffort]:
    """The mean effort per model that proposed approved cases, oldest model first."""
    names = dict(models)
    result = []
    for generation in sorted({p.generation for p in points if p.generation is not None}):
        mine = [p for p in points if p.generation == generation]
        result.append(
            GenerationEffort(
                generation,
                names.get(generation, "?"),
                len(mine),
                fmean(p.changed_ml for p in mine),
                fmean(p.dice for p in mine),
            )
        )
    return result


def advice(points: list[Effort], models: list[tuple[int, str]], retrain_every: int) -> str:
    """One or two sentences: how many approvals until a retrain is worth it, and whether the last
    retrains still reduced the effort."""
    current = max((g for g, _ in models), default=0)
    since = sum(1 for p in points if p.generation == current)
    if since >= retrain_every:
        text = f"{since} cases approved with the current model: retrain now to use them."
    else:
        text = (
            f"{since} of {retrain_every} cases approved with the current model before a retrain is suggested."
        )
    stall = _stalled(by_generation(points, models))
    return f"{text} {stall}" if stall else text


def _stalled(means: list[GenerationEffort]) -> str:
    """Said when the last ``STALL_RETRAINS`` retrains each failed to cut the mean changed mL by
    ``STALL_FRACTION``: more corrections may no longer make the model better."""
    if len(means) < STALL_RETRAINS + 1:
        return ""
    last = means[-(STALL_RETRAINS + 1) :]
    if any(after.changed_ml < before.changed_ml * (1 - STALL_FRACTION) for before, after in pairwise(last)):
        return ""
    history = " -> ".join(f"{m.changed_ml:.1f}" for m in last)
    return (
        f"The last {STALL_RETRAINS} retrains did not reduce the correction effort ({history} mL changed per "
        "case): more corrections of this kind may no longer improve the model."
    )


def effort_svg(points: list[Effort], window: int = WINDOW) -> str:
    """The running mean of changed mL and of Dice against the approval number, with a dashed line
    where the cases of a new model (after a retrain) begin."""
    means = running_mean(points, window)
    changed = Series("changed mL", CHANGED_COLOUR, {n: ml for n, ml, _ in means})
    dice = Series("Dice", DICE_COLOUR, {n: dice for n, _, dice in means}, top=1.0)
    retrains = [n + 0.5 for n, (a, b) in enumerate(pairwise(points), start=1) if a.generation != b.generation]
    caption = f"mean of last {window}, case {len(points)}"
    return line_chart([changed, dice], caption, retrains) if points else ""
