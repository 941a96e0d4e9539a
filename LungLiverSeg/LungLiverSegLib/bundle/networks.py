"""The only place segmentation networks are constructed.

A bundle names its architecture and the constructor parameters; inference and Training both
call ``build_network`` so a trained state dict always lands in an identical module. The classes
are MONAI's ``UNet`` and ``BasicUNet`` rebuilt in plain torch (``bundle.unets`` says why and how
they are kept identical), so that segmenting never imports MONAI. Parameters are checked here,
before a constructor sees them, so that a mistake in model.json is reported as
``architecture.params.<key>`` instead of a stack trace from deep inside a constructor, and every
size is bounded, so that no model.json can ask for a network that cannot be allocated.
``build_network_on_meta`` builds the module tree without memory (torch's meta device): what a
weights file must fit, checked before anything is allocated.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from LungLiverSegLib.bundle.json_fields import is_int
from LungLiverSegLib.bundle.spec import ARCHITECTURE_NAMES, ArchitectureSpec, check_architecture_name
from LungLiverSegLib.bundle.unets import BasicUNet, UNet
from LungLiverSegLib.errors import BundleError

FILLED_FROM_BUNDLE = ("spatial_dims", "in_channels", "out_channels")
"""Constructor arguments that come from the bundle's dims/in_channels/labels, never from params."""

BASIC_UNET_FEATURE_COUNT = 6
MAX_CHANNELS = 2048
MAX_LEVELS = 8
MAX_STRIDE = 8
MAX_KERNEL_SIZE = 15
MAX_RES_UNITS = 8
MAX_WEIGHTS = 1 << 28
"""Elements in all tensors of a network (1 GiB as float32; the bundled 3D U-Net has 4.8 million)."""
LAYER_KEYS = ("act", "norm", "dropout")
RESERVED_LAYER_ARGUMENTS = ("device", "dtype")
"""Where and in which precision a network lives is decided by the loader, never by model.json."""


def _fail(key: str, message: str) -> BundleError:
    return BundleError(f"architecture.params.{key}: {message}")


def _int_in(value: object, lowest: int, highest: int) -> bool:
    return is_int(value) and lowest <= value <= highest


def _counts(params: Mapping[str, Any], key: str, maximum: int, length: int | None = None) -> list[int]:
    """Check that ``params[key]`` is a list of integers in 1..``maximum`` (``length`` of them when given)."""
    values = params[key]
    if not isinstance(values, list | tuple) or not all(_int_in(value, 1, maximum) for value in values):
        raise _fail(key, f"expected a list of integers in 1..{maximum}, got {values!r}")
    if length is not None and len(values) != length:
        raise _fail(key, f"expected {length} integers, got {len(values)}")
    return list(values)


def _check_per_axis(key: str, value: object, dims: int, maximum: int) -> None:
    """A size given once for all axes or once per axis (a stride, a kernel size)."""
    per_axis = value if isinstance(value, list | tuple) else [value] * dims
    if len(per_axis) != dims or not all(_int_in(size, 1, maximum) for size in per_axis):
        raise _fail(key, f"expected an integer in 1..{maximum} or {dims} of them, got {value!r}")


def _check_layers(params: Mapping[str, Any]) -> None:
    """Layer specifiers ``name`` or ``[name, {arguments}]`` may not choose a device or dtype."""
    for key in LAYER_KEYS:
        spec = params.get(key)
        if isinstance(spec, list | tuple) and len(spec) == 2 and isinstance(spec[1], dict):
            reserved = [name for name in RESERVED_LAYER_ARGUMENTS if name in spec[1]]
            if reserved:
                raise _fail(key, f"{', '.join(reserved)} may not be set in model.json")


def _check_unet(params: Mapping[str, Any], dims: int) -> None:
    channels = _counts(params, "channels", MAX_CHANNELS)
    if not 2 <= len(channels) <= MAX_LEVELS:
        raise _fail("channels", f"expected 2 to {MAX_LEVELS} levels, got {len(channels)}")
    strides = params["strides"]
    if not isinstance(strides, list | tuple) or len(strides) != len(channels) - 1:
        raise _fail(
            "strides", f"expected {len(channels) - 1} strides (one fewer than channels), got {strides!r}"
        )
    for stride in strides:
        _check_per_axis("strides", stride, dims, MAX_STRIDE)
    for key in ("kernel_size", "up_kernel_size"):
        if key in params:
            _check_per_axis(key, params[key], dims, MAX_KERNEL_SIZE)
    units = params.get("num_res_units", 0)
    if not _int_in(units, 0, MAX_RES_UNITS):
        raise _fail("num_res_units", f"expected an integer in 0..{MAX_RES_UNITS}, got {units!r}")
    ordering = params.get("adn_ordering", "NDA")
    if not isinstance(ordering, str) or len(ordering) > len("NDA") or set(ordering.upper()) - set("NDA"):
        raise _fail("adn_ordering", f"expected up to 3 of the letters N, D, A, got {ordering!r}")
    _check_layers(params)


def _check_basic_unet(params: Mapping[str, Any], dims: int) -> None:
    if "features" in params:
        _counts(params, "features", MAX_CHANNELS, BASIC_UNET_FEATURE_COUNT)
    _check_layers(params)


_ParamsCheck = Callable[[Mapping[str, Any], int], None]

ARCHITECTURES: dict[str, tuple[type[nn.Module], _ParamsCheck]] = {
    "UNet": (UNet, _check_unet),
    "BasicUNet": (BasicUNet, _check_basic_unet),
}
"""Architecture name in model.json -> (class with MONAI's signature and state dict, parameter check)."""
assert set(ARCHITECTURES) == set(ARCHITECTURE_NAMES), "spec.ARCHITECTURE_NAMES must list exactly these"


def _check_param_names(network_class: type[nn.Module], params: Mapping[str, Any]) -> None:
    """Reject reserved, unknown and missing constructor arguments, naming the key."""
    signature = inspect.signature(network_class.__init__)
    accepted = set(signature.parameters) - {"self"}
    for key in params:
        if key in FILLED_FROM_BUNDLE:
            raise _fail(key, "is filled from the bundle's dims/in_channels/labels; remove it")
        if key not in accepted:
            raise _fail(key, f"unknown parameter of {network_class.__name__}")
    for key, parameter in signature.parameters.items():
        required = parameter.default is inspect.Parameter.empty and key not in FILLED_FROM_BUNDLE
        if key != "self" and required and key not in params:
            raise _fail(key, "missing")


def build_network(
    architecture: ArchitectureSpec, dims: int, in_channels: int, out_channels: int
) -> nn.Module:
    """Construct the untrained network described by ``architecture`` for ``dims``-D images."""
    check_architecture_name(architecture.name)
    network_class, check_values = ARCHITECTURES[architecture.name]
    params = dict(architecture.params)
    _check_param_names(network_class, params)
    check_values(params, dims)
    try:
        return network_class(spatial_dims=dims, in_channels=in_channels, out_channels=out_channels, **params)
    except (ValueError, TypeError, KeyError, AssertionError, NotImplementedError, RuntimeError) as error:
        # RuntimeError: torch refusing a layer argument (a negative size, say)
        raise BundleError(f"architecture.params: {architecture.name} rejected them: {error}") from error


def build_network_on_meta(
    architecture: ArchitectureSpec, dims: int, in_channels: int, out_channels: int
) -> nn.Module:
    """``build_network`` on torch's meta device: every tensor's shape and dtype, no memory; refused
    when its tensors would hold more than ``MAX_WEIGHTS`` elements (a layer argument can ask for
    any size)."""
    with torch.device("meta"):
        network = build_network(architecture, dims, in_channels, out_channels)
    elements = sum(tensor.numel() for tensor in network.state_dict().values())
    if elements > MAX_WEIGHTS:
        raise BundleError(
            f"architecture.params: the network would have {elements:,} weights, more than {MAX_WEIGHTS:,}"
        )
    return network
