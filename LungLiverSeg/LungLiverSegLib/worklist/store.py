"""The worklist of a folder of unlabeled scans: one SQLite database beside the dataset it fills.

SQLite because two front ends (the Slicer module and the browser app) and the proposing child may
write at once, and a crash or ``kill -9`` must never lose or duplicate a case: every change is one
transaction (``BEGIN IMMEDIATE``, write-ahead log), so a reader sees a case before or after a
change, never half of it. A case is claimed by one owner at a time (``claim_next``), so two people
never get the same scan. Approval writes the dataset first (``export_case``, atomic) and the
worklist second; ``reconcile`` marks approved what the dataset holds but the worklist missed
(killed in between), so an approved case is never lost nor approved twice.

Layout, beside ``<dataset>``: ``<dataset>.worklist/worklist.sqlite`` and ``proposals/<case>.seg.nrrd``.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from LungLiverSegLib.dataset.export import CaseRecord, DatasetExportError, read_dataset
from LungLiverSegLib.errors import LungLiverSegError
from LungLiverSegLib.imageio import SEGMENTATION_SUFFIX

NEW, PROPOSED, IN_PROGRESS, APPROVED, SKIPPED = "new", "proposed", "in progress", "approved", "skipped"
STATES = (NEW, PROPOSED, IN_PROGRESS, APPROVED, SKIPPED)
UNCERTAINTY, FOLDER_ORDER, RANDOM = "uncertainty", "folder", "random"
STRATEGIES = (UNCERTAINTY, FOLDER_ORDER, RANDOM)
WORKLIST_SUFFIX = ".worklist"
DATABASE = "worklist.sqlite"
PROPOSALS = "proposals"
PROPOSAL_SUFFIX = SEGMENTATION_SUFFIX
BUSY_TIMEOUT_S = 30.0
"""How long a writer waits for another's transaction (they last milliseconds) before giving up."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cases (
    case_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    series_uid TEXT,
    position INTEGER NOT NULL,
    state TEXT NOT NULL,
    model TEXT,
    unsure_ratio REAL,
    histogram_distance REAL,
    owner TEXT,
    skip_reason TEXT,
    effort TEXT,
    generation INTEGER,
    approved_at TEXT
);
CREATE TABLE IF NOT EXISTS models (
    generation INTEGER PRIMARY KEY, model TEXT NOT NULL, installed_at TEXT NOT NULL
);
"""


class WorklistError(LungLiverSegError):
    """A worklist that cannot be made or used as asked (no such case, a case in another state)."""


@dataclass(frozen=True)
class Settings:
    """What a worklist was made with: the images folder, the current model and generation (how many
    models proposed so far: 0 the first), the ranking strategy and seed, and after how many
    approvals a retrain is suggested."""

    images: Path
    model: str
    generation: int
    strategy: str
    seed: int
    retrain_every: int


@dataclass(frozen=True)
class Case:
    """One scan of the folder and how far it got. ``source`` is relative to the images folder;
    ``effort`` is the export's correction record (segment -> dice, changed_ml, ...) once approved;
    ``generation`` the model generation that proposed what was approved."""

    case_id: str
    source: str
    series_uid: str | None
    position: int
    state: str
    model: str | None
    unsure_ratio: float | None
    histogram_distance: float | None
    owner: str | None
    skip_reason: str | None
    effort: dict[str, dict[str, Any]] | None
    generation: int | None
    approved_at: str | None


@dataclass(frozen=True)
class Found:
    """A case the folder scan found: a file or one DICOM series of a subfolder."""

    case_id: str
    source: str
    series_uid: str | None = None


def worklist_folder(dataset_dir: str | Path) -> Path:
    """``<dataset>.worklist`` beside the dataset (nnU-Net reads the dataset folder: nothing else in it)."""
    dataset = Path(dataset_dir)
    return dataset.with_name(dataset.name + WORKLIST_SUFFIX)


class Worklist:
    """The cases of one images folder for one dataset; each method is one transaction."""

    def __init__(self, dataset_dir: str | Path) -> None:
        self.dataset = Path(dataset_dir)
        self.folder = worklist_folder(self.dataset)
        if not (self.folder / DATABASE).is_file():
            raise WorklistError(f"{self.dataset}: no worklist yet (start one on a folder of images)")

    @classmethod
    def create(  # noqa: PLR0913  (the worklist's settings, by keyword)
        cls,
        dataset_dir: str | Path,
        images: str | Path,
        model: str,
        *,
        strategy: str = UNCERTAINTY,
        seed: int = 0,
        retrain_every: int = 4,
    ) -> Worklist:
        """Make the worklist (or open it when it exists for the same images folder)."""
        if strategy not in STRATEGIES:
            raise WorklistError(f"ranking {strategy!r}: expected one of {', '.join(STRATEGIES)}")
        if retrain_every < 1:
            raise WorklistError("retrain_every must be at least 1")
        folder = worklist_folder(dataset_dir)
        (folder / PROPOSALS).mkdir(parents=True, exist_ok=True)
        images = Path(images).resolve()
        with _transaction(folder / DATABASE, create=True):
            pass  # the database and its tables
        worklist = cls(dataset_dir)
        with worklist._write() as db:
            existing = dict(db.execute("SELECT key, value FROM settings").fetchall())
            if existing and existing["images"] != str(images):
                raise WorklistError(f"{folder}: a worklist of another folder ({existing['images']})")
            if not existing:
                values = {"images": str(images), "model": model, "generation": "0", "strategy": strategy}
                values |= {"seed": str(seed), "retrain_every": str(retrain_every)}
                db.executemany("INSERT INTO settings VALUES (?, ?)", values.items())
                db.execute("INSERT INTO models VALUES (0, ?, ?)", (model, _now()))
        return worklist

    # --- reading -----------------------------------------------------------------------------

    def settings(self) -> Settings:
        with self._read() as db:
            return _settings_in(db)

    def cases(self) -> list[Case]:
        """Every case, ranked: the order "Next case" follows (approved and skipped ones last)."""
        with self._read() as db:
            return _ranked_in(db)

    def case(self, case_id: str) -> Case:
        with self._read() as db:
            row = db.execute("SELECT * FROM cases WHERE case_id = ?", (case_id,)).fetchone()
        if row is None:
            raise WorklistError(f"no case {case_id!r} in the worklist")
        return _case(row)

    def models(self) -> list[tuple[int, str]]:
        """``(generation, model)`` of every model that proposed, oldest first."""
        with self._read() as db:
            return [(g, m) for g, m in db.execute("SELECT generation, model FROM models ORDER BY generation")]

    def proposal_path(self, case_id: str) -> Path:
        return self.folder / PROPOSALS / f"{case_id}{PROPOSAL_SUFFIX}"

    # --- writing -----------------------------------------------------------------------------

    def add(self, found: list[Found]) -> int:
        """Add the cases a scan found that are not there yet (in folder order); returns how many."""
        with self._write() as db:
            start = db.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM cases").fetchone()[0]
            known = {row[0] for row in db.execute("SELECT case_id FROM cases")}
            new = [case for case in found if case.case_id not in known]
            db.executemany(
                "INSERT INTO cases (case_id, source, series_uid, position, state) VALUES (?, ?, ?, ?, ?)",
                [(c.case_id, c.source, c.series_uid, start + i, NEW) for i, c in enumerate(new)],
            )
        return len(new)

    def record_proposal(
        self, case_id: str, model: str, unsure_ratio: float, histogram_distance: float
    ) -> None:
        """A proposal was written (``proposal_path``): the case is ready to be worked on."""
        with self._write() as db:
            generation = _settings_in(db).generation
            db.execute(
                "UPDATE cases SET state = ?, model = ?, generation = ?, unsure_ratio = ?, "
                "histogram_distance = ? WHERE case_id = ? AND state = ?",
                (PROPOSED, model, generation, unsure_ratio, histogram_distance, case_id, NEW),
            )

    def claim_next(self, owner: str) -> Case | None:
        """The owner's case in progress, else the best-ranked proposed case, now the owner's; None
        when no proposed case is left (some may still be waiting for their proposal)."""
        with self._write() as db:
            mine = db.execute(
                "SELECT * FROM cases WHERE state = ? AND owner = ?", (IN_PROGRESS, owner)
            ).fetchone()
            if mine is not None:
                return _case(mine)
            # ranked among all cases, as ``cases()`` lists them (a seeded shuffle of only the
            # proposed ones would hand them out in another order than the list shows)
            chosen = next((case for case in _ranked_in(db) if case.state == PROPOSED), None)
            if chosen is None:
                return None
            db.execute(
                "UPDATE cases SET state = ?, owner = ? WHERE case_id = ?",
                (IN_PROGRESS, owner, chosen.case_id),
            )
        return dataclasses.replace(chosen, state=IN_PROGRESS, owner=owner)

    def release(self, case_id: str, owner: str) -> None:
        """Give a claimed case back (the owner closed it without a decision)."""
        with self._write() as db:
            db.execute(
                "UPDATE cases SET state = ?, owner = NULL WHERE case_id = ? AND state = ? AND owner = ?",
                (PROPOSED, case_id, IN_PROGRESS, owner),
            )

    def approve(self, case_id: str, record: CaseRecord) -> None:
        """The case was exported (``record``): approved, with its correction effort and generation."""
        with self._write() as db:
            self._approve_in(db, case_id, record)

    def skip(self, case_id: str, reason: str) -> None:
        if not reason.strip():
            raise WorklistError("say why the case is skipped (it is kept with the reason)")
        with self._write() as db:
            changed = db.execute(
                "UPDATE cases SET state = ?, skip_reason = ?, owner = NULL "
                "WHERE case_id = ? AND state IN (?, ?, ?)",
                (SKIPPED, reason.strip(), case_id, NEW, PROPOSED, IN_PROGRESS),
            ).rowcount
        if not changed:
            raise WorklistError(f"case {case_id!r} is {self.case(case_id).state}: it cannot be skipped")

    def model_installed(self, model: str) -> None:
        """A new model (a retrain): the next generation. Cases proposed by the old model and not
        yet worked on go back to "new", so they are proposed, and ranked, again by the new one."""
        with self._write() as db:
            generation = _settings_in(db).generation + 1
            db.execute("UPDATE settings SET value = ? WHERE key = 'generation'", (str(generation),))
            db.execute("UPDATE settings SET value = ? WHERE key = 'model'", (model,))
            db.execute("INSERT INTO models VALUES (?, ?, ?)", (generation, model, _now()))
            db.execute(
                "UPDATE cases SET state = ?, generation = NULL, unsure_ratio = NULL, "
                "histogram_distance = NULL WHERE state = ?",
                (NEW, PROPOSED),
            )

    def reconcile(self) -> int:
        """Mark approved the cases the dataset holds but the worklist does not (a crash between the
        two writes); returns how many."""
        try:
            records = read_dataset(self.dataset).cases
        except DatasetExportError:
            return 0  # nothing exported yet
        with self._write() as db:
            pending = {
                row[0] for row in db.execute("SELECT case_id FROM cases WHERE state != ?", (APPROVED,))
            }
            missed = [record for record in records if record.case_id in pending]
            for record in missed:
                self._approve_in(db, record.case_id, record)
        return len(missed)

    # --- helpers -----------------------------------------------------------------------------

    def _approve_in(self, db: sqlite3.Connection, case_id: str, record: CaseRecord) -> None:
        """The case keeps the generation that proposed it: the effort is that model's."""
        changed = db.execute(
            "UPDATE cases SET state = ?, owner = NULL, effort = ?, approved_at = ? WHERE case_id = ?",
            (APPROVED, json.dumps(record.correction), record.exported_at, case_id),
        ).rowcount
        if not changed:
            raise WorklistError(f"no case {case_id!r} in the worklist")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with _transaction(self.folder / DATABASE) as db:
            yield db

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with _transaction(self.folder / DATABASE, write=False) as db:
            yield db


def rank(cases: list[Case], strategy: str, seed: int) -> list[Case]:
    """Open cases first (in progress, proposed, new), each ranked by ``strategy``: most uncertain
    first (unsure ratio, then distance from the training images' intensities; unscored last), in
    folder order, or shuffled by ``seed`` (the same order every time); then approved and skipped."""
    order = {IN_PROGRESS: 0, PROPOSED: 1, NEW: 2, APPROVED: 3, SKIPPED: 4}
    random_rank: dict[str, int] = {}
    if strategy == RANDOM:
        shuffled = list(range(len(cases)))
        random.Random(seed).shuffle(shuffled)
        in_folder_order = sorted(cases, key=lambda c: c.position)
        random_rank = {case.case_id: shuffled[i] for i, case in enumerate(in_folder_order)}

    def key(case: Case) -> tuple[Any, ...]:
        if strategy == UNCERTAINTY:
            scored = case.unsure_ratio is not None
            within: tuple[Any, ...] = (
                not scored,
                -(case.unsure_ratio or 0.0),
                -(case.histogram_distance or 0.0),
                case.position,
            )
        elif strategy == RANDOM:
            within = (random_rank[case.case_id],)
        else:
            within = (case.position,)
        return (order[case.state], *within)

    return sorted(cases, key=key)


def _ranked_in(db: sqlite3.Connection) -> list[Case]:
    """Every case, ranked by the worklist's strategy, read in the caller's transaction."""
    settings = _settings_in(db)
    return rank([_case(row) for row in db.execute("SELECT * FROM cases")], settings.strategy, settings.seed)


@contextmanager
def _transaction(path: Path, *, write: bool = True, create: bool = False) -> Iterator[sqlite3.Connection]:
    """One connection, one transaction: committed on success, rolled back on any error. The
    write-ahead log and the tables are set up once, by ``create`` (the journal mode stays with the
    file); ``synchronous`` holds for one connection, so every connection sets it."""
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        db.row_factory = sqlite3.Row
        if create:
            db.execute("PRAGMA journal_mode = WAL")
            db.executescript(_SCHEMA)
        db.execute("PRAGMA synchronous = FULL")
        db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    except sqlite3.Error as error:
        raise WorklistError(f"{path}: {error}") from None
    finally:
        db.close()


def _settings_in(db: sqlite3.Connection) -> Settings:
    values = dict(db.execute("SELECT key, value FROM settings").fetchall())
    return Settings(
        Path(values["images"]),
        values["model"],
        int(values["generation"]),
        values["strategy"],
        int(values["seed"]),
        int(values["retrain_every"]),
    )


def _case(row: sqlite3.Row) -> Case:
    values = dict(row)
    values["effort"] = json.loads(values["effort"]) if values["effort"] else None
    return Case(**values)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
