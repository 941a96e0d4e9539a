"""The Worklist section's work on a scene, without Qt: the same object under the Slicer module and
the browser app.

It opens (or starts) the worklist of a folder for a dataset, runs the proposing child
(``lunglivseg worklist ... --progress json``) on the scene logic's runner, and works case by case:
**Next case** claims the best-ranked proposed case and loads its image with the proposal already in
a segmentation node (kept as the node's proposal, so the export measures the correction); **Approve**
exports the corrected labels through the scene logic and records the case approved with its effort;
**Skip** records why. After a retrain (``model_installed``), the open cases are proposed again by
the new model.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from LungLiverSegLib.bundle.catalogue import find_model
from LungLiverSegLib.errors import LungLiverSegError
from LungLiverSegLib.imageio import read_image, read_segmentation
from LungLiverSegLib.slicer_module import mrml_bridge
from LungLiverSegLib.slicer_module.logic import ExportOutcome, SceneLogic
from LungLiverSegLib.slicer_module.process import (
    CaseDone,
    ProcessEvent,
    ProcessResult,
    ProgressUpdate,
    ProgressUpdateCallback,
    child_environment,
)
from LungLiverSegLib.worklist.effort import advice, case_effort, effort_svg, efforts
from LungLiverSegLib.worklist.store import IN_PROGRESS, UNCERTAINTY, Case, Worklist

if TYPE_CHECKING:
    import slicer

ProposalsFinishedCallback = Callable[[ProcessResult], None]
CaseProposedCallback = Callable[[CaseDone], None]
CaseApprovedCallback = Callable[[ExportOutcome], None]


@dataclass(frozen=True)
class LoadedCase:
    """The case in hand: its worklist entry and the nodes it was loaded into."""

    case: Case
    volume_node: slicer.vtkMRMLScalarVolumeNode
    segmentation_node: slicer.vtkMRMLSegmentationNode


def owner_name(front_end: str) -> str:
    """Who holds a claimed case: the front end, machine and process (two windows never share one)."""
    return f"{front_end}@{socket.gethostname()}:{os.getpid()}"


def _owner_is_gone(owner: str) -> bool:
    """Whether a claim's owner was a process of this machine that no longer runs (another
    machine's claims are never taken over: it may still be working)."""
    host, _, pid = owner.rpartition("@")[2].rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def worklist_command(  # noqa: PLR0913  (the command's options)
    python: str, images: Path, model: str, dataset: Path, device: str = "auto", ranking: str = UNCERTAINTY
) -> list[str]:
    """``python -m LungLiverSegLib.cli worklist IMAGES --model M --dataset D --progress json``."""
    command = [python, "-m", "LungLiverSegLib.cli", "worklist", str(images), "--model", model]
    return [
        *command,
        "--dataset",
        str(dataset),
        "--device",
        device,
        "--ranking",
        ranking,
        "--progress",
        "json",
    ]


class WorklistSession:
    """One front end's way through one worklist (one case in hand at a time)."""

    def __init__(self, logic: SceneLogic, front_end: str) -> None:
        self.logic = logic
        self.owner = owner_name(front_end)
        self.worklist: Worklist | None = None
        self.loaded: LoadedCase | None = None

    def open(
        self,
        images: str | Path,
        dataset: str | Path,
        model: str,
        *,
        ranking: str = UNCERTAINTY,
        retrain_every: int = 4,
    ) -> Worklist:
        """The worklist of ``images`` for ``dataset`` (made on first use), reconciled with the
        dataset (cases exported but not yet marked approved, after a crash); cases claimed by a
        process of this machine that is gone (a crashed window) go back to the list."""
        # the exact model (``name@version``), as the proposing child names it: the same model
        # spelled without its version must not count as a retrain (a new generation)
        bundle = find_model(model)
        key = f"{bundle.name}@{bundle.version}"
        self.worklist = Worklist.create(dataset, images, key, strategy=ranking, retrain_every=retrain_every)
        self.worklist.reconcile()
        for case in self.worklist.cases():
            if case.state == IN_PROGRESS and case.owner and _owner_is_gone(case.owner):
                self.worklist.release(case.case_id, case.owner)  # its window crashed or was killed
        return self.worklist

    def propose(
        self,
        device: str = "auto",
        on_progress: ProgressUpdateCallback | None = None,
        on_finished: ProposalsFinishedCallback | None = None,
        on_case_done: CaseProposedCallback | None = None,
    ) -> None:
        """Propose every case still waiting, in a child process (model loaded once); each proposed
        case is ready for **Next case** as soon as its ``done`` line arrives (``on_case_done``)."""
        worklist = self._open_worklist()
        settings = worklist.settings()
        command = worklist_command(
            self.logic.python,
            settings.images,
            settings.model,
            worklist.dataset.resolve(),
            device,
            settings.strategy,
        )

        def on_event(event: ProcessEvent) -> None:
            if on_progress is not None and isinstance(event, ProgressUpdate):
                on_progress(event)
            elif on_case_done is not None and isinstance(event, CaseDone):
                on_case_done(event)

        def finished(result: ProcessResult) -> None:
            if on_finished is not None:
                on_finished(result)

        if self.logic.is_running:
            raise LungLiverSegError("a segmentation or training is running; propose the worklist after it")
        self.logic.runner.start(command, on_event, finished, env=child_environment())

    def next_case(self) -> LoadedCase | None:
        """Claim the best-ranked proposed case (or the one already in hand) and load it with its
        proposal; None when no proposed case is left."""
        worklist = self._open_worklist()
        case = worklist.claim_next(self.owner)
        if case is None:
            return None
        if self.loaded is not None and self.loaded.case.case_id == case.case_id:
            return self.loaded
        settings = worklist.settings()
        image = read_image(settings.images / case.source, case.series_uid)
        scene = self.logic.scene
        volume_node = mrml_bridge.volume_node_from_image(scene, image, case.case_id)
        labels, label_map = read_segmentation(worklist.proposal_path(case.case_id))
        node = mrml_bridge.segmentation_from_labels(
            labels, label_map, volume_node, into=f"{case.case_id} segmentation"
        )
        mrml_bridge.store_proposal(node, labels, volume_node, case.model or settings.model)
        self.loaded = LoadedCase(case, volume_node, node)
        return self.loaded

    def approve(self, on_finished: CaseApprovedCallback | None = None, *, wait: bool = False) -> None:
        """Export the case in hand (its segmentation node as corrected) and record it approved."""
        loaded = self._in_hand()
        worklist = self._open_worklist()

        def exported(outcome: ExportOutcome) -> None:
            if outcome.record is not None:
                worklist.approve(loaded.case.case_id, outcome.record)
                self.loaded = None
            if on_finished is not None:
                on_finished(outcome)

        self.logic.export_for_training(
            loaded.volume_node,
            loaded.segmentation_node,
            worklist.dataset,
            loaded.case.case_id,
            model_name=loaded.case.model,
            waitForCompletion=wait,
            on_finished=exported,
        )

    def skip(self, reason: str) -> None:
        loaded = self._in_hand()
        self._open_worklist().skip(loaded.case.case_id, reason)
        self.loaded = None

    def release(self) -> None:
        """Give the case in hand back to the list (closing it without a decision)."""
        if self.loaded is not None and self.worklist is not None:
            self.worklist.release(self.loaded.case.case_id, self.owner)
        self.loaded = None

    def model_installed(self, model: str) -> None:
        """A retrain installed ``model``: the open cases go back to be proposed by it."""
        self._open_worklist().model_installed(model)

    def rows(self) -> list[dict[str, Any]]:
        """The ranked table: case, state, uncertainty, and the correction once approved (changed mL
        over all segments, mean Dice: the numbers of the effort curve)."""
        return [_row(case) for case in self._open_worklist().cases()]

    def effort(self) -> tuple[str, str]:
        """The effort curve (SVG) and the advice line (when to retrain, whether it still helps)."""
        worklist = self._open_worklist()
        points = efforts(worklist.cases())
        return effort_svg(points), advice(points, worklist.models(), worklist.settings().retrain_every)

    def _open_worklist(self) -> Worklist:
        if self.worklist is None:
            raise LungLiverSegError("open a worklist first: a folder of images, a dataset and a model")
        return self.worklist

    def _in_hand(self) -> LoadedCase:
        if self.loaded is None:
            raise LungLiverSegError("no case in hand: click Next case first")
        return self.loaded


def _row(case: Case) -> dict[str, Any]:
    changed_ml, dice = case_effort(case) or (None, None)
    return {
        "case": case.case_id,
        "state": case.state,
        "unsure": case.unsure_ratio,
        "changed_ml": changed_ml,
        "dice": dice,
        "why": case.skip_reason or "",
    }
