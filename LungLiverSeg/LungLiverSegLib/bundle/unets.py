# Copyright (c) MONAI Consortium
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
#
# Derived from MONAI 1.6 (monai/networks/nets/unet.py and basic_unet.py, monai/networks/blocks/
# convolutions.py, acti_norm.py and upsample.py, monai/networks/layers/factories.py and utils.py),
# reduced to plain torch by the LungLiverSeg contributors.
"""MONAI's ``UNet`` and ``BasicUNet`` as plain torch modules, so that inference never imports MONAI.

Why not MONAI's own classes: ``import monai`` runs ``monai/__init__``, which imports every MONAI
submodule (transforms, data, apps, SciPy, matplotlib), about 1.4 s of a 3 s chest X-ray segmentation
on a 2-core machine; and ``monai.networks`` cannot be imported without it (it pulls in ``monai.apps``
and import cycles). Inference needs only these few modules.

Each class builds MONAI's module tree with the same names, in the same order: the state-dict keys and
shapes are MONAI's (weights trained with MONAI's classes load unchanged, and the other way round), the
random initialisation for a given seed is MONAI's (modules are created in MONAI's order), and the
forward pass runs the same torch operations in the same order. ``Testing/bundle/test_unets.py``
checks all three against MONAI for every bundled and preset architecture.

Layer names (``act``, ``norm``, ``dropout``) are MONAI's, as a name or ``[name, {arguments}]``, for
the layers torch provides; MONAI's own activations (swish, memswish, mish, geglu), apex's
``instance_nvfuser`` and ``BasicUNet``'s ``pixelshuffle``/``nontrainable`` upsampling are not
supported: a bundle naming them is refused with the name.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

LayerSpec = str | Sequence[Any] | None
"""A MONAI layer specifier: ``"name"`` or ``("name", {keyword arguments})``."""

_PER_DIMS = {
    "conv": (nn.Conv1d, nn.Conv2d, nn.Conv3d),
    "convtrans": (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d),
    "maxpool": (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d),
    "instance": (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d),
    "batch": (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d),
    "dropout": (nn.Dropout, nn.Dropout2d, nn.Dropout3d),
}

NORMS: dict[str, Any] = {
    "instance": _PER_DIMS["instance"],
    "batch": _PER_DIMS["batch"],
    "group": nn.GroupNorm,
    "layer": nn.LayerNorm,
    "localresponse": nn.LocalResponseNorm,
    "syncbatch": nn.SyncBatchNorm,
}
ACTIVATIONS: dict[str, Any] = {
    "elu": nn.ELU,
    "relu": nn.ReLU,
    "leakyrelu": nn.LeakyReLU,
    "prelu": nn.PReLU,
    "relu6": nn.ReLU6,
    "selu": nn.SELU,
    "celu": nn.CELU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "softmax": nn.Softmax,
    "logsoftmax": nn.LogSoftmax,
}
DROPOUTS: dict[str, Any] = {"dropout": _PER_DIMS["dropout"], "alphadropout": nn.AlphaDropout}


def _split(spec: str | Sequence[Any]) -> tuple[str, dict[str, Any]]:
    match spec:
        case str():
            return spec, {}
        case [str() as name, dict() as arguments]:
            return name, dict(arguments)
    raise TypeError("layer specifiers must be a name or a pair [name, {arguments}]")


def _layer_class(table: dict[str, Any], kind: str, name: str, dims: int) -> type[nn.Module]:
    found = table.get(name.lower())
    if found is None:
        raise ValueError(f"unknown {kind} {name!r}; known: {', '.join(sorted(table))}")
    return found[dims - 1] if isinstance(found, tuple) else found


def norm_layer(spec: str | Sequence[Any], dims: int, channels: int) -> nn.Module:
    """MONAI's ``get_norm_layer``: the channel count is filled in where the layer takes one."""
    if spec == "":
        return nn.Identity()
    name, arguments = _split(spec)
    layer = _layer_class(NORMS, "norm", name, dims)
    accepted = inspect.signature(layer).parameters
    for key in ("num_features", "num_channels"):
        if key in accepted:
            arguments.setdefault(key, channels)
    return layer(**arguments)


def act_layer(spec: str | Sequence[Any]) -> nn.Module:
    """MONAI's ``get_act_layer``."""
    if spec == "":
        return nn.Identity()
    name, arguments = _split(spec)
    return _layer_class(ACTIVATIONS, "act", name, 1)(**arguments)


def dropout_layer(spec: str | Sequence[Any] | float, dims: int) -> nn.Module:
    """MONAI's ``get_dropout_layer``: a number is the dropout probability."""
    if spec == "":
        return nn.Identity()
    if isinstance(spec, int | float):
        name, arguments = "dropout", {"p": float(spec)}
    else:
        name, arguments = _split(spec)
    return _layer_class(DROPOUTS, "dropout", name, dims)(**arguments)


class ADN(nn.Sequential):
    """Normalisation, dropout and activation in the order ``ordering`` names them (MONAI's ``ADN``)."""

    def __init__(  # noqa: PLR0913 (MONAI's arguments)
        self,
        ordering: str,
        in_channels: int,
        act: LayerSpec,
        norm: LayerSpec,
        dims: int,
        dropout: LayerSpec | float,
        dropout_dims: int,
    ) -> None:
        super().__init__()
        layers: dict[str, nn.Module | None] = {"A": None, "D": None, "N": None}
        if norm is not None:
            layers["N"] = norm_layer(norm, dims, in_channels)
        if act is not None:
            layers["A"] = act_layer(act)
        if dropout is not None:
            layers["D"] = dropout_layer(dropout, dropout_dims)
        for item in ordering.upper():
            if item not in layers:
                raise ValueError(f"ordering must be a string of {set(layers)}, got {item} in it.")
            if layers[item] is not None:
                self.add_module(item, layers[item])


def same_padding(kernel_size: Sequence[int] | int) -> tuple[int, ...] | int:
    """Padding that keeps the size at stride 1 (MONAI's ``same_padding``, without dilation)."""
    kernels = [kernel_size] if isinstance(kernel_size, int) else list(kernel_size)
    if any((k - 1) % 2 for k in kernels):
        raise NotImplementedError(f"Same padding not available for kernel_size={kernels}.")
    padding = tuple((k - 1) // 2 for k in kernels)
    return padding if len(padding) > 1 else padding[0]


def _minus_one(strides: Sequence[int] | int) -> tuple[int, ...] | int:
    """``stride - 1``: the output padding that makes a transposed convolution ``stride`` times larger."""
    return strides - 1 if isinstance(strides, int) else tuple(int(s) - 1 for s in strides)


class Convolution(nn.Sequential):
    """A (transposed) convolution, then ``ADN`` (MONAI's ``Convolution``; children ``conv``, ``adn``)."""

    def __init__(  # noqa: PLR0913 (MONAI's arguments)
        self,
        dims: int,
        in_channels: int,
        out_channels: int,
        *,
        strides: Sequence[int] | int = 1,
        kernel_size: Sequence[int] | int = 3,
        adn_ordering: str = "NDA",
        act: LayerSpec = "PRELU",
        norm: LayerSpec = "INSTANCE",
        dropout: LayerSpec | float = None,
        bias: bool = True,
        conv_only: bool = False,
        is_transposed: bool = False,
        padding: Sequence[int] | int | None = None,
    ) -> None:
        super().__init__()
        if padding is None:
            padding = same_padding(kernel_size)
        if is_transposed:
            conv = _PER_DIMS["convtrans"][dims - 1](
                in_channels,
                out_channels,
                kernel_size=kernel_size,
                stride=strides,
                padding=padding,
                output_padding=_minus_one(strides),
                bias=bias,
            )
        else:
            conv = _PER_DIMS["conv"][dims - 1](
                in_channels, out_channels, kernel_size=kernel_size, stride=strides, padding=padding, bias=bias
            )
        self.add_module("conv", conv)
        if conv_only or (act is None and norm is None and dropout is None):
            return
        self.add_module("adn", ADN(adn_ordering, out_channels, act, norm, dims, dropout, dropout_dims=1))


class ResidualUnit(nn.Module):
    """``subunits`` convolutions plus a residual path (MONAI's ``ResidualUnit``: ``conv``, ``residual``)."""

    def __init__(  # noqa: PLR0913 (MONAI's signature)
        self,
        dims: int,
        in_channels: int,
        out_channels: int,
        *,
        strides: Sequence[int] | int,
        kernel_size: Sequence[int] | int,
        subunits: int,
        adn_ordering: str,
        act: LayerSpec,
        norm: LayerSpec,
        dropout: LayerSpec | float,
        bias: bool,
        last_conv_only: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Sequential()
        self.residual: nn.Module = nn.Identity()
        padding = same_padding(kernel_size)
        channels, stride = in_channels, strides
        subunits = max(1, subunits)
        for unit in range(subunits):
            self.conv.add_module(
                f"unit{unit:d}",
                Convolution(
                    dims,
                    channels,
                    out_channels,
                    strides=stride,
                    kernel_size=kernel_size,
                    adn_ordering=adn_ordering,
                    act=act,
                    norm=norm,
                    dropout=dropout,
                    bias=bias,
                    conv_only=last_conv_only and unit == subunits - 1,
                    padding=padding,
                ),
            )
            channels, stride = out_channels, 1
        downsamples = math.prod([strides] if isinstance(strides, int) else strides) != 1
        if downsamples or in_channels != out_channels:
            residual_kernel, residual_padding = (kernel_size, padding) if downsamples else (1, 0)
            self.residual = _PER_DIMS["conv"][dims - 1](
                in_channels, out_channels, residual_kernel, strides, residual_padding, bias=bias
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.residual(x)
        return self.conv(x) + residual


class SkipConnection(nn.Module):
    """``cat([x, submodule(x)])`` along the channels (MONAI's ``SkipConnection``; child ``submodule``)."""

    def __init__(self, submodule: nn.Module) -> None:
        super().__init__()
        self.submodule = submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.submodule(x)], dim=1)


class UNet(nn.Module):
    """MONAI's ``UNet`` (same signature): residual units, strided convolutions down, transposed up."""

    def __init__(  # noqa: PLR0913 (MONAI's signature)
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int],
        strides: Sequence[int],
        kernel_size: Sequence[int] | int = 3,
        up_kernel_size: Sequence[int] | int = 3,
        num_res_units: int = 0,
        act: LayerSpec = "PRELU",
        norm: LayerSpec = "INSTANCE",
        dropout: float = 0.0,
        bias: bool = True,
        adn_ordering: str = "NDA",
    ) -> None:
        super().__init__()
        if len(channels) < 2:
            raise ValueError("the length of `channels` should be no less than 2.")
        delta = len(strides) - (len(channels) - 1)
        if delta < 0:
            raise ValueError("the length of `strides` should equal to `len(channels) - 1`.")
        if delta > 0:
            warnings.warn(
                f"`len(strides) > len(channels) - 1`, the last {delta} values of strides will not be used.",
                stacklevel=2,
            )
        for name, size in (("kernel_size", kernel_size), ("up_kernel_size", up_kernel_size)):
            if not isinstance(size, int) and len(size) != spatial_dims:
                raise ValueError(f"the length of `{name}` should equal to `dimensions`.")
        self.dims = spatial_dims
        self.kernel_size, self.up_kernel_size = kernel_size, up_kernel_size
        self.num_res_units = num_res_units
        self.layers: dict[str, Any] = {
            "act": act,
            "norm": norm,
            "dropout": dropout,
            "bias": bias,
            "adn_ordering": adn_ordering,
        }
        self.model = self._block(in_channels, out_channels, channels, strides, is_top=True)

    def _block(
        self, inc: int, outc: int, channels: Sequence[int], strides: Sequence[int], *, is_top: bool
    ) -> nn.Module:
        """One level: down path, skip connection around the levels below, up path (built bottom up)."""
        if len(channels) > 2:
            subblock = self._block(channels[0], channels[0], channels[1:], strides[1:], is_top=False)
            up_channels = channels[0] * 2
        else:
            subblock = self._down(channels[0], channels[1], 1)
            up_channels = channels[0] + channels[1]
        down = self._down(inc, channels[0], strides[0])
        up = self._up(up_channels, outc, strides[0], is_top=is_top)
        return nn.Sequential(down, SkipConnection(subblock), up)

    def _down(self, inc: int, outc: int, strides: Sequence[int] | int) -> nn.Module:
        if self.num_res_units > 0:
            return ResidualUnit(
                self.dims,
                inc,
                outc,
                strides=strides,
                kernel_size=self.kernel_size,
                subunits=self.num_res_units,
                **self.layers,
            )
        return Convolution(self.dims, inc, outc, strides=strides, kernel_size=self.kernel_size, **self.layers)

    def _up(self, inc: int, outc: int, strides: Sequence[int] | int, *, is_top: bool) -> nn.Module:
        conv = Convolution(
            self.dims,
            inc,
            outc,
            strides=strides,
            kernel_size=self.up_kernel_size,
            conv_only=is_top and self.num_res_units == 0,
            is_transposed=True,
            **self.layers,
        )
        if self.num_res_units == 0:
            return conv
        unit = ResidualUnit(
            self.dims,
            outc,
            outc,
            strides=1,
            kernel_size=self.kernel_size,
            subunits=1,
            last_conv_only=is_top,
            **self.layers,
        )
        return nn.Sequential(conv, unit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class TwoConv(nn.Sequential):
    """Two 3x3 convolutions with ``ADN`` (MONAI's ``basic_unet.TwoConv``; children ``conv_0``, ``conv_1``)."""

    def __init__(self, dims: int, in_channels: int, out_channels: int, layers: dict[str, Any]) -> None:
        super().__init__()
        self.add_module("conv_0", Convolution(dims, in_channels, out_channels, padding=1, **layers))
        self.add_module("conv_1", Convolution(dims, out_channels, out_channels, padding=1, **layers))


class Down(nn.Sequential):
    """2x max pooling, then ``TwoConv`` (MONAI's ``basic_unet.Down``)."""

    def __init__(self, dims: int, in_channels: int, out_channels: int, layers: dict[str, Any]) -> None:
        super().__init__()
        self.add_module("max_pooling", _PER_DIMS["maxpool"][dims - 1](kernel_size=2))
        self.add_module("convs", TwoConv(dims, in_channels, out_channels, layers))


class DeconvUpSample(nn.Sequential):
    """2x transposed-convolution upsampling (MONAI's ``UpSample`` in ``deconv`` mode; child ``deconv``)."""

    def __init__(self, dims: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.add_module(
            "deconv", _PER_DIMS["convtrans"][dims - 1](in_channels, out_channels, kernel_size=2, stride=2)
        )


class UpCat(nn.Module):
    """Upsample, pad to the encoder's size, concatenate, ``TwoConv`` (MONAI's ``basic_unet.UpCat``)."""

    def __init__(  # noqa: PLR0913 (MONAI's signature)
        self,
        dims: int,
        in_channels: int,
        cat_channels: int,
        out_channels: int,
        layers: dict[str, Any],
        *,
        halves: bool = True,
    ) -> None:
        super().__init__()
        up_channels = in_channels // 2 if halves else in_channels
        self.upsample = DeconvUpSample(dims, in_channels, up_channels)
        self.convs = TwoConv(dims, cat_channels + up_channels, out_channels, layers)

    def forward(self, x: torch.Tensor, encoded: torch.Tensor) -> torch.Tensor:
        upsampled = self.upsample(x)
        dims = len(x.shape) - 2
        padding = [0] * (dims * 2)
        for axis in range(dims):
            if encoded.shape[-axis - 1] != upsampled.shape[-axis - 1]:
                padding[axis * 2 + 1] = 1  # odd sizes lose a voxel to 2x max pooling
        upsampled = torch.nn.functional.pad(upsampled, padding, "replicate")
        return self.convs(torch.cat([encoded, upsampled], dim=1))


class BasicUNet(nn.Module):
    """MONAI's ``BasicUNet`` (same signature): five levels of two convolutions, max pooling, deconvolution."""

    def __init__(  # noqa: PLR0913 (MONAI's signature)
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        features: Sequence[int] = (32, 32, 64, 128, 256, 32),
        act: LayerSpec = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True}),
        norm: LayerSpec = ("instance", {"affine": True}),
        bias: bool = True,
        dropout: float | Sequence[Any] = 0.0,
        upsample: str = "deconv",
    ) -> None:
        super().__init__()
        if upsample != "deconv":
            raise ValueError(f"upsample {upsample!r} is not supported; use 'deconv'")
        if len(features) != 6:
            raise ValueError(f"features must be 6 numbers, got {len(features)}")
        fea, dims = list(features), spatial_dims
        layers = {"act": act, "norm": norm, "bias": bias, "dropout": dropout}
        self.conv_0 = TwoConv(dims, in_channels, fea[0], layers)
        self.down_1 = Down(dims, fea[0], fea[1], layers)
        self.down_2 = Down(dims, fea[1], fea[2], layers)
        self.down_3 = Down(dims, fea[2], fea[3], layers)
        self.down_4 = Down(dims, fea[3], fea[4], layers)
        self.upcat_4 = UpCat(dims, fea[4], fea[3], fea[3], layers)
        self.upcat_3 = UpCat(dims, fea[3], fea[2], fea[2], layers)
        self.upcat_2 = UpCat(dims, fea[2], fea[1], fea[1], layers)
        self.upcat_1 = UpCat(dims, fea[1], fea[0], fea[5], layers, halves=False)
        self.final_conv = _PER_DIMS["conv"][dims - 1](fea[5], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.conv_0(x)
        x1 = self.down_1(x0)
        x2 = self.down_2(x1)
        x3 = self.down_3(x2)
        x4 = self.down_4(x3)
        u4 = self.upcat_4(x4, x3)
        u3 = self.upcat_3(u4, x2)
        u2 = self.upcat_2(u3, x1)
        u1 = self.upcat_1(u2, x0)
        return self.final_conv(u1)
