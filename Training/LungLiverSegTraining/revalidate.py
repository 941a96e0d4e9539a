"""Re-measure a trained bundle's validation metrics with the current core, and rewrite its card
(and its input checks: the unsure-ratio warning limit, calibrated on the same validation images,
and the intensity fingerprint of its training images).

Training records validation numbers with the pipeline of its own revision; when the core's
inference improves later (e.g. the body mask), the shipped numbers must be measured again on
the same validation split, never tuned on it. The weights are not touched (same sha256).

    python Training/scripts/revalidate.py runs/lungs-ct-3d/bundle/lungs-ct-3d-v0.1.0 \\
        runs/lctsc-dataset runs/lungs-ct-3d
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from LungLiverSegLib.bundle.model_json import load_bundle
from LungLiverSegLib.bundle.spec import MODEL_CARD, ModelBundle
from LungLiverSegLib.bundle.weights import load_network, save_bundle

from LungLiverSegTraining import checkpoint
from LungLiverSegTraining.bundle_export import data_section_of, git_revision, training_card, with_data_section
from LungLiverSegTraining.cli import read_data_card
from LungLiverSegTraining.config import TrainingConfig, config_from_json
from LungLiverSegTraining.dataset_reader import open_dataset, split_from_json
from LungLiverSegTraining.distributed import DistributedContext
from LungLiverSegTraining.patches import histogram_range
from LungLiverSegTraining.trainer import SPLIT_FILE, prepared_cases
from LungLiverSegTraining.validation import unsure_ratio_limit, validate, validation_cases


def revalidate(
    bundle_dir: Path, dataset_dir: Path, run_dir: Path, data_card: Path | None = None
) -> dict[str, Any]:
    """Score the run's validation split through ``segment_image`` and store the result in the bundle."""
    bundle = load_bundle(bundle_dir)
    saved = checkpoint.load_checkpoint(run_dir / checkpoint.LAST, torch.device("cpu"))
    config = config_from_json(json.loads(saved["config"]), "checkpoint")
    if data_card is not None:
        config = replace(config, data_card=read_data_card(data_card))
    split = split_from_json(json.loads((run_dir / SPLIT_FILE).read_text(encoding="utf-8")))
    dataset = open_dataset(dataset_dir, config)
    fingerprint = histogram_range(prepared_cases(dataset, config, split.train))
    bundle = replace(bundle, inference=replace(bundle.inference, input_histogram=fingerprint))
    cases = validation_cases(dataset, config, split.val)
    network = load_network(bundle, "cpu")
    validation = validate(network, bundle, cases, torch.device("cpu"), DistributedContext())
    validation["measured_with_revision"] = git_revision()
    inference = replace(bundle.inference, unsure_ratio_limit=unsure_ratio_limit(validation))
    updated = replace(bundle, validation=validation, inference=inference)
    card = regenerated_card(updated, config, (bundle_dir / MODEL_CARD).read_text(encoding="utf-8"))
    save_bundle(bundle_dir, updated, network.state_dict(), card, overwrite=True)
    return validation


def regenerated_card(bundle: ModelBundle, config: TrainingConfig, old_card: str) -> str:
    """The training card, with the old card's data section (sources, licences, attribution) when
    the run had no ``--data-card`` of its own: no generator could know what it says."""
    card = training_card(bundle, config)
    kept = None if config.data_card else data_section_of(old_card)
    return card if kept is None else with_data_section(card, kept)


def main(argv: Sequence[str] | None = None) -> None:
    """``Training/scripts/revalidate.py BUNDLE DATASET RUN [--data-card FILE]``: prints the new metrics."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("run", type=Path)
    parser.add_argument(
        "--data-card", type=Path, default=None, help="replace the card's data section with this file"
    )
    arguments = parser.parse_args(argv)
    validation = revalidate(arguments.bundle, arguments.dataset, arguments.run, arguments.data_card)
    print(json.dumps(validation, indent=2))
