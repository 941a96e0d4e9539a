"""Network weights of a bundle: built, checked and loaded (safetensors only), and saved atomically.

Loading checks before it spends: the weights file's header (names, shapes, dtypes) against the
network built on torch's meta device (no memory), then the checksum of the bytes, and only then
allocates the real network and reads the tensors; saving checks the state dict the same way.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save_file
from torch import nn

from LungLiverSegLib.bundle.card import model_card
from LungLiverSegLib.bundle.model_json import (
    _checksum_error,
    bundle_from_json,
    bundle_to_json,
    sha256_of_file,
)
from LungLiverSegLib.bundle.networks import build_network, build_network_on_meta
from LungLiverSegLib.bundle.safetensors_header import TensorEntry, read_header
from LungLiverSegLib.bundle.spec import MODEL_CARD, MODEL_JSON, WEIGHTS_FILE, ModelBundle, listed
from LungLiverSegLib.errors import BundleError

SAFETENSORS_DTYPES = {
    torch.bool: "BOOL",
    torch.uint8: "U8",
    torch.int8: "I8",
    torch.int16: "I16",
    torch.int32: "I32",
    torch.int64: "I64",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float32: "F32",
    torch.float64: "F64",
}
"""torch dtype -> its name in a safetensors header (the dtypes a network's state dict holds)."""


def _entries(state_dict: Mapping[str, torch.Tensor]) -> dict[str, TensorEntry]:
    return {
        key: TensorEntry(SAFETENSORS_DTYPES.get(tensor.dtype, str(tensor.dtype)), tuple(tensor.shape))
        for key, tensor in state_dict.items()
    }


def _check_fit(expected: Mapping[str, TensorEntry], actual: Mapping[str, TensorEntry], source: str) -> None:
    """Fail, naming the tensors, unless ``actual`` has the very names, shapes and dtypes of ``expected``."""
    missing, unexpected = set(expected) - set(actual), set(actual) - set(expected)
    if missing:
        raise BundleError(f"{source}: weights lack {len(missing)} tensors of the network: {listed(missing)}")
    if unexpected:
        raise BundleError(
            f"{source}: weights have {len(unexpected)} tensors the network lacks: {listed(unexpected)}"
        )
    wrong = {
        f"{key} {actual[key].dtype}{list(actual[key].shape)} != {entry.dtype}{list(entry.shape)}"
        for key, entry in expected.items()
        if actual[key] != entry
    }
    if wrong:
        raise BundleError(f"{source}: weight shapes or dtypes do not fit the network: {listed(wrong)}")


def _built(build: Callable[..., nn.Module], bundle: ModelBundle, source: str) -> nn.Module:
    """``build`` the bundle's network; an error names ``source`` (the file being loaded or saved)."""
    try:
        return build(bundle.architecture, bundle.dims, bundle.in_channels, bundle.out_channels)
    except BundleError as error:
        raise BundleError(f"{source}: {error}") from error


def expected_tensors(bundle: ModelBundle, source: str) -> dict[str, TensorEntry]:
    """Name, shape and dtype of every tensor the bundle's network has, with no memory allocated."""
    return _entries(_built(build_network_on_meta, bundle, source).state_dict())


def load_network(bundle: ModelBundle, device: str | torch.device = "cpu") -> nn.Module:
    """Build the bundle's network and load its verified weights, in eval mode on ``device``.

    The file's header must fit the network (built on the meta device) before anything is read or
    allocated. The weights are then read once into memory, hashed, and parsed from those same
    bytes, so the file cannot change between the checksum and the parse (the parsed tensors are
    checked against the network again for the same reason).
    """
    source, model_json = str(bundle.weights_path), str(bundle.stored_folder / MODEL_JSON)
    expected = expected_tensors(bundle, model_json)
    _check_fit(expected, read_header(bundle.weights_path), source)
    weights = bundle.weights_path.read_bytes()
    actual = hashlib.sha256(weights).hexdigest()
    if actual != bundle.weights_sha256:
        raise _checksum_error(bundle, actual)
    try:
        state_dict = load_safetensors_bytes(weights)
    except SafetensorError as error:
        raise BundleError(f"{source}: not a valid safetensors file: {error}") from error
    _check_fit(expected, _entries(state_dict), source)
    network = _built(build_network, bundle, model_json)
    network.load_state_dict(state_dict, strict=True)
    return network.to(device).eval()


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------


def move_into_place(staging: Path, destination: Path, *, overwrite: bool) -> None:
    """Rename a finished ``staging`` folder to ``destination`` (same file system), so readers see
    either the old bundle or the complete new one, never a half-written folder. The replaced one
    is moved beside ``staging`` first: inside an import's staging folder, it is cleaned up with it
    even if the process is killed before removing it."""
    if not destination.exists():
        staging.rename(destination)
        return
    if not overwrite:
        raise BundleError(f"{destination} already exists; use overwrite to replace it")
    backup = staging.with_name(f"{staging.name}.old-{uuid.uuid4().hex[:8]}")
    destination.rename(backup)
    try:
        staging.rename(destination)
    except OSError:
        backup.rename(destination)
        raise
    shutil.rmtree(backup)


def _write_bundle_files(
    staging: Path,
    bundle: ModelBundle,
    state_dict: Mapping[str, torch.Tensor],
    card_markdown: str | None,
    source: str,
) -> None:
    """Write weights, then the validated model.json that records their checksum, then the card."""
    tensors = {key: tensor.detach().cpu().contiguous() for key, tensor in state_dict.items()}
    weights_path = staging / WEIGHTS_FILE
    save_file(tensors, str(weights_path))
    saved = replace(
        bundle, weights_file=WEIGHTS_FILE, weights_sha256=sha256_of_file(weights_path), folder=None
    )
    document = bundle_to_json(saved)
    bundle_from_json(document, source)
    (staging / MODEL_JSON).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    (staging / MODEL_CARD).write_text(card_markdown or model_card(saved), encoding="utf-8")


def save_bundle(
    folder: str | Path,
    bundle: ModelBundle,
    state_dict: Mapping[str, torch.Tensor],
    card_markdown: str | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``bundle`` with weights ``state_dict`` as the folder ``folder``, atomically.

    The state dict is checked against the network the bundle describes before anything is
    written, so Training cannot produce a bundle that fails to load. Returns ``folder``.
    """
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise BundleError(f"{folder} already exists; use overwrite to replace it")
    source = str(folder / MODEL_JSON)
    _check_fit(expected_tensors(bundle, source), _entries(state_dict), source)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        _write_bundle_files(staging, bundle, state_dict, card_markdown, source)
        move_into_place(staging, folder, overwrite=overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
