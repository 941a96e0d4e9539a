"""The ``train`` command's contract: one request, parsed by Training's parser and written back by
``to_argv`` without loss; the preset names and the last-checkpoint name both sides rely on."""

from __future__ import annotations

import argparse
import shlex
from dataclasses import fields
from pathlib import Path

import pytest
from LungLiverSegLib.cli.train_request import LAST_CHECKPOINT, TrainRequest, preset_names
from LungLiverSegLib.progress import CancelToken
from LungLiverSegTraining import checkpoint, config
from LungLiverSegTraining.trainer import TrainOptions


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    TrainRequest.add_arguments(parser)
    return parser


def test_the_defaults_are_the_parsers_and_only_given_options_are_written():
    request = TrainRequest.from_args(parser().parse_args(["--dataset", "d", "--out", "o"]))
    assert request == TrainRequest(Path("d"), Path("o"))
    assert request.to_argv() == ["--dataset", "d", "--out", "o"]


def test_every_field_is_an_option_that_round_trips():
    """A value for every field, none at its default: each must reach argv and come back."""
    request = TrainRequest(
        dataset=Path("/data/lungs"),
        out=Path("runs/with space"),
        config="lungs-ct-3d",
        init_from=Path("/models/lungs-ct-3d-v0.2.0"),
        device="cuda",
        epochs=7,
        seed=3,
        data_card=Path("card.md"),
        threads=2,
        resume=True,
        progress="json",
    )
    assert all(getattr(request, f.name) != f.default for f in fields(request))
    argv = request.to_argv()
    assert len([word for word in argv if word.startswith("--")]) == len(fields(request))
    assert TrainRequest.from_args(parser().parse_args(argv)) == request


def test_the_provenance_is_the_command_as_it_could_be_retyped():
    request = TrainRequest(Path("d s"), Path("o"), "phantom-ct-3d", epochs=2, resume=True)
    options = TrainOptions.from_request(request, None, CancelToken())
    assert shlex.split(options.command) == [
        *("lunglivseg", "train", "--dataset", "d s", "--out", "o"),
        *("--config", "phantom-ct-3d", "--epochs", "2", "--resume"),
    ]
    assert (options.dataset, options.epochs, options.resume) == (Path("d s"), 2, True)


def test_the_core_lists_the_presets_training_loads():
    assert preset_names() == sorted(config.PRESETS)
    assert preset_names(), "no presets found"


def test_the_run_folder_marker_is_the_checkpoint_training_writes():
    assert checkpoint.LAST == LAST_CHECKPOINT


@pytest.mark.parametrize("argv", [["--out", "o"], ["--dataset", "d"]])
def test_dataset_and_out_are_required(argv: list[str]):
    with pytest.raises(SystemExit):
        parser().parse_args(argv)
