"""Fuzzing what a bundle's author controls: model.json and the weights file's safetensors header.

Whatever they write, listing and loading the bundle either works or raises a ``LungLiverSegError``
(one line for the user), never anything else: a valid document with fields replaced by random JSON
(huge numbers, NaN, odd unicode keys, deep nesting), keys added or removed; random or mutated
headers over the real tensor data. Derandomized, so every run tries the same inputs.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from factories import forge_weights, save_tiny_bundle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from LungLiverSegLib.bundle.catalogue import format_models_table, user_entry
from LungLiverSegLib.bundle.model_json import load_bundle
from LungLiverSegLib.bundle.weights import load_network
from LungLiverSegLib.errors import LungLiverSegError

pytestmark = [
    pytest.mark.fuzz,
    pytest.mark.filterwarnings("ignore:Initializing zero-element tensors"),  # layers of size 0 asked for
]

FUZZ = settings(
    max_examples=500,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
NESTING_MARK = "__nested__"

Path_ = tuple[str | int, ...]

SPECIAL_NUMBERS = st.sampled_from(
    [0, -1, 1, 255, 256, 2**31, 2**63, 10**400, -(10**400), 1e308, float("nan"), float("inf"), 3.0]
)
ODD_TEXT = st.sampled_from(["", "\u00b2", "\uff11", "0001", "-1", "1e3", " 1", "\u0663", "..", "a" * 300])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | SPECIAL_NUMBERS
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | ODD_TEXT
)
KEYS = st.text(max_size=8) | ODD_TEXT
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=10,
)
VALUES = JSON_VALUES | st.sampled_from([NESTING_MARK])


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny bundle, its files rewritten by every example."""
    return save_tiny_bundle(tmp_path_factory.mktemp("fuzz") / "tiny-lungs-v1.0.0")


@pytest.fixture(scope="module")
def originals(folder: Path) -> tuple[dict[str, Any], bytes]:
    return json.loads((folder / "model.json").read_text()), (folder / "model.safetensors").read_bytes()


def paths(document: object, prefix: Path_ = ()) -> list[Path_]:
    """Every path into a JSON document (the document itself is ``()``)."""
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += paths(value, (*prefix, index))
    return found


def mutated(document: Any, path: Path_, action: str, key: str, value: object) -> Any:
    """``document`` with the value at ``path`` replaced, deleted, or given the key ``key``."""
    if not path:
        return value if action == "replace" else document
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "add" and isinstance(parent[last], dict):
        parent[last][key] = value
    else:
        parent[last] = value
    return document


@st.composite
def mutations(draw: st.DrawFn, document: Any) -> Any:
    """``document`` (a copy) after one to three random changes."""
    document = json.loads(json.dumps(document))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(document)))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        document = mutated(document, path, action, draw(KEYS), draw(VALUES))
    return document


def as_text(document: object, nesting: int) -> str:
    """JSON text of ``document``, the nesting mark standing for ``nesting`` levels of lists."""
    nested = "[" * nesting + "0" + "]" * nesting
    return json.dumps(document).replace(json.dumps(NESTING_MARK), nested)


def list_and_load(folder: Path) -> None:
    """What a user does with a bundle: list it, then load it; only our errors may come out."""
    with contextlib.suppress(LungLiverSegError):
        format_models_table([user_entry(folder)])
        load_network(load_bundle(folder))


@FUZZ
@given(data=st.data(), nesting=st.sampled_from([1, 33, 500, 100_000]))
def test_any_model_json_lists_and_loads_or_is_one_error(folder, originals, data, nesting) -> None:
    document, weights = originals
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "model.json").write_text(as_text(data.draw(mutations(document)), nesting))
    list_and_load(folder)


SIZES = st.integers(-2, 40) | SPECIAL_NUMBERS
LAYER_NAMES = st.sampled_from(
    ["instance", "batch", "group", "layer", "prelu", "relu", "softmax", "dropout", "x"]
)
LAYER_ARGUMENTS = st.sampled_from(
    ["num_parameters", "num_groups", "num_features", "eps", "affine", "negative_slope", "dim", "p", "inplace"]
)
LAYERS = st.none() | LAYER_NAMES | st.tuples(LAYER_NAMES, st.dictionaries(LAYER_ARGUMENTS, SIZES, max_size=2))
PER_AXIS = st.integers(1, 3) | SIZES | st.lists(SIZES, max_size=4)
LAYER_OPTIONS = {"act": LAYERS, "norm": LAYERS, "dropout": LAYERS | SIZES, "bias": st.booleans() | SIZES}
UNET_OPTIONS = {
    "kernel_size": PER_AXIS,
    "up_kernel_size": PER_AXIS,
    "num_res_units": st.integers(0, 2) | SIZES,
    "adn_ordering": st.text("NDAX", max_size=4),
    **LAYER_OPTIONS,
}
BASIC_UNET_OPTIONS = {"upsample": st.sampled_from(["deconv", "pixelshuffle"]), **LAYER_OPTIONS}


@st.composite
def unet_params(draw: st.DrawFn) -> dict[str, Any]:
    """UNet parameters near the valid ones: strides mostly one fewer than channels, small sizes."""
    channels = draw(st.lists(st.integers(1, 8), min_size=2, max_size=4) | st.lists(SIZES, max_size=5))
    levels = max(len(channels) - 1, 0)
    strides = draw(st.lists(PER_AXIS, min_size=levels, max_size=levels) | st.lists(SIZES, max_size=5))
    return {
        "channels": channels,
        "strides": strides,
        **draw(st.fixed_dictionaries({}, optional=UNET_OPTIONS)),
    }


@st.composite
def basic_unet_params(draw: st.DrawFn) -> dict[str, Any]:
    features = draw(st.lists(st.integers(1, 8), min_size=6, max_size=6) | st.lists(SIZES, max_size=7))
    return {"features": features, **draw(st.fixed_dictionaries({}, optional=BASIC_UNET_OPTIONS))}


@FUZZ
@given(
    architecture=st.tuples(st.just("UNet"), unet_params())
    | st.tuples(st.just("BasicUNet"), basic_unet_params())
)
def test_any_architecture_params_list_and_load_or_are_one_error(folder, originals, architecture) -> None:
    document, weights = originals
    name, params = architecture
    (folder / "model.safetensors").write_bytes(weights)
    document = {**document, "architecture": {"name": name, "params": params}}
    (folder / "model.json").write_text(json.dumps(document))
    list_and_load(folder)


def _safetensors(header: bytes, data: bytes) -> bytes:
    return len(header).to_bytes(8, "little") + header + data


def _split(weights: bytes) -> tuple[dict[str, Any], bytes]:
    length = int.from_bytes(weights[:8], "little")
    return json.loads(weights[8 : 8 + length]), weights[8 + length :]


@FUZZ
@given(data=st.data(), resize=st.integers(-64, 64))
def test_any_mutated_weights_header_loads_or_is_one_error(folder, originals, data, resize) -> None:
    document, weights = originals
    header, tensors = _split(weights)
    header = data.draw(mutations(header))
    tensors = tensors[: len(tensors) + resize] if resize < 0 else tensors + bytes(resize)
    (folder / "model.json").write_text(json.dumps(document))
    forge_weights(folder, _safetensors(as_text(header, 100_000).encode(), tensors))
    list_and_load(folder)


@FUZZ
@given(length=st.integers(0, 2**64 - 1) | st.integers(0, 64), rest=st.binary(max_size=256))
def test_any_bytes_as_weights_load_or_are_one_error(folder, originals, length, rest) -> None:
    document, _ = originals
    (folder / "model.json").write_text(json.dumps(document))
    forge_weights(folder, length.to_bytes(8, "little") + rest)
    list_and_load(folder)
