"""From cases to batches of patches: prepare once, crop and augment every epoch.

Each training case goes through ``LungLiverSegLib.segmentation.preprocess.prepare`` (the very function
inference uses) exactly once and stays in memory, padded to the patch size and with its
foreground/background voxel indices precomputed, so an epoch only crops and augments. Random
draws are seeded per (seed, epoch, sample), which makes an epoch's batches the same whether the
run was resumed, how many loader workers there are, or on which DDP rank the sample lands.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence

import numpy as np
import torch
from LungLiverSegLib.bundle.spec import HistogramRangeSpec
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.segmentation.preprocess import intensity_histogram, prepare
from monai.transforms import (
    Compose,
    FgBgToIndicesd,
    RandAffined,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
    SpatialPadd,
)
from torch.utils.data import Dataset as TorchDataset

from LungLiverSegTraining.config import TrainingConfig

KEYS = ("image", "label")
MAX_SEED = 2**31 - 1


def prepare_case(
    image: Image, labels: Image, config: TrainingConfig
) -> dict[Hashable, torch.Tensor | np.ndarray]:
    """Preprocess one case as inference will, pad it to the patch and index its voxels for cropping.

    Returns ``{"image": [1, *spatial], "label": [1, *spatial], "fg_indices", "bg_indices",
    "histogram"}`` with spatial ``(k, j, i)`` for 3D and ``(j, i)`` for 2D models; "histogram" is
    the unpadded input's ``intensity_histogram`` (the bundle's fingerprint is made of them).
    """
    spec = config.bundle_template().preprocessing
    prepared = prepare(image, spec, labels)
    assert prepared.label is not None  # prepare resamples the labels it is given
    tensor, label = prepared.tensor, prepared.label[None].to(torch.uint8)
    histogram = intensity_histogram(tensor, spec.intensity)
    if config.dims == 2:  # a 2D image is prepared as a one-slice volume: drop the slice axis
        tensor, label = tensor[:, 0], label[:, 0]
    padded = SpatialPadd(KEYS, config.patch_size_kji)({"image": tensor, "label": label})
    case: dict[Hashable, torch.Tensor | np.ndarray] = {key: _plain(padded[key]) for key in KEYS}
    return {**FgBgToIndicesd("label", output_shape=None)(case), "histogram": histogram}


def histogram_range(cases: Sequence[dict]) -> HistogramRangeSpec:
    """The bundle's intensity fingerprint: per bin, the lowest and highest fraction over the
    training cases (``prepare_case``'s "histogram")."""
    histograms = np.stack([case["histogram"] for case in cases])
    low, high = histograms.min(axis=0), histograms.max(axis=0)
    return HistogramRangeSpec(tuple(round(float(v), 4) for v in low), tuple(round(float(v), 4) for v in high))


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    """MONAI returns MetaTensors; plain tensors keep batches light and collation simple."""
    return tensor.as_tensor() if hasattr(tensor, "as_tensor") else tensor


def augmentation(config: TrainingConfig) -> Compose:
    """Random patch crop (foreground ratio from the config), flips, 90-degree turns, in-plane
    rotation and scaling (2D), intensity jitter."""
    spatial_axes = (config.dims - 2, config.dims - 1)
    steps = [
        RandCropByPosNegLabeld(
            KEYS,
            "label",
            config.patch_size_kji,
            pos=config.foreground_ratio,
            neg=1.0 - config.foreground_ratio,
            num_samples=config.samples_per_case,
            fg_indices_key="label_fg_indices",
            bg_indices_key="label_bg_indices",
            allow_smaller=False,
        ),
        *(RandFlipd(KEYS, prob=0.5, spatial_axis=axis) for axis in config.flip_axes),
        RandRotate90d(KEYS, prob=config.rotate90_prob, max_k=3, spatial_axes=spatial_axes),
        *(
            [
                RandAffined(
                    KEYS,
                    prob=config.affine_prob,
                    rotate_range=(np.deg2rad(config.rotate_deg),),
                    scale_range=(config.scale_fraction, config.scale_fraction),
                    mode=("bilinear", "nearest"),
                    padding_mode="zeros",
                )
            ]
            if config.affine_prob > 0
            else []
        ),
        RandScaleIntensityd("image", factors=config.intensity_scale, prob=0.5),
        RandShiftIntensityd("image", offsets=config.intensity_shift, prob=0.5),
    ]
    return Compose(steps)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed seed for one sample of one epoch, independent of loader order and workers."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0]) % MAX_SEED


class PatchDataset(TorchDataset):
    """Cached cases -> ``samples_per_case`` augmented patches each, reproducibly per epoch."""

    def __init__(self, cases: Sequence[dict], transform: Compose, seed: int) -> None:
        self.cases = list(cases)
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the random draws of ``epoch`` (call before creating the epoch's iterator)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.transform.set_random_state(seed=sample_seed(self.seed, self.epoch, index))
        with warnings.catch_warnings():  # a slice without the organ is a valid, all-background sample
            warnings.filterwarnings("ignore", message="Num foregrounds 0")
            samples = self.transform(dict(self.cases[index]))
        images = torch.stack([_plain(sample["image"]) for sample in samples])
        labels = torch.stack([_plain(sample["label"]) for sample in samples])
        return images.float(), labels.long()


def concatenate_samples(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate cases of ``n`` patches each into one batch of ``len(batch) * n`` patches."""
    images, labels = zip(*batch, strict=True)
    return torch.cat(images), torch.cat(labels)
