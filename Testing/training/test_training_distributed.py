"""DistributedDataParallel training under torchrun: two CPU processes with the gloo backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from LungLiverSegLib.bundle.model_json import load_bundle
from LungLiverSegLib.demo.phantom import make_phantom_dataset

TORCHRUN_TIMEOUT_S = 300


@pytest.mark.slow
def test_torchrun_two_processes_train_and_reduce_validation(tmp_path):
    dataset = make_phantom_dataset(tmp_path / "data", 6, seed=5, size=(80, 64, 48), spacing=(4.0, 4.0, 6.0))
    config = tmp_path / "config.json"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import json; from LungLiverSegTraining.config import load_config, config_to_json; "
            "c = config_to_json(load_config('phantom-ct-3d')); "
            "c.update(epochs=2, validate_every=1, val_fraction=0.34); "
            f"open({str(config)!r}, 'w').write(json.dumps(c))",
        ],
        check=True,
    )
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "LungLiverSegTraining",
        "train",
        "--dataset",
        str(dataset),
        "--config",
        str(config),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--progress",
        "json",
        "--threads",
        "1",
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=TORCHRUN_TIMEOUT_S,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert sum(event["event"] == "done" for event in events) == 1  # rank 0 alone reports
    validations = [event for event in events if event["event"] == "validation"]
    assert [event["cases"] for event in validations] == [2, 2]  # one case per rank, summed
    bundle = load_bundle(out / "bundle" / "phantom-ct-3d-v0.1.0")
    assert "2 training process(es)" in bundle.provenance["hardware"]
    assert bundle.validation["cases"] == 2
