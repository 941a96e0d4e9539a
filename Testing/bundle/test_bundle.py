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
from factories import RIGHT, forge_weights, make_bundle, random_state_dict, save_tiny_bundle
from LungLiverSegLib.bundle import networks, weights
from LungLiverSegLib.bundle.model_json import bundle_from_json, bundle_to_json, load_bundle, sha256_of_file
from LungLiverSegLib.bundle.networks import build_network
from LungLiverSegLib.bundle.spec import (
    ArchitectureSpec,
    semver_key,
)
from LungLiverSegLib.bundle.weights import load_network, save_bundle
from LungLiverSegLib.errors import BundleError
from safetensors.torch import save, save_file


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


def _label(name: str) -> dict[str, Any]:
    return {"name": name, "color": [0.5, 0.5, 0.5]}


def _nested(depth: int) -> object:
    value: object = 0
    for _ in range(depth):
        value = [value]
    return value


HOSTILE = [  # issue 16, class 4: each crashed the loader, or passed to fail much later
    (_set("labels.\u00b2", _label("superscript two")), "labels.\u00b2"),
    (_set("labels.\uff11", _label("full-width one")), "labels.\uff11"),
    (_set("labels.0001", _label("leading zeros")), "labels.0001"),
    (_set("labels.256", _label("beyond uint8")), "labels.256"),
    (_set("postprocessing.min_volume_ml", 10**400), "postprocessing.min_volume_ml"),
    (_set("dims", 3.0), "dims"),
    (_set("name", "a" * 65), "name"),
    (_set("inference.patch_size", [10**6] * 3), "inference.patch_size"),
    (_set("inference.batch_size", 10**9), "inference.batch_size"),
    (_set("in_channels", 10**9), "in_channels"),
    (_set("provenance.notes", _nested(40)), "provenance.notes"),
]


@pytest.mark.parametrize(
    ("corrupt", "field"), CORRUPTIONS + HOSTILE, ids=[field for _, field in CORRUPTIONS + HOSTILE]
)
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


@pytest.mark.parametrize(
    ("text", "reason"),
    [("[" * 100_000, "nested too deeply"), ('{"schema_version": 1' + "0" * 5000 + "}", "4300 digits")],
    ids=["deeper than the JSON reader recurses", "an integer Python will not convert"],
)
def test_a_model_json_python_cannot_parse_is_one_bundle_error(
    saved_folder: Path, text: str, reason: str
) -> None:
    (saved_folder / "model.json").write_text(text)
    with pytest.raises(BundleError, match=rf"model\.json: cannot read model\.json: .*{reason}"):
        load_bundle(saved_folder)


def test_a_weights_header_that_claims_exabytes_is_refused_reading_nothing(saved_folder: Path) -> None:
    forge_weights(saved_folder, (1 << 62).to_bytes(8, "little") + b"{}")
    with pytest.raises(
        BundleError, match="not a valid safetensors file: a header of 4611686018427387904 bytes"
    ):
        load_bundle(saved_folder, verify_checksum=False)


def test_weights_are_checked_against_a_network_that_holds_no_memory_first(
    saved_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A misfit is found before a real network is allocated or a tensor is read."""
    wider = replace(
        make_bundle(), architecture=ArchitectureSpec("UNet", {"channels": [4, 16], "strides": [2]})
    )
    misfit = save(random_state_dict(wider))
    fitting = (saved_folder / "model.safetensors").read_bytes()
    devices: list[str] = []
    original = networks.build_network

    def recording(*arguments: Any) -> torch.nn.Module:
        devices.append(torch.empty(0).device.type)
        return original(*arguments)

    monkeypatch.setattr(networks, "build_network", recording)
    monkeypatch.setattr(weights, "build_network", recording)
    forge_weights(saved_folder, misfit)
    with pytest.raises(BundleError, match="do not fit the network"):
        load_network(load_bundle(saved_folder))
    assert devices == ["meta"]
    forge_weights(saved_folder, fitting)
    load_network(load_bundle(saved_folder))
    assert devices == ["meta", "meta", "cpu"]


def test_a_layer_argument_asking_for_terabytes_is_refused_before_allocating(saved_folder: Path) -> None:
    params = {
        "channels": [4, 8],
        "strides": [2],
        "num_res_units": 0,
        "act": ["prelu", {"num_parameters": 1 << 40}],
    }
    rewrite_model_json(saved_folder, _set("architecture.params", params))
    refusal = r"model\.json: architecture\.params: the network would have [\d,]+ weights, more than 268,"
    with pytest.raises(BundleError, match=refusal):
        load_network(load_bundle(saved_folder, verify_checksum=False))


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
    with pytest.raises(BundleError, match="weight shapes or dtypes do not fit"):
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


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"channels": [4, 4096], "strides": [2]}, "architecture.params.channels"),
        ({"channels": [4] * 9, "strides": [2] * 8}, "architecture.params.channels"),
        ({"channels": [4, 8], "strides": [16]}, "architecture.params.strides"),
        ({"channels": [4, 8], "strides": [2], "kernel_size": 17}, "architecture.params.kernel_size"),
        (
            {"channels": [4, 8], "strides": [2], "up_kernel_size": [3, 3, 0]},
            "architecture.params.up_kernel_size",
        ),
        ({"channels": [4, 8], "strides": [2], "num_res_units": 9}, "architecture.params.num_res_units"),
        (
            {"channels": [4, 8], "strides": [2], "adn_ordering": "NDA" * 1000},
            "architecture.params.adn_ordering",
        ),
        (
            {"channels": [4, 8], "strides": [2], "act": ["prelu", {"device": "meta"}]},
            "architecture.params.act",
        ),
    ],
    ids=["wide", "deep", "stride", "kernel", "up kernel", "units", "ordering", "device"],
)
def test_architecture_sizes_are_bounded_and_placement_is_the_loaders(
    params: dict[str, Any], field: str
) -> None:
    with pytest.raises(BundleError) as raised:
        build_network(ArchitectureSpec("UNet", params), 3, 1, 2)
    assert str(raised.value).startswith(field)


def test_basic_unet_is_built_with_bundle_channels() -> None:
    spec = ArchitectureSpec("BasicUNet", {"features": [4, 4, 8, 8, 16, 4]})
    network = build_network(spec, 2, 1, 3).eval()
    with torch.no_grad():
        assert network(torch.rand(1, 1, 32, 32)).shape == (1, 3, 32, 32)
