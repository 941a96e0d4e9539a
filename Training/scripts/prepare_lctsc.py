"""Lay out the LCTSC chest CTs (../shared/data/ct_lung_lctsc_2mm) as an MSD dataset for training.

The images are linked, not copied (licences and size: they never enter the repository). Two
patients are held out for validation, always the same two, so the bundled model's validation
numbers can be reproduced:

    python Training/scripts/prepare_lctsc.py ../shared/data/ct_lung_lctsc_2mm runs/lctsc-dataset
    lunglivseg train --dataset runs/lctsc-dataset --config lungs-ct-3d --out runs/lungs-ct-3d

``--hard-negatives`` also writes, for each training patient, a copy with painted bowel gas and
(every other one) a body cut by the field of view (LungLiverSegTraining.hard_negatives), and
the painted copy's slab below the lung bases as a CT of its own (an upper abdomen with no lung
in view), all seeded, so that the lung model learns that gas below the diaphragm is not lung.
Those are new files in the target folder; the validation patients are never altered.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

VALIDATION_CASES = ("Case_008", "Case_009")


def prepare(source: Path, target: Path, hard_negatives: bool = False) -> Path:
    """Symlink ``Case_XXX_ct/_lungs`` pairs into ``imagesTr``/``labelsTr`` and write dataset.json."""
    cases = sorted(
        m.group(1) for p in source.glob("Case_*_ct.nii.gz") if (m := re.match(r"(Case_\d+)_ct", p.name))
    )
    if not cases:
        raise SystemExit(f"{source}: no Case_XXX_ct.nii.gz files")
    for folder in ("imagesTr", "labelsTr"):
        (target / folder).mkdir(parents=True, exist_ok=True)
    for case in cases:
        _link(source / f"{case}_ct.nii.gz", target / "imagesTr" / f"{case}_0000.nii.gz")
        _link(source / f"{case}_lungs.nii.gz", target / "labelsTr" / f"{case}.nii.gz")
    train = [c for c in cases if c not in VALIDATION_CASES]
    if hard_negatives:
        train += [
            name
            for seed, case in enumerate(list(train))
            for name in _write_hard_negatives(source, target, case, seed)
        ]
    dataset = {
        "name": "LCTSC lungs (2 x 2 x 3 mm)",
        "description": "TCIA LCTSC 2017 chest CTs with lung labels (CC BY 3.0; cite LCTSC and TCIA)",
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "lungs": 1},
        "numTraining": len(train) + len(VALIDATION_CASES),
        "file_ending": ".nii.gz",
        "split": {"train": train, "val": list(VALIDATION_CASES)},
    }
    (target / "dataset.json").write_text(json.dumps(dataset, indent=2))
    return target


def _write_hard_negatives(source: Path, target: Path, case: str, seed: int) -> list[str]:
    """``<case>_gas`` (painted bowel gas, the body cut by the field of view every other time) and
    ``<case>_abdomen`` (the painted CT's slab below the lung bases, no lung in it)."""
    from LungLiverSegLib.geometry import crop
    from LungLiverSegLib.imageio import read_image
    from LungLiverSegTraining.hard_negatives import add_bowel_gas, below_the_lungs, truncate_field_of_view

    rng = np.random.default_rng(seed)
    ct, lungs = read_image(source / f"{case}_ct.nii.gz"), read_image(source / f"{case}_lungs.nii.gz")
    painted = add_bowel_gas(ct, lungs, rng)
    abdomen = below_the_lungs(lungs)
    _write_case(target, f"{case}_abdomen", crop(painted, abdomen), crop(lungs, abdomen))
    if seed % 2:
        painted, lungs = truncate_field_of_view(painted, lungs, rng)
    _write_case(target, f"{case}_gas", painted, lungs)
    return [f"{case}_gas", f"{case}_abdomen"]


def _write_case(target: Path, name: str, image, labels) -> None:
    from LungLiverSegLib.imageio import write_image

    write_image(target / "imagesTr" / f"{name}_0000.nii.gz", image, overwrite=True)
    write_image(target / "labelsTr" / f"{name}.nii.gz", labels, overwrite=True)


def _link(source: Path, link: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(source.resolve())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--hard-negatives", action="store_true", help="add painted bowel-gas copies")
    arguments = parser.parse_args()
    print(prepare(arguments.source, arguments.target, arguments.hard_negatives))
