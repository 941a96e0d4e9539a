"""The network alone on a CPU: torch as the pipeline runs it, against other ways to run the same
weights, at equal output.

Each backend runs the bundle's network on the same batches of windows (the bundle's patch size and
batch size, random input of a fixed seed) in this one process; printed: the median seconds per
forward pass, the ratio to torch as it runs today, the largest difference of the outputs and the
share of voxels whose argmax differs. A backend is worth adopting only at >= 1.3x with the same
argmax (docs/PERFORMANCE.md).

* ``torch``: eager, contiguous tensors (what ``segment`` does);
* ``channels_last``: the network and input in ``channels_last(_3d)`` memory format;
* ``compile``: ``torch.compile`` (its compile time printed separately);
* ``onnxruntime``: exported with ``torch.onnx.export`` and run by ONNX Runtime's CPU provider
  (needs ``pip install onnxruntime onnx``; skipped when absent).

    python bench/bench_backends.py --model lungs-ct-3d
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch

Forward = Callable[[torch.Tensor], torch.Tensor]


def timed(forward: Forward, batches: list[torch.Tensor]) -> tuple[float, torch.Tensor]:
    """Median seconds per call after one warm-up call, and the first batch's output."""
    with torch.inference_mode():
        reference = forward(batches[0])
        seconds = []
        for batch in batches:
            start = time.perf_counter()
            forward(batch)
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), reference


def channels_last(network: torch.nn.Module, dims: int) -> Forward:
    memory_format = torch.channels_last_3d if dims == 3 else torch.channels_last
    converted = copy.deepcopy(network).to(memory_format=memory_format)  # .to converts in place
    return lambda batch: converted(batch.contiguous(memory_format=memory_format))


def compiled(network: torch.nn.Module, example: torch.Tensor) -> tuple[Forward, float]:
    forward = torch.compile(network)
    start = time.perf_counter()
    with torch.inference_mode():
        forward(example)
    return forward, time.perf_counter() - start


def onnxruntime_session(network: torch.nn.Module, example: torch.Tensor, threads: int) -> Forward | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/network.onnx"
        torch.onnx.export(network, (example,), path, input_names=["x"], output_names=["y"], dynamo=False)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda batch: torch.from_numpy(session.run(None, {"x": batch.numpy()})[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lungs-ct-3d")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--passes", type=int, default=6, help="forward passes per backend")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to compile)")
    args = parser.parse_args()

    from LungLiverSegLib.segmentation.memory import reuse_freed_memory
    from LungLiverSegLib.segmentation.segment import load_model

    reuse_freed_memory()
    loaded = load_model(args.model, "cpu", args.threads)
    network, bundle = loaded.network.eval(), loaded.bundle
    shape = (bundle.inference.batch_size, 1, *bundle.inference.patch_size[::-1])
    generator = torch.Generator().manual_seed(0)
    batches = [torch.rand(shape, generator=generator) for _ in range(args.passes)]
    torch_seconds, expected = timed(network, batches)
    print(f"{args.model}: batches of {shape}, {args.threads} threads, median of {args.passes} passes")
    report("torch (today)", torch_seconds, torch_seconds, expected, expected)
    backends: dict[str, Forward | None] = {"channels_last": channels_last(network, bundle.dims)}
    if not args.no_compile:
        backends["compile"], compile_seconds = compiled(network, batches[0])
        print(f"  (torch.compile took {compile_seconds:.1f} s before its first result)")
    backends["onnxruntime"] = onnxruntime_session(network, batches[0], args.threads)
    for name, forward in backends.items():
        if forward is None:
            print(f"{name:16}: not installed")
            continue
        seconds, output = timed(forward, batches)
        report(name, seconds, torch_seconds, output, expected)


def report(name: str, seconds: float, baseline: float, output: torch.Tensor, expected: torch.Tensor) -> None:
    difference = float((output.float() - expected).abs().max())
    argmax_differs = float(np.mean((output.argmax(1) != expected.argmax(1)).numpy()))
    print(
        f"{name:16}: {seconds:6.3f} s per pass  {baseline / seconds:5.2f}x  "
        f"max |difference| {difference:.1e}  argmax differs at {argmax_differs:.1e} of the voxels"
    )


if __name__ == "__main__":
    main()
