"""Synthetic chest/abdomen CT phantom with lung, liver and liver-tumour labels.

The phantom lets the demo, the tests and a small demo model run without any licensed patient
data. It is crude but anatomically consistent, so that orientation mistakes show up:

* Direction is the identity in LPS, so index ``i`` increases towards patient **Left**, ``j``
  towards **Posterior** and ``k`` towards **Superior** (orientation code ``"LPS"``). The patient's
  right lung and the liver therefore lie at *low* ``i``, the heart at slightly high ``i`` and
  low ``j`` (anterior), the spine at high ``j``, the lungs at high ``k``.
* Intensities are Hounsfield units: air -1000, subcutaneous fat -100, other soft tissue +30,
  lung parenchyma -850 with +40 vessels, heart (blood) +40, liver +60, tumour +25, vertebral
  bodies +450 with a +700 cortex and +90 discs, plus Gaussian noise.
* Lung labels include the vessels inside the lungs, as clinical lung masks do; heart and spine
  are drawn but not labelled. The right lung base curves over the liver dome.

All anatomy is scaled to the field of view, so any ``size``/``spacing`` gives a whole torso.
With ``variation`` on, ``seed`` jitters sizes and positions by about ±10 % and the vessel tree
and tumour position, so a model trained on some phantoms generalises to others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from LungLiverSegLib.dataset import layout
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.imageio import write_image
from LungLiverSegLib.labels import ALTERED_STRUCTURE, LUNG, NEOPLASM, LabelInfo, LabelMap
from LungLiverSegLib.labels import LIVER as LIVER_CODE  # LIVER is the phantom's label value here

PHANTOM_LABELS: LabelMap = {
    1: LabelInfo(1, "lungs", (0.85, 0.62, 0.55), type=LUNG),
    2: LabelInfo(2, "liver", (0.87, 0.47, 0.35), type=LIVER_CODE),
    # DICOM CID 7151 / Slicer's terminology code a tumour as a morphologically altered
    # structure (category) of type "Neoplasm".
    3: LabelInfo(3, "liver_tumour", (0.9, 0.9, 0.3), category=ALTERED_STRUCTURE, type=NEOPLASM),
}
LUNGS, LIVER, TUMOUR = 1, 2, 3

AIR_HU = -1000
FAT_HU = -100
SOFT_TISSUE_HU = 30
LUNG_HU = -850
VESSEL_HU = 40
HEART_HU = 40
LIVER_HU = 60
TUMOUR_HU = 25
CANCELLOUS_BONE_HU = 450
CORTICAL_BONE_HU = 700
DISC_HU = 90

DIAPHRAGM_MM = 4.0
VERTEBRA_PITCH_MM = 30.0
DISC_MM = 6.0

Vary = Callable[[], float]


@dataclass(frozen=True)
class _Grid:
    """Physical coordinates (mm, LPS, centred on the volume) broadcastable to ``[k, j, i]``."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    spacing: tuple[float, ...]

    @classmethod
    def centred(cls, size: tuple[int, ...], spacing: tuple[float, ...]) -> _Grid:
        axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(size, spacing, strict=True)]
        return cls(axes[0][None, None, :], axes[1][None, :, None], axes[2][:, None, None], spacing)

    @property
    def half_extent(self) -> tuple[float, float, float]:
        return (float(self.x.max()), float(self.y.max()), float(self.z.max()))

    def origin(self) -> tuple[float, float, float]:
        return (float(self.x.min()), float(self.y.min()), float(self.z.min()))

    def ellipsoid(self, centre: np.ndarray, semi_axes: np.ndarray) -> np.ndarray:
        """Boolean mask of an axis-aligned ellipsoid (a semi-axis of inf gives a cylinder)."""
        return (
            ((self.x - centre[0]) / semi_axes[0]) ** 2
            + ((self.y - centre[1]) / semi_axes[1]) ** 2
            + ((self.z - centre[2]) / semi_axes[2]) ** 2
        ) <= 1.0


@dataclass(frozen=True)
class _Dome:
    """A hemidiaphragm: a downward-opening paraboloid ``z = peak - depth * r²``."""

    centre_xy: tuple[float, float]
    radii_xy: tuple[float, float]
    peak_z: float
    depth: float

    def height(self, grid: _Grid) -> np.ndarray:
        rx, ry = self.radii_xy
        radius_sq = ((grid.x - self.centre_xy[0]) / rx) ** 2 + ((grid.y - self.centre_xy[1]) / ry) ** 2
        return self.peak_z - self.depth * radius_sq


@dataclass(frozen=True)
class _Tube:
    """A vessel: the points within ``radius`` mm of the segment ``start``-``end``."""

    start: np.ndarray
    end: np.ndarray
    radius: float

    def paint(self, grid: _Grid, hu: np.ndarray, inside: np.ndarray) -> None:
        """Set the tube's voxels that are also in ``inside`` to vessel HU."""
        start, end, radius = self.start, self.end, self.radius
        lower, upper = np.minimum(start, end) - radius, np.maximum(start, end) + radius
        box = tuple(
            slice(int(np.searchsorted(axis.ravel(), lo)), int(np.searchsorted(axis.ravel(), hi, "right")))
            for axis, lo, hi in (
                (grid.z, lower[2], upper[2]),
                (grid.y, lower[1], upper[1]),
                (grid.x, lower[0], upper[0]),
            )
        )
        points = [grid.x[..., box[2]] - start[0], grid.y[:, box[1]] - start[1], grid.z[box[0]] - start[2]]
        axis_vector = end - start
        along = sum(p * a for p, a in zip(points, axis_vector, strict=True)) / max(
            float(axis_vector @ axis_vector), 1e-9
        )
        along = np.clip(along, 0.0, 1.0)
        distance_sq = sum((p - along * a) ** 2 for p, a in zip(points, axis_vector, strict=True))
        hu[box][(distance_sq <= radius**2) & inside[box]] = VESSEL_HU


@dataclass(frozen=True)
class _Lung:
    """One lung: an elliptic cross-section that tapers to the apex, standing on its dome."""

    centre_xy: np.ndarray
    radii_xy: np.ndarray
    apex_z: float
    dome: _Dome

    @property
    def base_z(self) -> float:
        """The deepest point of the lung: the costophrenic recess at the dome's rim."""
        return self.dome.peak_z - self.dome.depth

    def mask(self, grid: _Grid) -> np.ndarray:
        height = np.clip((grid.z - self.base_z) / (self.apex_z - self.base_z), 0.0, 1.0)
        taper = np.sqrt(1.0 - height**2) + 1e-6
        cross_section = ((grid.x - self.centre_xy[0]) / (self.radii_xy[0] * taper)) ** 2 + (
            (grid.y - self.centre_xy[1]) / (self.radii_xy[1] * taper)
        ) ** 2 <= 1.0
        return cross_section & (grid.z >= self.dome.height(grid)) & (grid.z <= self.apex_z)

    def hilum(self) -> np.ndarray:
        """Where the vessels enter: medial, mid-depth, a third of the way up."""
        medial_x = self.centre_xy[0] - np.sign(self.centre_xy[0]) * 0.55 * self.radii_xy[0]
        return np.array(
            [medial_x, self.centre_xy[1], self.dome.peak_z + 0.3 * (self.apex_z - self.dome.peak_z)]
        )


def make_phantom(  # noqa: PLR0913  (the public generator: grid and seed, then keyword options)
    size: tuple[int, int, int] = (160, 128, 96),
    spacing: tuple[float, float, float] = (2.0, 2.0, 3.0),
    seed: int = 0,
    *,
    noise_hu: float = 20.0,
    variation: bool = True,
    tumour: bool = True,
) -> tuple[Image, Image, LabelMap]:
    """Return ``(ct, labels, label_map)``: int16 HU and uint8 labels on one LPS-identity grid.

    ``label_map`` is ``PHANTOM_LABELS`` without the tumour entry when ``tumour`` is False.
    """
    rng = np.random.default_rng(seed)
    vary = _variation(rng, variation)
    grid = _Grid.centred(tuple(size), tuple(float(s) for s in spacing))
    hu = np.full(np.broadcast_shapes(grid.x.shape, grid.y.shape, grid.z.shape), AIR_HU, np.float32)
    labels = np.zeros(hu.shape, np.uint8)

    body, inner_body, body_radii = _body(grid, vary)
    hu[body] = FAT_HU
    hu[inner_body] = SOFT_TISSUE_HU
    spine = _paint_spine(grid, body_radii, vary, hu)
    right_lung, left_lung = _lungs(grid, body_radii, vary)
    heart, heart_with_margin = _heart(grid, body_radii, left_lung, vary)
    liver = _liver(grid, body_radii, right_lung.dome, vary) & inner_body & ~spine & ~heart
    hu[liver], labels[liver] = LIVER_HU, LIVER
    if tumour:
        lesion = _tumour(grid, body_radii, vary) & liver
        hu[lesion], labels[lesion] = TUMOUR_HU, TUMOUR
    hu[heart] = HEART_HU
    lungs = (right_lung.mask(grid) | left_lung.mask(grid)) & inner_body & ~heart_with_margin & ~spine
    hu[lungs], labels[lungs] = LUNG_HU, LUNGS
    for lung in (right_lung, left_lung):
        _paint_vessels(grid, lung, vary, hu, lungs)
    if noise_hu > 0:
        hu += rng.normal(0.0, noise_hu, hu.shape).astype(np.float32)

    ct = Image(np.clip(np.rint(hu), -1024, 3071).astype(np.int16), grid.spacing, grid.origin())
    label_map = {value: info for value, info in PHANTOM_LABELS.items() if tumour or value != TUMOUR}
    return ct, ct.with_array(labels), label_map


def make_phantom_dataset(
    folder: str | Path,
    n_cases: int,
    seed: int = 0,
    size: tuple[int, int, int] = (160, 128, 96),
    spacing: tuple[float, float, float] = (2.0, 2.0, 3.0),
) -> Path:
    """Write ``n_cases`` phantoms in the MSD / nnU-Net v2 layout, ready for training.

    Each case gets its own seed drawn from ``seed``, so datasets made with different seeds
    (e.g. a training and a test set) share no case.
    """
    folder = Path(folder)
    case_seeds = np.random.SeedSequence(seed).generate_state(n_cases)
    case_ids = [f"phantom_{index:03d}" for index in range(n_cases)]
    for case_id, case_seed in zip(case_ids, case_seeds, strict=True):
        ct, labels, _ = make_phantom(size, spacing, int(case_seed))
        write_image(layout.image_path(folder, case_id), ct)
        write_image(layout.label_path(folder, case_id), labels)
    description = layout.dataset_json(
        name="LungLiverSegPhantom",
        description="Synthetic chest/abdomen CT phantoms made by LungLiverSegLib.demo.phantom",
        modality="CT",
        labels={value: info.name for value, info in PHANTOM_LABELS.items()},
        case_ids=case_ids,
        licence="generated",
    )
    layout.write_dataset_json(folder, description)
    return folder


def _variation(rng: np.random.Generator, enabled: bool) -> Vary:
    """A factor near 1 (±10 %) per call when enabled, exactly 1 otherwise."""
    if not enabled:
        return lambda: 1.0
    return lambda: float(rng.uniform(0.9, 1.1))


def _body(grid: _Grid, vary: Vary) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Elliptic torso along all z, and its inside without the subcutaneous fat layer."""
    half_x, half_y, _ = grid.half_extent
    radii = np.array([0.88 * half_x * vary(), 0.76 * half_y * vary(), np.inf])
    fat_mm = 0.08 * radii[1] * vary()
    body = grid.ellipsoid(np.zeros(3), radii)
    inner = grid.ellipsoid(np.zeros(3), radii - np.array([fat_mm, fat_mm, 0.0]))
    return body, inner, radii


def _paint_spine(grid: _Grid, body_radii: np.ndarray, vary: Vary, hu: np.ndarray) -> np.ndarray:
    """Vertebral bodies (cortex, marrow, discs) behind the organs along all z; returns the mask."""
    centre = np.array([0.0, 0.62 * body_radii[1] * vary(), 0.0])
    radius = 0.17 * body_radii[1] * vary()
    spine = grid.ellipsoid(centre, np.array([radius, radius, np.inf]))
    marrow = grid.ellipsoid(centre, np.array([0.8 * radius, 0.8 * radius, np.inf]))
    disc = np.broadcast_to(np.mod(grid.z, VERTEBRA_PITCH_MM) < DISC_MM, spine.shape)
    hu[spine] = CORTICAL_BONE_HU
    hu[marrow] = CANCELLOUS_BONE_HU
    hu[spine & disc] = DISC_HU
    return spine


def _lungs(grid: _Grid, body_radii: np.ndarray, vary: Vary) -> tuple[_Lung, _Lung]:
    """Right lung (at -x, i.e. patient right) and left lung; the right dome sits higher."""
    right, left = (_lung(grid, side, peak, body_radii, vary) for side, peak in ((-1.0, -0.05), (1.0, -0.15)))
    return right, left


def _lung(grid: _Grid, side: float, peak: float, body_radii: np.ndarray, vary: Vary) -> _Lung:
    """The lung on ``side`` (-1 right, +1 left), its dome's peak at ``peak`` times the half height."""
    half_z = grid.half_extent[2]
    centre_xy = np.array([side * 0.48 * body_radii[0] * vary(), 0.05 * body_radii[1]])
    radii_xy = np.array([0.36 * body_radii[0] * vary(), 0.72 * body_radii[1] * vary()])
    dome = _Dome(tuple(centre_xy), tuple(radii_xy), peak * half_z * vary(), 0.28 * half_z * vary())
    return _Lung(centre_xy, radii_xy, 0.9 * half_z * vary(), dome)


def _heart(
    grid: _Grid, body_radii: np.ndarray, left_lung: _Lung, vary: Vary
) -> tuple[np.ndarray, np.ndarray]:
    """Anterior, slightly left, resting on the left hemidiaphragm; also returned grown by
    the pleura/pericardium thickness, so that the lungs do not touch it."""
    semi = np.array([0.3 * body_radii[0], 0.36 * body_radii[1], 0.2 * grid.half_extent[2]]) * vary()
    centre = np.array(
        [0.12 * body_radii[0] * vary(), -0.3 * body_radii[1], left_lung.dome.peak_z + 0.8 * semi[2]]
    )
    return grid.ellipsoid(centre, semi), grid.ellipsoid(centre, semi + DIAPHRAGM_MM)


def _liver(grid: _Grid, body_radii: np.ndarray, right_dome: _Dome, vary: Vary) -> np.ndarray:
    """Right upper abdomen, its top moulded to the underside of the right hemidiaphragm."""
    half_z = grid.half_extent[2]
    centre = np.array([-0.35 * body_radii[0] * vary(), -0.05 * body_radii[1], -0.4 * half_z * vary()])
    semi = np.array([0.65 * body_radii[0], 0.75 * body_radii[1], 0.55 * half_z]) * vary()
    return grid.ellipsoid(centre, semi) & (grid.z < right_dome.height(grid) - DIAPHRAGM_MM)


def _tumour(grid: _Grid, body_radii: np.ndarray, vary: Vary) -> np.ndarray:
    """A round lesion well inside the right lobe."""
    half_z = grid.half_extent[2]
    centre = np.array([-0.5 * body_radii[0] * vary(), 0.1 * body_radii[1] * vary(), -0.45 * half_z * vary()])
    radius = 0.1 * body_radii[0] * vary()
    return grid.ellipsoid(centre, np.array([radius, radius, radius]))


def _paint_vessels(grid: _Grid, lung: _Lung, vary: Vary, hu: np.ndarray, lungs: np.ndarray) -> None:
    """A small two-generation vessel tree from the hilum, drawn only inside the lungs."""
    hilum = lung.hilum()
    rx, ry = lung.radii_xy
    lateral = np.sign(lung.centre_xy[0])
    height = lung.apex_z - hilum[2]
    main_reach = np.array(
        [
            [0.3 * lateral * rx, 0.0, 0.75 * height],  # upper lobe
            [0.8 * lateral * rx, -0.5 * ry, 0.1 * height],  # anterior
            [0.8 * lateral * rx, 0.5 * ry, -0.1 * height],  # posterior
            [0.6 * lateral * rx, 0.0, 0.9 * (lung.dome.peak_z - hilum[2])],  # towards the base
        ]
    )
    main_reach *= np.array([[vary() for _ in range(3)] for _ in main_reach])
    for reach in main_reach:
        end = hilum + reach
        _Tube(hilum, end, 4.0).paint(grid, hu, lungs)
        for turn in (-0.5, 0.5):
            branch = 0.5 * np.array([reach[0], reach[1] + turn * ry, reach[2] + turn * 0.3 * height])
            _Tube(end, end + branch, 2.5).paint(grid, hu, lungs)
