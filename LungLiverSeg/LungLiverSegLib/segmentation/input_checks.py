"""Is this input something the model can segment, and was it like the model's training images?

Two moments, both called by ``segment.segment_image``:

* before the network, ``check_input`` refuses what cannot be segmented meaningfully (empty, 4D,
  colour, 2D to a 3D model, NaN, constant) with a one-line ``InputImageError``, and warns when the
  header says the modality is not the model's, or a CT does not look like Hounsfield units;
* after it, ``check_prediction`` measures how unsure the network was (``unsure_ratio``) and how far
  the network input's intensity histogram lies outside the training images' (``histogram_distance``),
  and warns when either is beyond its limit: the signs of an out-of-distribution input (another
  modality, another body region, not a medical image) that no header reveals.

The warnings are ``InputWarning``: the result is still written, the user is told to check it.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from LungLiverSegLib.bundle.spec import ModelBundle
from LungLiverSegLib.errors import BundleError, InputImageError, LungLiverSegWarning
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.segmentation.preprocess import intensity_histogram

SURE_PROBABILITY = 0.9
UNSURE_RATIO_LIMIT = 1.0
"""Above this ``unsure_ratio`` the result comes with an ``InputWarning``, unless the bundle sets
its own ``inference.unsure_ratio_limit`` (calibrated on its validation images by training)."""
HISTOGRAM_TOLERANCE = 0.25
"""Above this ``histogram_distance`` (a quarter of the voxels outside every training image's
intensity histogram range) the result comes with an ``InputWarning``."""


class InputWarning(LungLiverSegWarning):
    """The input can be segmented but may not be what the model was made for (e.g. MR to a CT model)."""


def check_input(image: Image, bundle: ModelBundle, source: str) -> None:
    """Refuse inputs the model cannot segment meaningfully, with a one-line reason."""
    array = image.array
    if array.size == 0:
        raise InputImageError(f"{source}: the image is empty (size {image.size})")
    if image.ndim > 3 or array.ndim > image.ndim + 1:
        raise InputImageError(
            f"{source}: a {image.ndim}D image (time series?) cannot be segmented; extract one 3D volume first"
        )
    if array.ndim == image.ndim + 1:
        raise InputImageError(
            f"{source}: a colour (RGB) image was given to the {bundle.modality} model "
            f"'{bundle.name}', which expects a grayscale image"
        )
    if bundle.dims == 3 and image.ndim == 2:
        raise InputImageError(
            f"{source}: a 2D image was given to the 3D model '{bundle.name}'; "
            "use a 3D CT volume or a 2D model"
        )
    if bundle.modality == "CXR" and image.ndim == 3 and array.shape[0] > 1:
        raise InputImageError(f"{source}: a 3D volume was given to the chest X-ray model '{bundle.name}'")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        which = "every voxel is" if bad == array.size else f"{bad} voxels are"
        raise InputImageError(f"{source}: {which} NaN or infinite; fix or mask them first")
    low, high = float(array.min()), float(array.max())
    if low == high:
        raise InputImageError(f"{source}: the image is constant (every voxel is {low:g}); nothing to segment")
    _warn_if_unexpected(image, bundle, source, low, high)


def _warn_if_unexpected(image: Image, bundle: ModelBundle, source: str, low: float, high: float) -> None:
    modality = image.metadata.get("modality", "")
    if modality and bundle.modality == "CT" and modality != "CT":
        warnings.warn(
            f"{source}: DICOM modality is {modality}, the model '{bundle.name}' was made for CT; "
            "the result may be meaningless",
            InputWarning,
            stacklevel=3,
        )
    elif (
        bundle.modality == "CT"
        and bundle.preprocessing.intensity.type == "window"
        and image.ndim == 3
        and (low > -500 or high < 0)
    ):
        warnings.warn(
            f"{source}: intensities {low:g}..{high:g} do not look like CT in Hounsfield units "
            "(no air below -500 HU); the result may be meaningless",
            InputWarning,
            stacklevel=3,
        )


def check_prediction(
    probabilities: torch.Tensor, network_input: torch.Tensor, bundle: ModelBundle, source: str
) -> tuple[float, float]:
    """``unsure_ratio`` of the class ``probabilities`` and ``histogram_distance`` of the
    ``network_input``, each with an ``InputWarning`` when beyond its limit."""
    unsure = unsure_ratio(probabilities)
    limit = bundle.inference.unsure_ratio_limit or UNSURE_RATIO_LIMIT
    if unsure > limit:
        warnings.warn(
            f"{source}: the model '{bundle.name}' is unsure about much of this image (unsure/found "
            f"ratio {unsure:.2f}, usual below {limit:g}); it may be unlike the "
            f"{bundle.modality} images the model was trained on: check the result before using it",
            InputWarning,
            stacklevel=3,
        )
    histogram = intensity_histogram(network_input, bundle.preprocessing.intensity)
    outside = histogram_distance(histogram, bundle)
    if outside > HISTOGRAM_TOLERANCE:
        warnings.warn(
            f"{source}: the intensities are unlike every image the model '{bundle.name}' was trained on "
            f"({outside:.0%} of the voxels fall outside the training images' histogram); it may not be a "
            f"{bundle.modality} image prepared like them: check the result before using it",
            InputWarning,
            stacklevel=3,
        )
    return unsure, outside


def unsure_ratio(probabilities: torch.Tensor) -> float:
    """How unsure the network was, relative to what it found: voxels where no class reaches
    ``SURE_PROBABILITY`` while some structure has at least 1 - ``SURE_PROBABILITY``, divided by
    the voxels labelled as a structure (at least 1).

    On images like its training data a network is unsure only in a thin band along each
    boundary; on an input unlike them (another modality, another body region, not a medical
    image) whole regions are unsure, and the ratio shows it even when the argmax looks clean.
    """
    top = probabilities.amax(dim=0)
    unsure = int((top < SURE_PROBABILITY).sum())  # no class is sure, the background included
    found = int((probabilities[0] < top).sum())  # some structure beats the background
    return unsure / max(found, 1)


def histogram_distance(histogram: np.ndarray, bundle: ModelBundle) -> float:
    """Share of the input's voxels that would have to change bins for its intensity histogram to
    fit inside the training images' range (0: it does; None in the bundle: always 0)."""
    fingerprint = bundle.inference.input_histogram
    if fingerprint is None:
        return 0.0
    if len(fingerprint.low) != len(histogram):
        raise BundleError(
            f"model '{bundle.name}': inference.input_histogram has {len(fingerprint.low)} bins; "
            f"this version computes {len(histogram)}"
        )
    below = np.clip(np.asarray(fingerprint.low) - histogram, 0.0, None)
    above = np.clip(histogram - np.asarray(fingerprint.high), 0.0, None)
    return float(max(below.sum(), above.sum()))
