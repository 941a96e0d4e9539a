"""Proposals for every case of a worklist still waiting for one, with the model loaded once, so
that the person working through the list never waits for the model (``lunglivseg worklist``).

Each proposal is written atomically and then recorded; a stop (cancel, crash) loses at most the
case in hand, and a new run goes on with the cases still "new". The uncertainty scores that rank
the cases are the segmentation's own (``unsure_ratio``, ``histogram_distance``).
"""

from __future__ import annotations

from collections.abc import Callable

from LungLiverSegLib.api import save_labels, segment
from LungLiverSegLib.bundle.spec import ModelBundle
from LungLiverSegLib.progress import CancelToken, Progress
from LungLiverSegLib.segmentation.segment import STAGES, load_model
from LungLiverSegLib.worklist.scan import find_cases
from LungLiverSegLib.worklist.store import NEW, Case, Worklist

CaseProgress = Callable[[Case, int, int], Progress]
"""The ``Progress`` of a case, given the case, its number (from 1) and how many are to propose."""
CaseProposed = Callable[[Case], None]


def propose_all(  # noqa: PLR0913  (the worklist, then the run's options by keyword)
    worklist: Worklist,
    *,
    device: str = "auto",
    threads: int | None = None,
    cancel: CancelToken | None = None,
    progress: CaseProgress | None = None,
    on_proposed: CaseProposed | None = None,
    bundle: ModelBundle | None = None,
) -> int:
    """Scan the folder for new cases, then propose every case in state "new" with the worklist's
    current model (``bundle`` when the caller has it already: a bundle folder given by its path,
    which the catalogue name in the worklist does not find); returns how many were proposed."""
    settings = worklist.settings()
    worklist.add(find_cases(settings.images))
    worklist.reconcile()
    waiting = [case for case in worklist.cases() if case.state == NEW]
    if not waiting:
        return 0
    loaded = load_model(bundle or settings.model, device, threads)
    key = f"{loaded.bundle.name}@{loaded.bundle.version}"
    for number, case in enumerate(waiting, start=1):
        case_progress = progress(case, number, len(waiting)) if progress else Progress(None, cancel, STAGES)
        labels = segment(
            settings.images / case.source, None, loaded, series_uid=case.series_uid, progress=case_progress
        )
        save_labels(worklist.proposal_path(case.case_id), labels, loaded, overwrite=True)
        unsure = float(labels.metadata.get("unsure_ratio", 0.0))
        distance = float(labels.metadata.get("histogram_distance", 0.0))
        worklist.record_proposal(case.case_id, key, unsure, distance)
        if on_proposed is not None:
            on_proposed(worklist.case(case.case_id))
    return len(waiting)
