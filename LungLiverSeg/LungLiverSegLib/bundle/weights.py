"""Network weights of a bundle: built, checked and loaded (safetensors only), and saved atomically."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import uuid
from collections.abc import Mapping
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
from LungLiverSegLib.bundle.networks import build_network
from LungLiverSegLib.bundle.spec import MAX_KEYS_IN_MESSAGE, MODEL_CARD, MODEL_JSON, WEIGHTS_FILE, ModelBundle
from LungLiverSegLib.errors import BundleError


def _key_list(keys: set[str]) -> str:
    shown = sorted(keys)[:MAX_KEYS_IN_MESSAGE]
    more = len(keys) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def _check_state_dict(network: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Fail, naming the keys, unless ``state_dict`` fits ``network`` exactly."""
    expected = network.state_dict()
    missing, unexpected = set(expected) - set(state_dict), set(state_dict) - set(expected)
    if missing:
        raise BundleError(
            f"{source}: weights lack {len(missing)} tensors of the network: {_key_list(missing)}"
        )
    if unexpected:
        raise BundleError(
            f"{source}: weights have {len(unexpected)} tensors the network lacks: {_key_list(unexpected)}"
        )
    wrong_shapes = {
        f"{key} {tuple(state_dict[key].shape)} != {tuple(tensor.shape)}"
        for key, tensor in expected.items()
        if state_dict[key].shape != tensor.shape
    }
    if wrong_shapes:
        raise BundleError(f"{source}: weight shapes do not fit the network: {_key_list(wrong_shapes)}")


def _build_bundle_network(bundle: ModelBundle, source: str) -> nn.Module:
    try:
        return build_network(bundle.architecture, bundle.dims, bundle.in_channels, bundle.out_channels)
    except BundleError as error:
        raise BundleError(f"{source}: {error}") from error


def load_network(bundle: ModelBundle, device: str | torch.device = "cpu") -> nn.Module:
    """Build the bundle's network and load its verified weights, in eval mode on ``device``.

    The weights are read once into memory, hashed, and parsed from those same bytes, so the
    file cannot change between the checksum and the parse.
    """
    source = str(bundle.weights_path)
    weights = bundle.weights_path.read_bytes()
    actual = hashlib.sha256(weights).hexdigest()
    if actual != bundle.weights_sha256:
        raise _checksum_error(bundle, actual)
    network = _build_bundle_network(bundle, source)
    try:
        state_dict = load_safetensors_bytes(weights)
    except SafetensorError as error:
        raise BundleError(f"{source}: not a valid safetensors file: {error}") from error
    _check_state_dict(network, state_dict, source)
    network.load_state_dict(state_dict, strict=True)
    return network.to(device).eval()


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------


def move_into_place(staging: Path, destination: Path, *, overwrite: bool) -> None:
    """Rename a finished ``staging`` folder to ``destination`` (same file system), so readers see
    either the old bundle or the complete new one, never a half-written folder."""
    if not destination.exists():
        staging.rename(destination)
        return
    if not overwrite:
        raise BundleError(f"{destination} already exists; use overwrite to replace it")
    backup = destination.with_name(f".{destination.name}.old-{uuid.uuid4().hex[:8]}")
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
    _check_state_dict(_build_bundle_network(bundle, source), state_dict, source)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        _write_bundle_files(staging, bundle, state_dict, card_markdown, source)
        move_into_place(staging, folder, overwrite=overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
