"""``lunglivseg demo`` prints what the demo returns: the models, the files, volumes and scores."""

from __future__ import annotations

from pathlib import Path

from LungLiverSegLib.cli.demo import format_summary
from LungLiverSegLib.demo.run import Agreement, DemoResult, ModelRun


def test_summary_names_models_files_volumes_and_agreement():
    lungs_model, liver_model = (
        ModelRun("lungs-ct-3d", "0.1.1", "cpu"),
        ModelRun("phantom-ct-3d", "0.1.0", "cuda"),
    )
    out = Path("demo")
    result = DemoResult(
        runs=(lungs_model, liver_model),
        ct=out / "phantom_ct.nii.gz",
        ct_size=(160, 128, 96),
        ct_spacing=(2.5, 2.5, 3.0),
        segmentation=out / "phantom_segmentation.seg.nrrd",
        overlay=out / "overlay.png",
        volumes_csv=out / "volumes.csv",
        volumes_ml={"lungs": 4321.04, "liver": 1234.56},
        agreement={
            "lungs": Agreement(0.98149, 0.99, lungs_model),
            "liver": Agreement(0.912, 0.8504, liver_model),
        },
    )
    assert format_summary(result).splitlines() == [
        "models: lungs-ct-3d 0.1.1 on cpu; phantom-ct-3d 0.1.0 on cuda",
        f"input: {out / 'phantom_ct.nii.gz'} (generated phantom, size (160, 128, 96), "
        "spacing (2.5, 2.5, 3.0) mm)",
        f"segmentation: {out / 'phantom_segmentation.seg.nrrd'}",
        f"overlay: {out / 'overlay.png'}",
        f"volumes: {out / 'volumes.csv'}",
        "Segment  Volume (mL)",
        "lungs         4321.0",
        "liver         1234.6",
        "agreement with the phantom's truth:",
        "  lungs        Dice 0.981  NSD@2mm 0.990  (from lungs-ct-3d 0.1.1 on cpu)",
        "  liver        Dice 0.912  NSD@2mm 0.850  (from phantom-ct-3d 0.1.0 on cuda)",
    ]
