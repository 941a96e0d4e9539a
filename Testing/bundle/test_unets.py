"""``bundle.unets`` against MONAI's own classes: the same state dict, initialisation, outputs and gradients.

Inference builds these plain-torch copies so that it need not import MONAI. They must stay MONAI's
networks: weights trained with either load into the other unchanged and compute the same thing. Every
architecture that ships (Resources/Models) or that Training's presets train is checked, plus variants
that exercise each constructor argument.
"""

from __future__ import annotations

import json

import pytest
import torch
from factories import REPO_ROOT
from LungLiverSegLib.bundle.model_json import load_bundle
from LungLiverSegLib.bundle.networks import build_network
from LungLiverSegLib.bundle.spec import ArchitectureSpec
from LungLiverSegLib.bundle.weights import load_network
from LungLiverSegLib.errors import BundleError

monai_nets = pytest.importorskip("monai.networks.nets", reason="MONAI is the reference")
config = pytest.importorskip("LungLiverSegTraining.config", reason="Training's presets")

BUNDLED = sorted((REPO_ROOT / "Resources" / "Models").glob("*/model.json"))


def shipped_and_preset_architectures() -> list[tuple[str, str, dict, int, int]]:
    """(ids, architecture name, params, dims, out_channels) of every bundled model and preset,
    each distinct architecture once (a preset and the model it trained share one)."""
    found: dict[str, list] = {}
    for path in BUNDLED:
        bundle = load_bundle(path.parent, verify_checksum=False)
        architecture = bundle.architecture
        key = (architecture.name, architecture.params, bundle.dims, bundle.out_channels)
        found.setdefault(json.dumps(key, sort_keys=True), [[], *key])[0].append(path.parent.name)
    for name in config.PRESETS:
        preset = config.load_config(name)
        architecture = preset.architecture
        key = (architecture["name"], architecture["params"], preset.dims, len(preset.labels) + 1)
        found.setdefault(json.dumps(key, sort_keys=True), [[], *key])[0].append(f"preset {name}")
    return [("+".join(ids), *rest) for ids, *rest in found.values()]


VARIANTS = [
    ("unet-plain-2d", "UNet", {"channels": [4, 8, 16], "strides": [2, 2]}, 2, 3),
    ("unet-plain-3d", "UNet", {"channels": [4, 8], "strides": [2], "num_res_units": 0}, 3, 2),
    (
        "unet-every-argument",
        "UNet",
        {
            "channels": [4, 8, 16],
            "strides": [[2, 1], 2],
            "kernel_size": 5,
            "up_kernel_size": [3, 5],
            "num_res_units": 3,
            "act": ["leakyrelu", {"negative_slope": 0.2}],
            "norm": "batch",
            "dropout": 0.1,
            "bias": False,
            "adn_ordering": "AN",
        },
        2,
        4,
    ),
    (
        "unet-group-norm-3d",
        "UNet",
        {
            "channels": [4, 8],
            "strides": [2],
            "num_res_units": 1,
            "norm": ["group", {"num_groups": 2}],
            "act": "relu",
        },
        3,
        2,
    ),
    ("basicunet-2d", "BasicUNet", {"features": [4, 4, 8, 8, 16, 4]}, 2, 3),
    (
        "basicunet-3d",
        "BasicUNet",
        {"features": [4, 4, 8, 8, 16, 4], "norm": "batch", "dropout": 0.1, "bias": False},
        3,
        2,
    ),
]
ARCHITECTURES = shipped_and_preset_architectures() + VARIANTS


def both(name: str, params: dict, dims: int, out_channels: int, seed: int = 0) -> tuple[torch.nn.Module, ...]:
    """Ours (through ``build_network``, as inference and Training build it) and MONAI's, each
    initialised from the same random seed."""
    torch.manual_seed(seed)
    ours = build_network(ArchitectureSpec(name, params), dims, 1, out_channels)
    torch.manual_seed(seed)
    theirs = getattr(monai_nets, name)(spatial_dims=dims, in_channels=1, out_channels=out_channels, **params)
    return ours, theirs


def random_input(name: str, dims: int, batch: int = 1) -> torch.Tensor:
    size = 33 if name == "BasicUNet" else 32  # BasicUNet pads odd sizes; UNet needs multiples of 16
    return torch.randn((batch, 1, *([size] * dims)), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(
    ("name", "params", "dims", "out_channels"),
    [a[1:] for a in ARCHITECTURES],
    ids=[a[0] for a in ARCHITECTURES],
)
def test_same_state_dict_initialisation_and_output_as_monai(name, params, dims, out_channels):
    ours, theirs = both(name, params, dims, out_channels)
    ours_state, their_state = ours.state_dict(), theirs.state_dict()
    assert list(ours_state) == list(their_state)  # same keys, same order
    for key, tensor in their_state.items():
        assert torch.equal(ours_state[key], tensor), key  # same shapes and the same random start
    x = random_input(name, dims)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("variant", ["unet-every-argument", "basicunet-3d"])
def test_a_training_step_computes_monais_gradients(variant):
    """Both variants have dropout: the same masks need the same random draws in the same order."""
    _, name, params, dims, out_channels = next(a for a in VARIANTS if a[0] == variant)
    ours, theirs = both(name, params, dims, out_channels, seed=3)
    x = random_input(name, dims, batch=2)
    target = torch.randint(
        0, out_channels, (x.shape[0], *x.shape[2:]), generator=torch.Generator().manual_seed(2)
    )
    for network in (ours, theirs):
        torch.manual_seed(4)  # the same dropout masks
        torch.nn.functional.cross_entropy(network.train()(x), target).backward()
    for (key, mine), (_, reference) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        torch.testing.assert_close(mine.grad, reference.grad, rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.parametrize("path", BUNDLED, ids=[path.parent.name for path in BUNDLED])
def test_the_shipped_weights_load_into_monais_class_and_compute_the_same(path):
    bundle = load_bundle(path.parent)
    ours = load_network(bundle)
    architecture = bundle.architecture
    theirs = getattr(monai_nets, architecture.name)(
        spatial_dims=bundle.dims, in_channels=1, out_channels=bundle.out_channels, **architecture.params
    )
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = random_input(architecture.name, bundle.dims)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs.eval()(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        (
            "UNet",
            {"channels": [4, 8], "strides": [2], "act": "swish"},
            "unknown act 'swish'; known: celu, elu",
        ),
        ("UNet", {"channels": [4, 8], "strides": [2], "norm": "instance_nvfuser"}, "unknown norm"),
        ("BasicUNet", {"upsample": "pixelshuffle"}, "upsample 'pixelshuffle' is not supported"),
    ],
    ids=["monai-activation", "apex-norm", "pixelshuffle"],
)
def test_what_only_monai_has_is_refused_by_name(name, params, message):
    with pytest.raises(BundleError, match=f"architecture.params: {name} rejected them: {message}"):
        build_network(ArchitectureSpec(name, params), 2, 1, 2)
