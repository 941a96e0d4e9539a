"""The page's Worklist section: the Slicer module's ``WorklistSession`` (the same object) on the
page's session, with its folder inside ``--data``, its dataset inside ``--work`` and its outcome as
the page's one-line message.

**Open worklist** proposes every case of the folder in the background (progress, Cancel); **Next
case** loads the best-ranked proposed case with its proposal; **Approve** exports it and loads the
next; **Skip** records why. A model that Train installs proposes the open cases again.
"""

from __future__ import annotations

from LungLiverSegLib.browser.security import AccessError, confined
from LungLiverSegLib.browser.session import AppSession
from LungLiverSegLib.errors import LungLiverSegError
from LungLiverSegLib.slicer_module.logic import ExportOutcome
from LungLiverSegLib.slicer_module.process import ProcessResult
from LungLiverSegLib.slicer_module.worklist_logic import WorklistSession
from LungLiverSegLib.worklist.store import STRATEGIES

PROPOSE = "propose"


class WorklistPage:
    """The page's worklist actions; each ends in the page's message and table."""

    def __init__(self, session: AppSession) -> None:
        self.session = session
        self.worklist = WorklistSession(session.logic, "browser")
        session.on_model_installed = self._model_installed

    def open(self, folder: str, dataset: str, ranking: str, retrain_every: int) -> None:
        """Open the worklist of a folder of the data folder for a dataset of the work folder, and
        propose its cases with the chosen model."""

        def start() -> None:
            if ranking not in STRATEGIES:
                raise AccessError(f"ranking {ranking!r}: one of {', '.join(STRATEGIES)}")
            images = confined(self.session.settings.data, folder) if folder else self.session.settings.data
            if not images.is_dir():
                raise AccessError(f"{folder!r} is not a folder")
            self.worklist.release()
            model = self.session.page.model
            self.worklist.open(
                images,
                self.session.dataset_folder(dataset),
                model,
                ranking=ranking,
                retrain_every=retrain_every,
            )
            self.refresh()
            self._propose()

        self.session.attempt(start)

    def _propose(self) -> None:
        self.worklist.propose(
            self.session.device,
            self.session.show_progress,
            self._proposed,
            on_case_done=lambda _: self.refresh(),
        )
        self.session.start_job(PROPOSE, "Proposing the worklist's cases")

    def _proposed(self, result: ProcessResult) -> None:
        self.refresh()
        if not self.session.end_job(result, "Proposing"):
            ready = sum(1 for row in self.session.page.worklist if row["state"] == "proposed")
            self.session.say(f"Worklist ready: {ready} cases proposed; click Next case", *result.warnings)

    def next_case(self) -> None:
        """Load the next case (the one in hand stays until it is approved or skipped)."""

        def load() -> None:
            if self.worklist.loaded is None:
                self.session.scene.Clear(0)
            loaded = self.worklist.next_case()
            self.refresh()
            if loaded is None:
                self.session.say("No proposed case left: approve or skip the rest, or wait for proposals")
                return
            self.session.show(loaded.volume_node, loaded.segmentation_node)
            case = loaded.case
            unsure = "" if case.unsure_ratio is None else f", unsure {case.unsure_ratio:.3f}"
            self.session.say(
                f"Case {case.case_id} (proposed by {case.model}{unsure}): correct it, then Approve"
            )

        self.session.attempt(load)

    def approve(self) -> None:
        """Export the case in hand as corrected; then the next case comes."""

        def start() -> None:
            if self.worklist.loaded is None:
                raise LungLiverSegError("no case in hand: click Next case first")
            self.worklist.approve(self._approved)
            self.session.start_job("export", f"Approving {self.worklist.loaded.case.case_id}")

        self.session.attempt(start)

    def _approved(self, outcome: ExportOutcome) -> None:
        self.refresh()
        if self.session.end_job(outcome, "Approval") or outcome.record is None:
            return
        record = outcome.record
        self.next_case()
        effort = "; ".join(
            f"{name} Dice {values['dice']:.3f}, {values['changed_ml']:.1f} mL changed"
            for name, values in (record.correction or {}).items()
        )
        self.session.say(f"Approved {record.case_id} ({effort}). {self.session.page.message}")

    def skip(self, reason: str) -> None:
        def skip_case() -> None:
            case_id = self.worklist.loaded.case.case_id if self.worklist.loaded else ""
            self.worklist.skip(reason)
            self.refresh()
            self.next_case()
            self.session.say(f"Skipped {case_id} ({reason.strip()}). {self.session.page.message}")

        self.session.attempt(skip_case)

    def refresh(self) -> None:
        page = self.session.page
        if self.worklist.worklist is None:
            return
        page.worklist = self.worklist.rows()
        page.effort_svg, page.advice = self.worklist.effort()
        page.case = self.worklist.loaded.case.case_id if self.worklist.loaded else ""

    def _model_installed(self, model: str) -> None:
        """A retrain's model proposes the cases not worked on yet (and ranks them again)."""
        if self.worklist.worklist is None:
            return
        self.worklist.model_installed(model)
        self.refresh()
        self.session.attempt(self._propose)
