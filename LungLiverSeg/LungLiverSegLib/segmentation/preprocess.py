"""Preprocessing shared by inference and training, so that the two can never drift apart, and its
inverse for the network's output.

A bundle's ``preprocessing`` section says what the network expects; ``prepare`` turns an
``Image`` (and, for training, its label ``Image``) into the network's input tensor, and keeps
what is needed to map the network's output back onto the input grid exactly. The way back, in
two steps because postprocessing runs on the body crop, before or after the first
(``network_grid``): ``scores_to_labels`` undoes the resampling (label-aware: probabilities are
interpolated, then argmax'ed), ``PreparedImage.to_input_grid`` undoes the body crop and the
reorientation.

Volumes are handled as ``[k, j, i]`` arrays throughout; a 2D image is a volume with one slice.
Resampling uses ``torch.nn.functional.interpolate`` with ``align_corners=False`` semantics (the
field of view, i.e. the outer voxel edges, is preserved).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from LungLiverSegLib import geometry
from LungLiverSegLib.bundle.spec import IntensitySpec, PreprocessingSpec
from LungLiverSegLib.geometry import Image, as_volume
from LungLiverSegLib.segmentation.postprocess import fill_holes, keep_largest_component


@dataclass
class PreparedImage:
    """The network input and the bookkeeping to undo every step.

    ``tensor`` is float32 ``[1, k, j, i]`` (channel first). ``oriented`` is the input after
    reorientation (full grid); ``crop_box`` selects the body region of it that was resampled to
    ``tensor``'s spatial shape; ``original_code`` is the input's orientation to return to.
    ``body`` (bool, ``tensor``'s shape) marks the patient's body where the bundle crops to it.
    """

    tensor: torch.Tensor
    oriented: Image
    crop_box: tuple[slice, ...]
    original_code: str | None
    label: torch.Tensor | None = None
    body: torch.Tensor | None = None

    @property
    def crop_shape(self) -> tuple[int, ...]:
        return tuple(s.stop - s.start for s in self.crop_box)

    def to_input_grid(self, labels_crop: np.ndarray, image: Image) -> Image:
        """The inverse of ``prepare`` for labels on the crop at input resolution (``crop_shape``):
        paste them into the full reoriented grid, undo the reorientation, restore ``image``'s
        geometry (``image`` is the one given to ``prepare``)."""
        full = np.zeros(self.oriented.array.shape, dtype=np.uint8)
        full[self.crop_box] = labels_crop
        oriented = self.oriented.with_array(full)
        if self.original_code is not None:
            oriented = geometry.reorient(oriented, self.original_code)
        array = oriented.array if image.ndim == 3 else oriented.array[0]
        result = image.with_array(np.ascontiguousarray(array))
        result.metadata = {k: v for k, v in image.metadata.items() if k in ("source_path", "series_uid")}
        return result


def normalize_intensity(array: torch.Tensor, spec: IntensitySpec) -> torch.Tensor:
    """Map raw intensities to the network's range: a fixed window (CT HU) or per-image stats."""
    if spec.type == "window":
        window_min, window_max = spec.window
        return (array.clamp(window_min, window_max) - window_min) / (window_max - window_min)
    if spec.type == "minmax":
        low, high = array.min(), array.max()
        return (array - low) / (high - low).clamp_min(1e-6)
    mean, std = array.mean(), array.std()
    return (array - mean) / std.clamp_min(1e-6)


HISTOGRAM_BINS = 8


def intensity_histogram(tensor: torch.Tensor, spec: IntensitySpec) -> np.ndarray:
    """Fraction of the network input's voxels in each of ``HISTOGRAM_BINS`` equal bins of its
    normalised range ([0, 1] for ``window`` and ``minmax``; [-3, 3] for ``zscore``, values beyond
    counted in the end bins). A coarse fingerprint of what the network is shown: an 8-bit CT slice
    (mostly black below 0 HU) and a radiograph (mostly mid-grey) differ in it at a glance, even
    when both are 0..255 PNGs without any modality tag."""
    low, high = (-3.0, 3.0) if spec.type == "zscore" else (0.0, 1.0)
    values = tensor.float().clamp(low, high)
    counts = torch.histc(values, bins=HISTOGRAM_BINS, min=low, max=high)
    return (counts / max(values.numel(), 1)).numpy().astype(np.float64)


def body_box(array: np.ndarray, threshold: float, margin_vox: tuple[int, ...]) -> tuple[slice, ...]:
    """Bounding box of voxels above ``threshold`` (the body in CT), grown by a margin.

    Air around the patient is most of a CT's voxels; cropping it away first makes every later
    step cheaper. When nothing is above the threshold the whole image is kept. Found from the
    volume's maximum projections, without a 3D mask: 2.5x faster (the input check has refused
    NaN voxels, which a maximum would spread).
    """
    plane = array.max(axis=0) > threshold
    if not plane.any():
        return tuple(slice(0, n) for n in array.shape)
    slices = array.max(axis=tuple(range(1, array.ndim))) > threshold
    return geometry.bounding_box(slices, margin_vox[:1]) + geometry.bounding_box(plane, margin_vox[1:])


BODY_OPENING_MM = 2.0
"""Sheets up to about twice this thick (blankets, pads) cannot close an air pocket into the body;
a chest wall is thicker."""


def body_mask(volume: np.ndarray, threshold: float, spacing_kji: np.ndarray) -> np.ndarray:
    """The patient's body in a ``[k, j, i]`` CT: the largest connected region above ``threshold``,
    with enclosed holes (lungs, airways, bowel gas) filled slice by slice.

    The CT table, blankets and air around the patient are outside it, so no organ can be found
    there. Holes are filled per axial slice because the airway reaches the top of a chest CT, which
    would leave the lungs connected to the outside in 3D. Only holes that the body itself encloses
    count: a pad lying over the patient's back would otherwise close the air in the groove between
    back and table into a "hole" that looks like lung, so holes are found with thin sheets cut off
    (an in-plane opening of ``BODY_OPENING_MM``, the body grown back within its own voxels).
    """
    inside = volume > threshold
    if not inside.any():
        return np.ones(volume.shape, dtype=bool)
    largest = keep_largest_component(inside, connectivity=1)
    radius = max(1, round(BODY_OPENING_MM / float(min(spacing_kji[1:]))))
    core = grow_in_plane(shrink_in_plane(largest, radius), radius)  # the opening
    walls = grow_in_plane(core, radius) & largest
    return fill_holes(walls, IN_PLANE) | largest


IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)
"""Neighbours that share an edge within one axial slice: body-mask morphology is per slice."""


def shrink_in_plane(mask: np.ndarray, steps: int) -> np.ndarray:
    """``scipy.ndimage.binary_erosion(mask, IN_PLANE, iterations=steps)`` by shifted ANDs: the
    same result, 10x faster on a chest CT's body crop."""
    for _ in range(steps):
        eroded = mask.copy()
        eroded[:, 1:] &= mask[:, :-1]
        eroded[:, :-1] &= mask[:, 1:]
        eroded[:, :, 1:] &= mask[:, :, :-1]
        eroded[:, :, :-1] &= mask[:, :, 1:]
        eroded[:, [0, -1]] = False  # outside the image counts as background, as in scipy
        eroded[:, :, [0, -1]] = False
        mask = eroded
    return mask


def grow_in_plane(mask: np.ndarray, steps: int) -> np.ndarray:
    """``scipy.ndimage.binary_dilation(mask, IN_PLANE, iterations=steps)`` by shifted ORs."""
    for _ in range(steps):
        dilated = mask.copy()
        dilated[:, 1:] |= mask[:, :-1]
        dilated[:, :-1] |= mask[:, 1:]
        dilated[:, :, 1:] |= mask[:, :, :-1]
        dilated[:, :, :-1] |= mask[:, :, 1:]
        mask = dilated
    return mask


def target_shape(shape: tuple[int, ...], spacing_kji: np.ndarray, spec: PreprocessingSpec) -> tuple[int, ...]:
    """Array shape after resampling to the bundle's spacing, or after the 2D in-plane resize."""
    if spec.resize_inplane is not None:
        width, height = spec.resize_inplane
        return (shape[0], int(height), int(width))
    if spec.spacing is None:
        return shape
    wanted = np.asarray(spec.spacing, dtype=float)[::-1]
    if wanted.size == 2:  # 2D model: resample in plane only
        wanted = np.array([spacing_kji[0], *wanted])
    return tuple(max(1, round(n * s / w)) for n, s, w in zip(shape, spacing_kji, wanted, strict=True))


def resample(volume: torch.Tensor, shape: tuple[int, ...], *, labels: bool = False) -> torch.Tensor:
    """Resample ``[C, k, j, i]`` to ``shape``: linear for intensities, nearest for labels."""
    if tuple(volume.shape[1:]) == tuple(shape):
        return volume
    mode = "nearest-exact" if labels else "trilinear"
    kwargs = {} if labels else {"align_corners": False}
    return F.interpolate(volume[None].float(), size=shape, mode=mode, **kwargs)[0]


def prepare(image: Image, spec: PreprocessingSpec, label: Image | None = None) -> PreparedImage:
    """Reorient, crop to the body, resample and normalise ``image`` as the bundle says."""
    volume = as_volume(image)
    original_code = None
    if spec.orientation is not None:
        original_code = geometry.orientation_code(volume)
        volume = geometry.reorient(volume, spec.orientation)
        if label is not None:
            label = geometry.reorient(as_volume(label), spec.orientation)
    spacing_kji = np.asarray(volume.spacing[::-1])
    box = _crop_box(volume.array, spacing_kji, spec)
    cropped = torch.from_numpy(np.ascontiguousarray(volume.array[box], dtype=np.float32))[None]
    shape = target_shape(cropped.shape[1:], spacing_kji, spec)
    resampled = resample(cropped, shape)
    body = None
    if spec.body_crop is not None and spec.resize_inplane is None:
        resampled_spacing = spacing_kji * np.asarray(cropped.shape[1:]) / np.asarray(shape)
        body = torch.from_numpy(body_mask(resampled[0].numpy(), spec.body_crop.threshold, resampled_spacing))
    tensor = normalize_intensity(resampled, spec.intensity)
    label_tensor = None
    if label is not None:
        label_crop = torch.from_numpy(np.ascontiguousarray(as_volume(label).array[box]).astype(np.int64))
        label_tensor = resample(label_crop[None], shape, labels=True)[0].long()
    return PreparedImage(tensor.contiguous(), volume, box, original_code, label_tensor, body)


def _crop_box(array: np.ndarray, spacing_kji: np.ndarray, spec: PreprocessingSpec) -> tuple[slice, ...]:
    if spec.body_crop is None or spec.resize_inplane is not None:
        return tuple(slice(0, n) for n in array.shape)
    margin = tuple(int(np.ceil(spec.body_crop.margin_mm / s)) for s in spacing_kji)
    return body_box(array, spec.body_crop.threshold, margin)


BYTES_PER_RESAMPLE_CHUNK = 256 * 1024**2
"""Memory for the full-resolution slices that ``scores_to_labels`` holds at once."""


def probabilities_to_labels(probabilities: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """Trilinear-interpolate class probabilities to ``shape`` and argmax, a chunk of slices at a time:
    the inverse of ``prepare``'s resampling, for the network's output.

    Interpolating probabilities (not labels) gives smooth, label-aware boundaries. Interpolation is
    linear, so the argmax of the interpolated probabilities is the argmax of the interpolated
    differences to the background (``class_scores``; ``0`` for the background itself): one
    channel fewer to interpolate, half the work for the usual organ-or-background model.

    Why not ``F.interpolate`` + ``argmax`` on the whole volume: it holds every class at full
    resolution plus an int64 argmax, about 21 bytes per output voxel for 3 classes (5.5 GB for a
    512x512x1000 CT), and is slower (``bench/bench_segment.py --return-to-grid``). The labels are
    the same except at near-ties, where the top two probabilities differ by less than float
    rounding.
    """
    return scores_to_labels(class_scores(probabilities), shape)


def class_scores(probabilities: torch.Tensor) -> torch.Tensor:
    """Each class's probability minus the background's, ``[C - 1, k, j, i]``: what
    ``scores_to_labels`` interpolates (the background's own score is 0)."""
    return probabilities[1:] - probabilities[:1]


def scores_to_labels(scores: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """``class_scores`` trilinear-interpolated to ``shape`` and argmax'ed, only where a label can be.

    An output voxel whose interpolation corners all have the background's argmax (every score at
    most 0) has it too, so only the bounding box of the other labels is interpolated: a fifth of a
    chest CT's body crop. Trilinear is separable: each axis is a matrix of
    ``F.interpolate``'s ``align_corners=False`` weights (``interpolation_matrix``), applied to the
    box a chunk of output slices at a time, so only a few full-resolution slices exist at once
    even for 1000-slice CTs.
    """
    labels = np.zeros(shape, dtype=np.uint8)
    found = (scores > 0).any(dim=0).numpy()
    if not found.any():
        return labels
    box = geometry.bounding_box(found, (0,) * found.ndim)
    matrices = [interpolation_matrix(n, m) for n, m in zip(scores.shape[1:], shape, strict=True)]
    (k_out, _), (j_out, j_in), (i_out, i_in) = (_reach(m, b) for m, b in zip(matrices, box, strict=True))
    depth, rows, columns = matrices[0][k_out], matrices[1][j_out, j_in], matrices[2][i_out, i_in].T
    chunk = max(1, BYTES_PER_RESAMPLE_CHUNK // (4 * len(scores) * len(rows) * columns.shape[1] * 3))
    for first in range(0, len(depth), chunk):
        weights = depth[first : first + chunk]
        k_in = _used(weights)
        values = _along_slices(weights[:, k_in], scores[:, k_in, j_in, i_in])
        values = torch.matmul(torch.matmul(rows, values), columns).permute(1, 0, 2, 3)
        start = k_out.start + first
        labels[start : start + len(weights), j_out, i_out] = labels_from_scores(values).numpy()
    return labels


def interpolation_matrix(size: int, out_size: int) -> torch.Tensor:
    """``[out_size, size]``: row ``x`` holds output voxel ``x``'s linear weights on the input voxels,
    at ``F.interpolate``'s ``align_corners=False`` source coordinates (the identity for one size)."""
    source = ((torch.arange(out_size, dtype=torch.float64) + 0.5) * size / out_size - 0.5).clamp(min=0)
    lower = source.floor().long().clamp(max=size - 1)
    weight = source - lower
    matrix = torch.zeros(out_size, size, dtype=torch.float64)
    outputs = torch.arange(out_size)
    matrix.index_put_((outputs, lower), 1 - weight, accumulate=True)
    matrix.index_put_((outputs, (lower + 1).clamp(max=size - 1)), weight, accumulate=True)
    return matrix.float()


def _reach(matrix: torch.Tensor, box: slice) -> tuple[slice, slice]:
    """The outputs (rows of ``matrix``) with weight on the inputs of ``box``, and the inputs they use."""
    touching = torch.nonzero(matrix[:, box].any(dim=1))[:, 0]
    outputs = slice(int(touching[0]), int(touching[-1]) + 1)
    return outputs, _used(matrix[outputs])


def _used(matrix: torch.Tensor) -> slice:
    """The inputs (columns of ``matrix``) that some output has weight on."""
    used = torch.nonzero(matrix.any(dim=0))[:, 0]
    return slice(int(used[0]), int(used[-1]) + 1)


def _along_slices(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``values`` ``[C, k, j, i]`` interpolated along k by ``weights`` ``[k', k]`` (none needed for
    the same slices, as when the network keeps the input's slice thickness)."""
    if weights.shape[0] == weights.shape[1] and torch.equal(weights, torch.eye(len(weights))):
        return values
    channels, depth, height, width = values.shape
    blended = torch.matmul(weights, values.reshape(channels, depth, height * width))
    return blended.reshape(channels, len(weights), height, width)


def labels_from_scores(scores: torch.Tensor) -> torch.Tensor:
    """Labels ``[n, H, W]`` (uint8) from scores ``[n, C - 1, H, W]`` of classes 1.. against the
    background (whose score is 0): ``argmax`` over ``[0, scores]``, ties to the lower class.

    A loop of elementwise comparisons over the few channels: ``torch.argmax`` along a
    non-innermost dimension is about 10x slower on the CPU (2.0 s against 0.2 s for
    41x3x360x480 scores on 2 threads).
    """
    labels = (scores[:, 0] > 0).to(torch.uint8)
    if scores.shape[1] == 1:
        return labels
    best = scores[:, 0].clamp(min=0)
    for channel in range(1, scores.shape[1]):
        better = scores[:, channel] > best
        labels[better] = channel + 1
        torch.maximum(best, scores[:, channel], out=best)
    return labels
