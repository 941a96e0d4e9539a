"""Model bundle: save/load round trips, validation messages that name the field, checksums."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from factories import RIGHT, make_bundle, random_state_dict, save_tiny_bundle
from LungLiverSegLib.bundle.model_json import bundle_from_json, bundle_to_json, load_bundle, sha256_of_file
from LungLiverSegLib.bundle.networks import build_network
from LungLiverSegLib.bundle.spec import (
    ArchitectureSpec,
    semver_key,
)
from LungLiverSegLib.bundle.weights import load_network, save_bundle
from LungLiverSegLib.errors import BundleError
from safetensors.torch import save_file


@pytest.fixture
def saved_folder(tmp_path: Path) -> Path:
    return save_tiny_bundle(tmp_path / "tiny-lungs-v1.0.0")


def rewrite_model_json(folder: Path, change: Callable[[dict[str, Any]], object]) -> None:
    path = folder / "model.json"
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize("dims", [2, 3])
def test_saved_bundle_reloads_to_identical_fields_and_outputs(tmp_path: Path, dims: int) -> None:
    bundle = make_bundle(dims)
    state_dict = random_state_dict(bundle, seed=dims)
    folder = save_bundle(tmp_path / "model", bundle, state_dict)

    loaded = load_bundle(folder)
    assert replace(loaded, folder=None, weights_sha256="") == bundle
    assert loaded.folder == folder
    assert loaded.weights_sha256 == sha256_of_file(folder / "model.safetensors")
    assert loaded.out_channels == 3

    original = build_network(bundle.architecture, dims, 1, 3)
    original.load_state_dict(state_dict)
    original.eval()
    reloaded = load_network(loaded)
    assert not reloaded.training
    image = torch.rand(1, 1, *(16,) * dims)
    with torch.no_grad():
        assert torch.equal(reloaded(image), original(image))


def test_json_round_trip_keeps_every_field() -> None:
    bundle = replace(make_bundle(), weights_sha256="a" * 64)
    document = json.loads(json.dumps(bundle_to_json(bundle)))
    assert document["labels"]["1"]["terminology"]["modifier"] == list(RIGHT)
    assert bundle_from_json(document, "memory") == bundle


def test_2d_bundle_may_keep_spacing_and_resize_slices() -> None:
    bundle = make_bundle(2)
    bundle = replace(
        bundle,
        weights_sha256="b" * 64,
        preprocessing=replace(bundle.preprocessing, spacing=None, resize_inplane=(32, 32)),
    )
    assert bundle_from_json(bundle_to_json(bundle), "memory") == bundle


def test_generated_model_card_describes_the_model(saved_folder: Path) -> None:
    card = (saved_folder / "README.md").read_text()
    for expected in ("# Tiny 3D test model", "## Intended use", "right lung", "Lung", "## Limits", "0.25"):
        assert expected in card


def test_given_model_card_is_written_verbatim(tmp_path: Path) -> None:
    bundle = make_bundle()
    folder = save_bundle(tmp_path / "model", bundle, random_state_dict(bundle), "# Hand-written card\n")
    assert (folder / "README.md").read_text() == "# Hand-written card\n"


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    """A change that sets the dotted ``path`` of a model.json document to ``value``."""

    def change(document: dict[str, Any]) -> None:
        *parents, key = path.split(".")
        for parent in parents:
            document = document[parent]
        document[key] = value

    return change


CORRUPTIONS = [
    (_set("schema_version", 2), "schema_version"),
    (_set("name", "Tiny Lungs"), "name"),
    (_set("version", "1.0"), "version"),
    (lambda document: document.pop("title"), "title: missing"),
    (_set("modality", "PET"), "modality"),
    (_set("dims", 4), "dims"),
    (_set("architecture.name", "ResNet"), "architecture.name"),
    (
        _set("preprocessing.spacing", [1.0, 1.0]),
        "preprocessing.spacing: expected 3 numbers for a 3D model, got 2",
    ),
    (_set("preprocessing.orientation", "RRS"), "preprocessing.orientation"),
    (_set("preprocessing.intensity.type", "clahe"), "preprocessing.intensity.type"),
    (_set("preprocessing.intensity.max", -2000.0), "preprocessing.intensity.max"),
    (_set("preprocessing.body_crop.margin_mm", -1), "preprocessing.body_crop.margin_mm"),
    (_set("inference.patch_size", [16, 16]), "inference.patch_size"),
    (_set("inference.overlap", 1.0), "inference.overlap"),
    (_set("inference.batch_size", 0), "inference.batch_size"),
    (_set("labels.0", {"name": "background", "color": [0, 0, 0]}), "labels.0"),
    (_set("labels.1.color", [1.0, 2.0, 0.0]), "labels.1.color"),
    (_set("labels.2.name", "right lung"), "labels: segment names must be unique"),
    (_set("labels.1.terminology.type", ["SCT", "39607008"]), "labels.1.terminology.type"),
    (_set("postprocessing.largest_component", [7]), "postprocessing.largest_component"),
    (_set("postprocessing.density_check.labels", [9]), "postprocessing.density_check.labels"),
    (_set("postprocessing.density_check.max_mean", "low"), "postprocessing.density_check.max_mean"),
    (_set("inference.unsure_ratio_limit", -1), "inference.unsure_ratio_limit"),
    (_set("inference.input_histogram", {"low": [0.1], "high": [0.2]}), "inference.input_histogram.low"),
    (
        _set("inference.input_histogram", {"low": [0.1, 0.2], "high": [0.2, 0.3, 0.4]}),
        "inference.input_histogram.high",
    ),
    (_set("inference.input_histogram", {"low": [0.1, 0.2]}), "inference.input_histogram.high: missing"),
    (_set("inference.input_histogram", {"low": [0.3, 0.2], "high": [0.2, 0.3]}), "inference.input_histogram"),
    (_set("weights.file", "../model.safetensors"), "weights.file"),
    (_set("weights.sha256", "not-a-hash"), "weights.sha256"),
    (_set("weights.file", "other.safetensors"), "weights.file"),
]


@pytest.mark.parametrize(("corrupt", "field"), CORRUPTIONS, ids=[field for _, field in CORRUPTIONS])
def test_validation_error_names_file_and_field(
    saved_folder: Path, corrupt: Callable[[dict[str, Any]], object], field: str
) -> None:
    rewrite_model_json(saved_folder, corrupt)
    with pytest.raises(BundleError) as raised:
        load_bundle(saved_folder)
    assert str(raised.value).startswith(f"{saved_folder / 'model.json'}: {field}")


def test_not_a_bundle_and_bad_json_are_bundle_errors(tmp_path: Path, saved_folder: Path) -> None:
    with pytest.raises(BundleError, match=re.escape("no model.json")):
        load_bundle(tmp_path / "nowhere")
    (saved_folder / "model.json").write_text("{ not json")
    with pytest.raises(BundleError, match=re.escape("cannot read model.json")):
        load_bundle(saved_folder)


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def test_one_altered_byte_fails_the_checksum(saved_folder: Path) -> None:
    bundle = load_bundle(saved_folder)
    _flip_one_byte(saved_folder / "model.safetensors")
    with pytest.raises(BundleError, match=r"weights\.sha256: .* does not match"):
        load_bundle(saved_folder)
    with pytest.raises(BundleError, match=re.escape("weights.sha256")):
        load_network(bundle)


def test_weights_missing_a_tensor_are_refused_naming_it(tmp_path: Path, saved_folder: Path) -> None:
    bundle = make_bundle()
    partial = random_state_dict(bundle)
    dropped = sorted(partial)[0]
    del partial[dropped]
    with pytest.raises(BundleError, match=f"lack 1 tensors of the network: {dropped}"):
        save_bundle(tmp_path / "other", bundle, partial)
    assert not (tmp_path / "other").exists()

    save_file(partial, str(saved_folder / "model.safetensors"))
    rewrite_model_json(
        saved_folder, _set("weights.sha256", sha256_of_file(saved_folder / "model.safetensors"))
    )
    with pytest.raises(BundleError, match=dropped):
        load_network(load_bundle(saved_folder))


def test_weights_of_another_shape_are_refused(tmp_path: Path) -> None:
    bundle = make_bundle()
    wider = replace(bundle, architecture=ArchitectureSpec("UNet", {"channels": [4, 16], "strides": [2]}))
    with pytest.raises(BundleError, match="weight shapes do not fit"):
        save_bundle(tmp_path / "model", bundle, random_state_dict(wider))


def test_save_refuses_an_existing_folder_unless_overwrite(saved_folder: Path) -> None:
    first_hash = load_bundle(saved_folder).weights_sha256
    newer = make_bundle(version="1.0.1")
    with pytest.raises(BundleError, match="already exists"):
        save_bundle(saved_folder, newer, random_state_dict(newer, seed=5))
    save_bundle(saved_folder, newer, random_state_dict(newer, seed=5), overwrite=True)
    reloaded = load_bundle(saved_folder)
    assert reloaded.version == "1.0.1"
    assert reloaded.weights_sha256 != first_hash
    assert [path.name for path in saved_folder.parent.iterdir()] == [saved_folder.name]


def test_invalid_bundle_is_not_saved(tmp_path: Path) -> None:
    bundle = replace(make_bundle(), name="Not A Name")
    with pytest.raises(BundleError, match=re.escape("model.json: name")):
        save_bundle(tmp_path / "model", bundle, random_state_dict(bundle))
    assert list(tmp_path.iterdir()) == []


def test_semver_key_orders_prereleases_before_releases() -> None:
    versions = ["1.10.0", "1.2.0", "1.2.0-rc.1", "0.9.9"]
    assert sorted(versions, key=semver_key) == ["0.9.9", "1.2.0-rc.1", "1.2.0", "1.10.0"]


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("VNet", {}, "architecture.name"),
        ("UNet", {"strides": [2]}, "architecture.params.channels: missing"),
        ("UNet", {"channels": [4, 8], "strides": [2, 2]}, "architecture.params.strides"),
        ("UNet", {"channels": [4, -8], "strides": [2]}, "architecture.params.channels"),
        ("UNet", {"channels": [4, 8], "strides": [2], "spatial_dims": 3}, "architecture.params.spatial_dims"),
        ("UNet", {"channels": [4, 8], "strides": [2], "widht": 3}, "architecture.params.widht"),
        ("BasicUNet", {"features": [4, 4, 8, 8, 16]}, "architecture.params.features"),
        ("UNet", {"channels": [4, 8], "strides": [2], "norm": "no-such-norm"}, "architecture.params:"),
    ],
)
def test_bad_architecture_is_reported_by_field(name: str, params: dict[str, Any], field: str) -> None:
    with pytest.raises(BundleError) as raised:
        build_network(ArchitectureSpec(name, params), 3, 1, 2)
    assert str(raised.value).startswith(field)


def test_basic_unet_is_built_with_bundle_channels() -> None:
    spec = ArchitectureSpec("BasicUNet", {"features": [4, 4, 8, 8, 16, 4]})
    network = build_network(spec, 2, 1, 3).eval()
    with torch.no_grad():
        assert network(torch.rand(1, 1, 32, 32)).shape == (1, 3, 32, 32)
