"""Export for training: approved segmentations become an MSD / nnU-Net v2 dataset with provenance.

The Slicer module and ``lunglivseg export`` both call ``export_case``. Layout (docs/DATASET.md;
names, paths and dataset.json in ``layout``)::

    dataset.json                  nnU-Net v2 fields, MSD "training" list, "lunglivseg" section
    imagesTr/<case>_0000.nii.gz   the image
    labelsTr/<case>.nii.gz        the approved label (uint8)
    predictions/<case>.nii.gz     the model's proposal before correction, when there was one
    cases.jsonl                   one record per case: source, model, who/when, correction effort

``dataset.json`` is the commit point: a case belongs to the dataset when dataset.json lists it
and its image, label and record exist. An export writes the case's files first (label before
image, so readers that glob ``imagesTr`` never find an image without its label), then
cases.jsonl, then dataset.json, each atomically. A crash at any moment therefore leaves the
previous dataset intact; files or a record of a case that dataset.json does not list are debris
of an interrupted export, replaced by the next export of that id without ``overwrite``.
Overwriting first unlists the case, so a crash mid-overwrite never leaves a listed case whose
image and label come from two different exports.

Exports into one dataset take turns: each holds the dataset's lock (``LOCK_FILE``, an OS lock
that dies with its process) from reading dataset.json to writing it, and a second export waits
for it (``LOCK_WAIT_S``). Holding it, an export also removes the temporary files that killed
exports left: no other writer can be using them.
"""

from __future__ import annotations

import getpass
import json
import re
import warnings
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from statistics import fmean
from typing import Any, TypedDict

import numpy as np

from LungLiverSegLib.bundle.json_fields import JsonFields
from LungLiverSegLib.bundle.model_json import label_to_json, parse_labels
from LungLiverSegLib.bundle.spec import MAX_LABEL_VALUE
from LungLiverSegLib.dataset import layout
from LungLiverSegLib.dataset.layout import CASES_JSONL, DATASET_JSON
from LungLiverSegLib.errors import LungLiverSegError, LungLiverSegWarning
from LungLiverSegLib.evaluation.evaluate import json_safe
from LungLiverSegLib.evaluation.metrics import NSD_KEY, NSD_TOLERANCE_MM, mask_metrics
from LungLiverSegLib.files import exclusive_lock, is_hidden, remove_temporaries, write_text_atomic
from LungLiverSegLib.geometry import Image, grid_difference
from LungLiverSegLib.imageio import write_image
from LungLiverSegLib.labels import LabelMap
from LungLiverSegLib.progress import CancelToken
from LungLiverSegLib.tables import text_table

CASE_FOLDERS = (layout.IMAGES_FOLDER, layout.LABELS_FOLDER, layout.PREDICTIONS_FOLDER)
DATASET_PARTS = frozenset({DATASET_JSON, CASES_JSONL, *CASE_FOLDERS})
DESCRIPTION = "Segmentations approved in LungLiverSeg; the model proposals are in predictions/"
UNKNOWN_MODALITY = layout.CT_CHANNEL  # what every export wrote before the modality was passed in
OWN_SECTION = "lunglivseg"
MAX_CASE_ID_LENGTH = 100
NOT_CASE_ID_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")
LOCK_FILE = ".lunglivseg.lock"  # hidden: no reader takes it for data, and a new dataset may hold it
LOCK_WAIT_S = 60.0  # an export holds the lock for seconds (a large CT on a slow disk: tens)


class DatasetExportError(LungLiverSegError):
    """An export would break the dataset (label map, grid, case id, existing case) or cannot read it."""


class StaleTemporariesRemoved(LungLiverSegWarning):
    """An earlier export into this dataset was killed mid-write; its temporary files are removed."""


class ModelId(TypedDict):
    """The exact model that made a proposal, as a dataset case records it."""

    name: str
    version: str


@dataclass(frozen=True)
class CaseRecord:
    """One line of cases.jsonl: where a case came from and how much correction its proposal needed.

    ``correction`` maps segment name -> ``dice``, ``nsd@2mm``, ``hd95`` (mm, ``"inf"`` when one
    side is empty), ``changed_voxels`` and ``changed_ml`` between the proposal and the approved
    label; None when the case was annotated from scratch.
    """

    case_id: str
    source: dict[str, str]
    model: dict[str, str] | None
    exported_at: str
    user: str
    label_values: tuple[int, ...]
    correction: dict[str, dict[str, Any]] | None

    def to_json(self) -> dict[str, Any]:
        return json_safe({**asdict(self), "label_values": list(self.label_values)})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CaseRecord:
        return cls(**{**data, "label_values": tuple(data["label_values"])})


@dataclass(frozen=True)
class _Case:
    """One case on its way into the dataset: its labels checked to lie on the image's grid, as uint8."""

    case_id: str
    image: Image
    approved: Image
    proposal: Image | None


@dataclass(frozen=True)
class DatasetInfo:
    """An exported dataset as listed by its dataset.json, with each case's record."""

    root: Path
    name: str
    label_map: LabelMap
    cases: tuple[CaseRecord, ...]


# --- case ids --------------------------------------------------------------------------------


def sanitize_case_id(text: str) -> str:
    """A valid case id made from a volume or patient name (other characters become ``_``)."""
    cleaned = re.sub(r"\.{2,}", ".", NOT_CASE_ID_CHARACTERS.sub("_", text.strip())).lstrip(".")
    return cleaned[:MAX_CASE_ID_LENGTH] or "case"


def validate_case_id(case_id: str) -> str:
    """``case_id`` itself, or an error with the reason: ids become file names, so no paths."""
    problem = _case_id_problem(case_id)
    if problem is not None:
        suggestion = sanitize_case_id(case_id)
        raise DatasetExportError(f"case id {case_id!r} {problem}; for example {suggestion!r} would do")
    return case_id


def _case_id_problem(case_id: str) -> str | None:
    if not case_id:
        return "is empty"
    if len(case_id) > MAX_CASE_ID_LENGTH:
        return f"is longer than {MAX_CASE_ID_LENGTH} characters"
    if "/" in case_id or "\\" in case_id:
        return "contains a path separator"
    if ".." in case_id:
        return "contains '..'"
    if case_id.startswith("."):
        return "starts with a dot (a hidden file)"
    bad = sorted(set("".join(NOT_CASE_ID_CHARACTERS.findall(case_id))))
    if bad:
        return f"contains {''.join(bad)!r}: only letters, digits, '.', '_' and '-' are allowed"
    return None


# --- export ----------------------------------------------------------------------------------


def export_case(  # noqa: PLR0913  (the public one-call export: keyword options)
    dataset_dir: str | Path,
    case_id: str,
    image: Image,
    approved: Image,
    label_map: LabelMap,
    *,
    proposal: Image | None = None,
    source: dict[str, str] | None = None,
    model: ModelId | None = None,
    modality: str | None = None,
    overwrite: bool = False,
    cancel: CancelToken | None = None,
) -> CaseRecord:
    """Add (or with ``overwrite`` replace) one case; creates the dataset on first use.

    ``source`` defaults to the image's file path / DICOM series UID; ``model`` is the
    ``{"name", "version"}`` of the model that made ``proposal``. ``modality`` is the images' kind
    (a bundle's ``modality``: CT, CXR, MR): it names the dataset's channel in dataset.json, from
    which nnU-Net chooses the intensity normalisation, so every case of a dataset must share it.
    None when unknown: a new dataset is then CT, and an existing one keeps its own. ``cancel``
    stops the wait for a dataset another export is writing to (``Cancelled``).
    """
    root = Path(dataset_dir)
    validate_case_id(case_id)
    label_map = _validated_label_map(label_map)
    case = _Case(
        case_id,
        image,
        _checked_labels(approved, image, label_map, "approved"),
        None if proposal is None else _checked_labels(proposal, image, label_map, "proposal"),
    )
    record = _make_record(case, label_map, source, model, _now())  # the metrics: outside the lock
    _refuse_foreign_folder(root)
    with _dataset_lock(root, cancel):
        _remove_stale_temporaries(root)
        description = _description_to_extend(root, label_map, modality, record.exported_at)
        _add_case(root, description, case, record, overwrite=overwrite)
    return record


def _dataset_lock(root: Path, cancel: CancelToken | None) -> AbstractContextManager[None]:
    """Held from reading the dataset to writing it: exports into one dataset take turns (a
    cancelled export stops waiting for its turn)."""
    busy = DatasetExportError(
        f"dataset {root} is busy (another export is writing to it); waited {LOCK_WAIT_S:g} s"
    )
    still_wanted = None if cancel is None else cancel.check
    return exclusive_lock(root / LOCK_FILE, wait_s=LOCK_WAIT_S, busy=busy, still_wanted=still_wanted)


def _remove_stale_temporaries(root: Path) -> None:
    """Every export writes holding the lock, which we hold: a temporary file in the dataset is
    the leftover of an export that was killed (kill -9, a power cut). Remove it, and say so."""
    sizes = remove_temporaries([root, *(root / folder for folder in CASE_FOLDERS)])
    if sizes:
        count = f"{len(sizes)} temporary file{'s' if len(sizes) > 1 else ''}"
        warnings.warn(
            StaleTemporariesRemoved(
                f"{root}: removed {count} ({sum(sizes) / 1e6:.1f} MB) left by an export that was interrupted"
            ),
            stacklevel=3,  # export_case's caller
        )


def _description_to_extend(root: Path, label_map: LabelMap, modality: str | None, now: str) -> dict[str, Any]:
    """The dataset's dataset.json (a new one on first use), once this export is known to fit it."""
    if (root / DATASET_JSON).exists():
        description = _read_description(root)
    else:
        description = _new_description(root, label_map, modality or UNKNOWN_MODALITY, now)
    _check_same_label_map(_dataset_label_map(description, root), label_map, root)
    _check_same_modality(description, modality, root)
    return description


def _add_case(
    root: Path, description: dict[str, Any], case: _Case, record: CaseRecord, *, overwrite: bool
) -> None:
    """The case's files, its record, then dataset.json listing it: the commit point."""
    records = _read_records(root)
    case_ids = _complete_case_ids(root, _listed_case_ids(description, root), records)
    _check_case_is_free(root, case.case_id, case_ids, overwrite)
    if case.case_id in case_ids:
        case_ids.remove(case.case_id)
        _write_description(root, _listing(description, case_ids, record.exported_at))
    _write_case_files(root, case)
    records[case.case_id] = record
    case_ids.append(case.case_id)
    _write_records(root, [records[listed] for listed in case_ids])
    _write_description(root, _listing(description, case_ids, record.exported_at))


def _validated_label_map(label_map: LabelMap) -> LabelMap:
    """Unique non-empty names, positive values, RGB colours (the bundle's rules), uint8, no "background"."""
    too_large = [value for value in label_map if value > MAX_LABEL_VALUE]
    if too_large:
        raise DatasetExportError(f"label values {too_large} do not fit in uint8 (at most {MAX_LABEL_VALUE})")
    if any(info.name == "background" for info in label_map.values()):
        raise DatasetExportError('"background" is reserved for label 0 in dataset.json; rename that segment')
    return parse_labels(JsonFields(_label_map_to_json(label_map), "label map", "labels"))


def _label_map_to_json(label_map: LabelMap) -> dict[str, Any]:
    return {str(value): label_to_json(info) for value, info in sorted(label_map.items())}


def _checked_labels(labels: Image, image: Image, label_map: LabelMap, role: str) -> Image:
    """``labels`` as uint8 on exactly the image's grid, once it is known to lie on it (within
    ``geometry.GRID_TOLERANCE``) and to use only mapped values: nnU-Net checks a label's header
    against its image's more strictly than that tolerance."""
    if image.array.ndim != image.ndim:
        raise DatasetExportError("only single-channel (gray) images can be exported, not colour ones")
    difference = grid_difference(labels, image)
    if difference is not None:
        raise DatasetExportError(
            f"the {role} label is not on the image's grid ({difference}); resample it onto the image first"
        )
    unknown = sorted(set(np.unique(labels.array).tolist()) - {0, *label_map})
    if unknown:
        raise DatasetExportError(
            f"the {role} label has values {unknown[:10]} that the label map "
            f"({_describe_label_map(label_map)}) does not define"
        )
    return image.with_array(labels.array.astype(np.uint8))


def _describe_label_map(label_map: LabelMap) -> str:
    return ", ".join(f"{value}={info.name}" for value, info in sorted(label_map.items()))


def _check_same_label_map(dataset_map: LabelMap, label_map: LabelMap, root: Path) -> None:
    """Training needs one meaning per value across cases: refuse any difference, naming the label."""
    for value in sorted({*dataset_map, *label_map}):
        ours, theirs = label_map.get(value), dataset_map.get(value)
        if ours is not None and theirs is not None and ours.name == theirs.name:
            continue
        in_dataset = repr(theirs.name) if theirs is not None else "not defined"
        in_export = repr(ours.name) if ours is not None else "not defined"
        raise DatasetExportError(
            f"{root / DATASET_JSON}: label {value} is {in_dataset} in the dataset but {in_export} in "
            f"this export (dataset labels: {_describe_label_map(dataset_map)}); export with the "
            "dataset's label map or into a new dataset folder"
        )


def _check_same_modality(description: dict[str, Any], modality: str | None, root: Path) -> None:
    """One normalisation per nnU-Net channel: an X-ray does not join a CT dataset."""
    if modality is None:
        return
    found, wanted = description.get("channel_names"), layout.channel_names(modality)
    if found != wanted:
        raise DatasetExportError(
            f"{root / DATASET_JSON}: channel_names is {found} but this export's images are {modality} "
            f"({wanted}); export into a new dataset folder"
        )


def _check_case_is_free(root: Path, case_id: str, case_ids: list[str], overwrite: bool) -> None:
    if case_id in case_ids and not overwrite:
        raise DatasetExportError(
            f"{root}: case {case_id!r} already exists; pass overwrite=True (--overwrite) to replace it"
        )
    twins = [listed for listed in case_ids if listed != case_id and listed.casefold() == case_id.casefold()]
    if twins:
        raise DatasetExportError(
            f"{root}: case id {case_id!r} differs from the existing {twins[0]!r} only in letter case, "
            "which is one and the same file on Windows and macOS; choose another id"
        )


def _make_record(
    case: _Case, label_map: LabelMap, source: dict[str, str] | None, model: ModelId | None, now: str
) -> CaseRecord:
    present = tuple(int(value) for value in np.unique(case.approved.array) if value != 0)
    correction = None if case.proposal is None else _correction(case.proposal, case.approved, label_map)
    return CaseRecord(
        case.case_id,
        _source_of(case.image) if source is None else dict(source),
        _model_of(model),
        now,
        _user(),
        present,
        correction,
    )


def _correction(proposal: Image, approved: Image, label_map: LabelMap) -> dict[str, dict[str, Any]]:
    """Per segment: how far the model's proposal was from what the annotator approved."""
    spacing = approved.spacing[::-1]
    voxel_ml = float(np.prod(spacing)) / 1000.0
    correction = {}
    for value, info in sorted(label_map.items()):
        proposed, kept = proposal.array == value, approved.array == value
        metrics = mask_metrics(proposed, kept, spacing, (NSD_TOLERANCE_MM,))
        changed = int(np.count_nonzero(proposed != kept))
        correction[info.name] = {
            "dice": metrics["dice"],
            NSD_KEY: metrics[NSD_KEY],
            "hd95": metrics["hd95"],
            "changed_voxels": changed,
            "changed_ml": changed * voxel_ml,
        }
    return correction


def _source_of(image: Image) -> dict[str, str]:
    """The file path and DICOM series UID that ``read_image`` left in the image's metadata."""
    keys = {"path": "source_path", "series_uid": "series_uid"}
    return {name: str(image.metadata[key]) for name, key in keys.items() if image.metadata.get(key)}


def _model_of(model: ModelId | None) -> dict[str, str] | None:
    if model is None:
        return None
    if not {"name", "version"} <= set(model):
        raise DatasetExportError(f"model: expected {{'name': ..., 'version': ...}}, got {model!r}")
    return {"name": str(model["name"]), "version": str(model["version"])}


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (e.g. some containers): provenance says so
        return "unknown"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- files -----------------------------------------------------------------------------------


def _write_case_files(root: Path, case: _Case) -> None:
    """Replace whatever an unlisted (debris) or unlisted-for-overwrite case left; label before image."""
    if case.proposal is None:
        layout.prediction_path(root, case.case_id).unlink(missing_ok=True)
    else:
        write_image(layout.prediction_path(root, case.case_id), case.proposal, overwrite=True)
    write_image(layout.label_path(root, case.case_id), case.approved, overwrite=True)
    write_image(layout.image_path(root, case.case_id), case.image, overwrite=True)


def _write_records(root: Path, records: list[CaseRecord]) -> None:
    write_text_atomic(root / CASES_JSONL, "".join(json.dumps(record.to_json()) + "\n" for record in records))


def _read_records(root: Path) -> dict[str, CaseRecord]:
    """The record of every case in cases.jsonl (the last one wins if an id repeats)."""
    path = root / CASES_JSONL
    if not path.exists():
        return {}
    records = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = CaseRecord.from_json(json.loads(line))
        except (json.JSONDecodeError, TypeError, KeyError) as error:
            raise DatasetExportError(f"{path}: line {number} is not a case record ({error})") from None
        records[record.case_id] = record
    return records


def _complete_case_ids(root: Path, listed: list[str], records: dict[str, CaseRecord]) -> list[str]:
    """Listed cases whose image, label and record all exist: the only ones counted."""
    return [
        case_id
        for case_id in listed
        if case_id in records
        and layout.image_path(root, case_id).is_file()
        and layout.label_path(root, case_id).is_file()
    ]


# --- dataset.json ----------------------------------------------------------------------------


def _refuse_foreign_folder(root: Path) -> None:
    """A folder without dataset.json becomes a dataset only when it is new, empty or holds no more
    than an interrupted first export (hidden files aside): a user's files are never mixed in.
    Checked before the lock file is created, which would be left in the user's folder."""
    if not root.is_dir() or (root / DATASET_JSON).exists():
        return
    foreign = sorted(p.name for p in root.iterdir() if p.name not in DATASET_PARTS and not is_hidden(p))
    if foreign:
        raise DatasetExportError(
            f"{root}: holds other files ({', '.join(foreign[:3])}) and no {DATASET_JSON}; "
            "export into an empty or new folder"
        )


def _new_description(root: Path, label_map: LabelMap, modality: str, now: str) -> dict[str, Any]:
    """dataset.json of an empty dataset (the folder passed ``_refuse_foreign_folder``)."""
    own = {"label_map": _label_map_to_json(label_map), "created": now, "updated": now}
    labels = {value: info.name for value, info in label_map.items()}
    return layout.dataset_json(
        name=root.name,
        description=DESCRIPTION,
        modality=modality,
        labels=labels,
        case_ids=[],
        **{OWN_SECTION: own},
    )


def _listing(description: dict[str, Any], case_ids: list[str], now: str) -> dict[str, Any]:
    """``description`` listing exactly ``case_ids`` (a user's edits to other fields are kept)."""
    own = {**description[OWN_SECTION], "updated": now}
    return layout.with_cases({**description, OWN_SECTION: own}, case_ids)


def _write_description(root: Path, description: dict[str, Any]) -> None:
    layout.write_dataset_json(root, description)


def _read_description(root: Path) -> dict[str, Any]:
    description = layout.read_dataset_json(root, DatasetExportError)
    if not isinstance(description.get(OWN_SECTION), dict):
        raise DatasetExportError(
            f"{root / DATASET_JSON}: not a dataset exported by LungLiverSeg (no {OWN_SECTION!r} section); "
            "export into a new folder"
        )
    return description


def _dataset_label_map(description: dict[str, Any], root: Path) -> LabelMap:
    label_map = description[OWN_SECTION].get("label_map")
    return parse_labels(JsonFields(label_map, root / DATASET_JSON, f"{OWN_SECTION}.label_map"))


def _listed_case_ids(description: dict[str, Any], root: Path) -> list[str]:
    """Case ids of dataset.json's "training" list (named after the label files, like nnU-Net)."""
    return [case for case, _, _ in layout.listed_cases(root, description, DatasetExportError)]


# --- reading back ----------------------------------------------------------------------------


def read_dataset(dataset_dir: str | Path) -> DatasetInfo:
    """The label map and the complete cases (with their records) of an exported dataset."""
    root = Path(dataset_dir)
    if not (root / DATASET_JSON).is_file():
        raise DatasetExportError(
            f"{root}: no {DATASET_JSON}: not an exported dataset (or nothing exported yet)"
        )
    description = _read_description(root)
    records = _read_records(root)
    case_ids = _complete_case_ids(root, _listed_case_ids(description, root), records)
    return DatasetInfo(
        root,
        str(description.get("name", root.name)),
        _dataset_label_map(description, root),
        tuple(records[case_id] for case_id in case_ids),
    )


def correction_summary(dataset_dir: str | Path) -> str:
    """Per segment, the mean agreement of the model's proposals with the approved labels.

    The "how much correction did the model need" signal: when the mean Dice and NSD stay near 1
    over the latest cases, the annotators mostly accept the proposals.
    """
    info = read_dataset(dataset_dir)
    corrected = [record.correction for record in info.cases if record.correction is not None]
    heading = (
        f"{info.name}: {len(info.cases)} cases, {len(corrected)} corrected from a model proposal, "
        f"{len(info.cases) - len(corrected)} annotated from scratch"
    )
    if not corrected:
        return heading
    rows = [["segment", "cases", "mean Dice", f"mean NSD@{NSD_TOLERANCE_MM:g}mm", "mean changed mL"]]
    for label in info.label_map.values():
        per_case = [correction[label.name] for correction in corrected if label.name in correction]
        if per_case:
            rows.append(_summary_row(label.name, per_case))
    return heading + "\n" + text_table(rows)


def _summary_row(name: str, per_case: list[dict[str, Any]]) -> list[str]:
    def mean(key: str) -> float:
        return fmean(float(metrics[key]) for metrics in per_case)

    return [
        name,
        str(len(per_case)),
        f"{mean('dice'):.3f}",
        f"{mean(NSD_KEY):.3f}",
        f"{mean('changed_ml'):.1f}",
    ]
