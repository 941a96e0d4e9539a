"""End-to-end segmentation time: `lunglivseg segment` vs the straightforward MONAI pipeline.

Both run the same network with the same weights on the same CT, each in its own process (so
that peak RSS is each pipeline's own), in one invocation of this script:

* ours: ``LungLiverSegLib.api.segment`` (read, reorient, body crop, torch resampling, sliding
  window, separable label-aware return, postprocessing, atomic write);
* baseline: LoadImaged, EnsureChannelFirstd, Orientationd, Spacingd, ScaleIntensityRanged,
  CropForegroundd, sliding_window_inference, Invertd, AsDiscreted, NibabelWriter (MONAI's
  documented recipe, as in its spleen tutorial), plus the two steps the bundle defines as part
  of the model's output, done with the core's own functions: background outside the body mask
  (on the probabilities, before the inverse) and the bundle's postprocessing (on the final
  labels). CropForegroundd is the bundle's body crop in MONAI's terms; without it the windows
  at the edge of the full field of view hold mostly air, which an instance-normalised network
  never saw in training. Without the body mask the recipe labels the CT table and the air around
  the patient as lung, which is why the agreement is also printed for the recipe alone.

It prints both wall times, the ratio, both peak RSS values and the Dice between the outputs
(ours against the baseline with and without the bundle's steps).

Other measurements, each instead of the comparison:

* ``--large`` segments a generated 512x512x1000 CT to show it fits in memory;
* ``--return-to-grid`` times the way back to the input grid of a chest CT's class probabilities
  (``preprocess.probabilities_to_labels``) against ``F.interpolate`` + ``argmax``, each in its own
  process, and checks that both give the same labels.

Cold start-up times (``--help``, one X-ray) are bench/bench_startup.py's.

    python bench/bench_segment.py --model lungs-ct-3d \
        --image ../shared/data/ct_lung_lctsc_full/Case_000_ct.nii.gz
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "ct_lung_lctsc_full" / "Case_000_ct.nii.gz"
PROBABILITIES_SHAPE = (3, 154, 180, 240)
"""Class probabilities of a 3-class model for a chest CT's body crop at 2x2x3 mm ..."""
INPUT_GRID_SHAPE = (462, 360, 480)
"""... and that crop at an input resolution of 0.98x0.98x1 mm (thin slices; LCTSC case 0's crop)."""


def run_ours(image: str, model: str, output: str, threads: int) -> dict:
    from LungLiverSegLib.api import segment
    from LungLiverSegLib.segmentation.memory import reuse_freed_memory
    from LungLiverSegLib.segmentation.segment import load_model

    reuse_freed_memory()
    start = time.perf_counter()
    loaded = load_model(model, "cpu", threads)
    segment(image, output, loaded, overwrite=True)
    return {"seconds": time.perf_counter() - start}


def run_monai(image: str, model: str, output: str, threads: int) -> dict:
    import torch
    from LungLiverSegLib.bundle.catalogue import find_model
    from LungLiverSegLib.segmentation.memory import reuse_freed_memory
    from LungLiverSegLib.segmentation.postprocess import postprocess_labels
    from LungLiverSegLib.segmentation.preprocess import body_mask
    from LungLiverSegLib.segmentation.segment import load_model, outside_body
    from monai.inferers import sliding_window_inference
    from monai.transforms import (
        AsDiscreted,
        Compose,
        CopyItemsd,
        CropForegroundd,
        EnsureChannelFirstd,
        Invertd,
        LoadImaged,
        Orientationd,
        ScaleIntensityRanged,
        Spacingd,
    )

    reuse_freed_memory()  # the same process set-up as ours: the pipelines are compared, not allocators
    start = time.perf_counter()
    torch.set_num_threads(threads)
    bundle = find_model(model)
    network = load_model(bundle, "cpu").network
    prep = bundle.preprocessing
    window = prep.intensity
    steps = [
        LoadImaged("image"),
        EnsureChannelFirstd("image"),
        CopyItemsd("image", names="original"),  # the input grid's intensities, for the density check
        Orientationd("image", axcodes=prep.orientation),
        Spacingd("image", pixdim=prep.spacing, mode="bilinear"),
        ScaleIntensityRanged("image", a_min=window.min, a_max=window.max, b_min=0.0, b_max=1.0, clip=True),
    ]
    body_threshold = None
    if prep.body_crop is not None:
        body_threshold = (prep.body_crop.threshold - window.min) / (window.max - window.min)
        margin = [int(np.ceil(prep.body_crop.margin_mm / s)) for s in prep.spacing]
        steps.append(CropForegroundd("image", "image", select_fn=lambda x: x > body_threshold, margin=margin))
    pre = Compose(steps)
    post = Compose(
        [
            Invertd("pred", transform=pre, orig_keys="image", nearest_interp=False, to_tensor=True),
            AsDiscreted("pred", argmax=True),
        ]
    )
    data = pre({"image": image})
    with torch.inference_mode():  # the bundle's networks take [k, j, i] arrays; MONAI's are (i, j, k)
        logits = sliding_window_inference(
            data["image"][None].permute(0, 1, 4, 3, 2),
            bundle.inference.patch_size[::-1],
            bundle.inference.batch_size,
            network,
            overlap=bundle.inference.overlap,
            mode="gaussian",
        ).permute(0, 1, 4, 3, 2)
    probabilities = torch.softmax(logits, 1)[0]
    recipe_only = probabilities.clone()
    if body_threshold is not None:
        spacing_zyx = np.asarray(bundle.preprocessing.spacing[::-1])
        body_zyx = body_mask(data["image"][0].permute(2, 1, 0).numpy(), body_threshold, spacing_zyx)
        outside_body(probabilities, torch.from_numpy(body_zyx).permute(2, 1, 0))
    labels = _invert_and_discretise(post, data, probabilities)
    spacing = tuple(np.linalg.norm(np.asarray(labels.affine)[:3, :3], axis=0).tolist())
    intensities = data["original"][0].numpy()
    labels[0] = torch.from_numpy(
        postprocess_labels(labels[0].numpy(), spacing, bundle.postprocessing, intensities)
    )
    _write_nifti(labels, output)
    seconds = time.perf_counter() - start
    _write_nifti(_invert_and_discretise(post, data, recipe_only), output.replace(".nii", "_recipe.nii"))
    return {"seconds": seconds}


def _invert_and_discretise(post, data: dict, probabilities):
    """MONAI's inverse of the preprocessing, then argmax, as uint8 labels on the input grid."""
    import torch

    probabilities.applied_operations = data["image"].applied_operations
    probabilities.meta = data["image"].meta
    return post({**data, "pred": probabilities})["pred"].to(torch.uint8)


def _write_nifti(labels, path: str) -> None:
    from monai.data import NibabelWriter

    writer = NibabelWriter(output_dtype=np.uint8)
    writer.set_data_array(labels, channel_dim=0)
    writer.set_metadata(labels.meta, resample=False)
    writer.write(path)


def return_to_grid(method: str, output: str, threads: int) -> dict:
    """Labels on the input grid from generated probabilities, by ``method``, saved to ``output``
    (.npy) to compare the methods."""
    import torch
    import torch.nn.functional as F
    from LungLiverSegLib.segmentation.preprocess import probabilities_to_labels

    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(PROBABILITIES_SHAPE, generator=generator)
    probabilities = torch.softmax(F.avg_pool3d(logits[None], 5, 1, 2)[0] * 20, dim=0)  # smooth regions
    start = time.perf_counter()
    if method == "grid-ours":
        labels = probabilities_to_labels(probabilities, INPUT_GRID_SHAPE)
    elif method == "grid-interpolate":
        upsampled = F.interpolate(
            probabilities[None], INPUT_GRID_SHAPE, mode="trilinear", align_corners=False
        )
        labels = upsampled[0].argmax(0).to(torch.uint8).numpy()
    else:  # the same process without the way back: the baseline of peak memory
        labels = np.zeros(0, np.uint8)
    seconds = time.perf_counter() - start
    np.save(output, labels)
    return {"seconds": seconds}


def child(args: argparse.Namespace) -> None:
    if args.child.startswith("grid-"):
        result = return_to_grid(args.child, args.output, args.threads)
    else:
        runner = run_ours if args.child == "ours" else run_monai
        result = runner(args.image, args.model, args.output, args.threads)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def in_child(which: str, image: str, model: str, output: str, threads: int) -> dict:
    command = [sys.executable, __file__, "--child", which, "--image", image, "--model", model]
    command += ["--output", output, "--threads", str(threads)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"{which} pipeline failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def compare(args: argparse.Namespace) -> None:
    from bench_stages import dice_per_label  # this folder is on the path of a script run

    with tempfile.TemporaryDirectory() as folder:
        ours_path, monai_path = f"{folder}/ours.nii.gz", f"{folder}/monai.nii.gz"
        recipe_path = f"{folder}/monai_recipe.nii.gz"
        ours = in_child("ours", args.image, args.model, ours_path, args.threads)
        monai = in_child("monai", args.image, args.model, monai_path, args.threads)
        agreement = {
            name: dice_per_label(ours_path, path)
            for name, path in (("same model steps", monai_path), ("recipe only", recipe_path))
        }
    print(f"image: {args.image}  model: {args.model}  threads: {args.threads}")
    print(f"lunglivseg segment : {ours['seconds']:7.2f} s   peak RSS {ours['peak_rss_mb']:7.0f} MB")
    print(f"MONAI pipeline     : {monai['seconds']:7.2f} s   peak RSS {monai['peak_rss_mb']:7.0f} MB")
    print(f"speed-up (MONAI / ours): {monai['seconds'] / ours['seconds']:.2f}x")
    for name, values in agreement.items():
        print(f"Dice per label, ours vs MONAI ({name}): {values}")


def large(args: argparse.Namespace) -> None:
    from bench_stages import synthetic_chest_ct  # this folder is on the path of a script run

    with tempfile.TemporaryDirectory() as folder:
        path = synthetic_chest_ct(1000, Path(folder) / "large_ct.nii.gz")
        result = in_child("ours", str(path), args.model, f"{folder}/large_seg.nii.gz", args.threads)
    print(
        f"512x512x1000 CT: {result['seconds']:.1f} s, peak RSS {result['peak_rss_mb']:.0f} MB "
        "(no out-of-memory)"
    )


def compare_return_to_grid(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        runs = {
            method: in_child(method, "", "", f"{folder}/{method}.npy", args.threads)
            for method in ("grid-none", "grid-ours", "grid-interpolate")
        }
        differ = int((np.load(f"{folder}/grid-ours.npy") != np.load(f"{folder}/grid-interpolate.npy")).sum())
    baseline, ours, theirs = runs.values()
    print(f"probabilities {PROBABILITIES_SHAPE} -> labels {INPUT_GRID_SHAPE}, threads: {args.threads}")
    print(f"peak RSS of the process without it: {baseline['peak_rss_mb']:7.0f} MB")
    for name, result in (("probabilities_to_labels", ours), ("F.interpolate + argmax", theirs)):
        extra = result["peak_rss_mb"] - baseline["peak_rss_mb"]
        print(f"{name:24s}: {result['seconds']:6.2f} s   peak RSS {extra:+7.0f} MB")
    print(f"time ratio (F.interpolate / ours): {theirs['seconds'] / ours['seconds']:.1f}x")
    print(f"labels that differ (float rounding at near-ties): {differ} of {np.prod(INPUT_GRID_SHAPE)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    parser.add_argument("--model", default="lungs-ct-3d")
    parser.add_argument("--threads", type=int, default=2)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--large", action="store_true", help="segment a generated 512x512x1000 CT")
    which.add_argument(
        "--return-to-grid", action="store_true", help="probabilities_to_labels vs F.interpolate"
    )
    parser.add_argument(
        "--child",
        choices=("ours", "monai", "grid-none", "grid-ours", "grid-interpolate"),
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
    elif args.large:
        large(args)
    elif args.return_to_grid:
        compare_return_to_grid(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
