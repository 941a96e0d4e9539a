"""The only place segmentation networks are constructed.

A bundle names its architecture and the constructor parameters; inference and Training both
call ``build_network`` so a trained state dict always lands in an identical module. The classes
are MONAI's ``UNet`` and ``BasicUNet`` rebuilt in plain torch (``bundle.unets`` says why and how
they are kept identical), so that segmenting never imports MONAI. Parameters are checked here,
before a constructor sees them, so that a mistake in model.json is reported as
``architecture.params.<key>`` instead of a stack trace from deep inside a constructor.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from LungLiverSegLib.bundle.spec import ARCHITECTURE_NAMES, ArchitectureSpec, check_architecture_name
from LungLiverSegLib.bundle.unets import BasicUNet, UNet
from LungLiverSegLib.errors import BundleError

FILLED_FROM_BUNDLE = ("spatial_dims", "in_channels", "out_channels")
"""Constructor arguments that come from the bundle's dims/in_channels/labels, never from params."""

BASIC_UNET_FEATURE_COUNT = 6


def _fail(key: str, message: str) -> BundleError:
    return BundleError(f"architecture.params.{key}: {message}")


def _positive_ints(params: Mapping[str, Any], key: str, length: int | None = None) -> list[int]:
    """Check that ``params[key]`` is a list of positive ints (of ``length`` items when given)."""
    values = params[key]
    if not isinstance(values, list | tuple) or not all(
        isinstance(value, int) and not isinstance(value, bool) and value > 0 for value in values
    ):
        raise _fail(key, f"expected a list of positive integers, got {values!r}")
    if length is not None and len(values) != length:
        raise _fail(key, f"expected {length} integers, got {len(values)}")
    return list(values)


def _check_unet(params: Mapping[str, Any], dims: int) -> None:
    channels = _positive_ints(params, "channels")
    if len(channels) < 2:
        raise _fail("channels", "expected at least 2 levels")
    strides = params["strides"]
    if not isinstance(strides, list | tuple) or len(strides) != len(channels) - 1:
        raise _fail(
            "strides", f"expected {len(channels) - 1} strides (one fewer than channels), got {strides!r}"
        )
    for stride in strides:
        per_axis = stride if isinstance(stride, list | tuple) else [stride] * dims
        if len(per_axis) != dims or not all(isinstance(step, int) and step > 0 for step in per_axis):
            raise _fail(
                "strides", f"each stride must be a positive integer or {dims} of them, got {stride!r}"
            )


def _check_basic_unet(params: Mapping[str, Any], dims: int) -> None:
    if "features" in params:
        _positive_ints(params, "features", BASIC_UNET_FEATURE_COUNT)


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
    except (ValueError, TypeError, KeyError, AssertionError, NotImplementedError) as error:
        raise BundleError(f"architecture.params: {architecture.name} rejected them: {error}") from error
