"""Lay out the LCTSC chest CTs (../shared/data/ct_lung_lctsc_2mm) as an MSD dataset for training.

The images are linked, not copied (licences and size: they never enter the repository). Two
patients are held out for validation, always the same two, so the bundled model's validation
numbers can be reproduced:

    python Training/scripts/prepare_lctsc.py ../shared/data/ct_lung_lctsc_2mm runs/lctsc-dataset
    lunglivseg train --dataset runs/lctsc-dataset --config lungs-ct-3d --out runs/lungs-ct-3d
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from LungLiverSegLib.dataset import layout

VALIDATION_CASES = ("Case_008", "Case_009")


def prepare(source: Path, target: Path) -> Path:
    """Symlink ``Case_XXX_ct/_lungs`` pairs into ``imagesTr``/``labelsTr`` and write dataset.json."""
    cases = sorted(
        m.group(1) for p in source.glob("Case_*_ct.nii.gz") if (m := re.match(r"(Case_\d+)_ct", p.name))
    )
    if not cases:
        raise SystemExit(f"{source}: no Case_XXX_ct.nii.gz files")
    for case in cases:
        _link(source / f"{case}_ct.nii.gz", layout.image_path(target, case))
        _link(source / f"{case}_lungs.nii.gz", layout.label_path(target, case))
    description = layout.dataset_json(
        name="LCTSC lungs (2 x 2 x 3 mm)",
        description="TCIA LCTSC 2017 chest CTs with lung labels (CC BY 3.0; cite LCTSC and TCIA)",
        modality="CT",
        labels={1: "lungs"},
        case_ids=cases,
        split={"train": [c for c in cases if c not in VALIDATION_CASES], "val": list(VALIDATION_CASES)},
    )
    layout.write_dataset_json(target, description)
    return target


def _link(source: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(source.resolve())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    arguments = parser.parse_args()
    print(prepare(arguments.source, arguments.target))
