"""``lunglivseg export``: add an image and its approved label to a training dataset."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from LungLiverSegLib.progress import CancelToken

if TYPE_CHECKING:
    from LungLiverSegLib.bundle.spec import ModelBundle
    from LungLiverSegLib.labels import LabelMap


def add_command(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser("export", help="add an image and its approved label to a training dataset")
    cmd.add_argument("image", type=Path, help="image file or DICOM series folder")
    cmd.add_argument("label", type=Path, help="approved label image (.nii.gz, .nrrd, .seg.nrrd)")
    cmd.add_argument("dataset_dir", type=Path, help="dataset folder (created on first export)")
    cmd.add_argument("--case-id", required=True, help="case name: letters, digits, '.', '_', '-'")
    cmd.add_argument("--proposal", type=Path, default=None, help="the model's label before correction")
    names = cmd.add_mutually_exclusive_group()
    names.add_argument(
        "--labels-from-model", metavar="NAME", help="use this model's label map (and record it)"
    )
    names.add_argument("--label-map", type=Path, metavar="JSON", help="label map file in model.json form")
    cmd.add_argument("--series-uid", default=None, help="DICOM SeriesInstanceUID when a folder has several")
    cmd.add_argument("--overwrite", action="store_true", help="replace a case that is already exported")
    cmd.set_defaults(run=run)


def run(args: argparse.Namespace, cancel: CancelToken) -> int:
    from LungLiverSegLib.dataset.export import ModelId, correction_summary, export_case
    from LungLiverSegLib.imageio import read_image

    image = read_image(args.image, args.series_uid)
    label_map, bundle = _label_map(args)
    approved = read_image(args.label)
    proposal = None if args.proposal is None else read_image(args.proposal)
    model = None if bundle is None else ModelId(name=bundle.name, version=bundle.version)
    record = export_case(
        args.dataset_dir,
        args.case_id,
        image,
        approved,
        label_map,
        proposal=proposal,
        model=model if proposal is not None else None,
        modality=None if bundle is None else bundle.modality,
        overwrite=args.overwrite,
        cancel=cancel,
    )
    print(f"exported case {record.case_id} into {args.dataset_dir}")
    print(correction_summary(args.dataset_dir))
    return 0


def _label_map(args: argparse.Namespace) -> tuple[LabelMap, ModelBundle | None]:
    """--labels-from-model (the model also gives the modality), --label-map, a .seg.nrrd's own
    segments, or the existing dataset's map."""
    from LungLiverSegLib.dataset.export import DATASET_JSON, DatasetExportError, read_dataset
    from LungLiverSegLib.imageio import SEGMENTATION_SUFFIX, read_segmentation

    if args.labels_from_model:
        from LungLiverSegLib.bundle.catalogue import find_model

        bundle = find_model(args.labels_from_model)
        return bundle.labels, bundle
    if args.label_map is not None:
        return _read_label_map_file(args.label_map), None
    if args.label.name.lower().endswith(SEGMENTATION_SUFFIX):
        return read_segmentation(args.label)[1], None
    if (args.dataset_dir / DATASET_JSON).is_file():
        return read_dataset(args.dataset_dir).label_map, None
    raise DatasetExportError(
        f"{args.label}: name the segments with --labels-from-model NAME or --label-map JSON "
        "(or export a .seg.nrrd, which carries its segment names)"
    )


def _read_label_map_file(path: Path) -> LabelMap:
    from LungLiverSegLib.bundle.json_fields import JsonFields
    from LungLiverSegLib.bundle.model_json import parse_labels
    from LungLiverSegLib.dataset.export import DatasetExportError
    from LungLiverSegLib.jsonio import read_json

    return parse_labels(JsonFields(read_json(path, DatasetExportError, "the label map"), path, "labels"))
