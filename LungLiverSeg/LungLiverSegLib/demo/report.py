"""What a person looks at after a segmentation: an overlay picture and a volume table.

The overlay is drawn in a fixed patient frame, whatever the input's direction matrix: the
image is reordered and flipped (to the nearest axes) so that its index axes point to patient
Left, Posterior and Superior, and then shown in the radiological convention (patient right on
the image left, anterior up in axial views, superior up in coronal and sagittal views). A
flipped or permuted copy of the same scan therefore gives the same picture.

Files are written atomically (temporary file + ``os.replace``) so that a crash or a reader
polling the output folder never sees half a PNG or CSV.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from scipy import ndimage

from LungLiverSegLib import geometry
from LungLiverSegLib.errors import InputImageError
from LungLiverSegLib.files import write_bytes_atomic
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.labels import LabelMap
from LungLiverSegLib.tables import text_table

FILL_ALPHA = 0.35
OUTLINE_WIDTH = 1.2
BACKGROUND = "black"
FOREGROUND = "white"
FIGURE_WIDTH_IN = {2: 8.0, 3: 15.0}
DPI = 100
MM3_PER_ML = 1000.0
MM2_PER_CM2 = 100.0


def label_volumes_ml(labels: Image, label_map: LabelMap) -> dict[str, float]:
    """Volume of each segment of ``label_map`` in mL (0.0 for an absent one), by label value."""
    if labels.ndim != 3:
        raise InputImageError(f"volumes need a 3D label image, got a {labels.ndim}D one")
    return _label_measures(labels, label_map, MM3_PER_ML)


def format_volume_table(volumes: dict[str, float]) -> str:
    """An aligned two-column text table, for the console and log files."""
    return text_table([("Segment", "Volume (mL)"), *((name, f"{ml:.1f}") for name, ml in volumes.items())])


def volumes_to_csv(volumes: dict[str, float], path: str | Path) -> Path:
    """Write ``segment,volume_ml`` rows (full precision) for spreadsheets and scripts."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["segment", "volume_ml"])
    writer.writerows([name, repr(float(volume))] for name, volume in volumes.items())
    return write_bytes_atomic(path, text.getvalue().encode())


def save_overlay_png(  # noqa: PLR0913  (public: what to draw and where, then keyword display options)
    ct: Image,
    labels: Image,
    label_map: LabelMap,
    path: str | Path,
    *,
    window: tuple[float, float] = (-1000, 400),
    title: str = "LungLiverSeg segmentation",
) -> Path:
    """Save axial, coronal and sagittal views (one view for a 2D image) through the centre of
    the labelled region, with filled, outlined segments and a legend of their sizes."""
    if ct.array.shape[: ct.ndim] != labels.array.shape or ct.ndim != labels.ndim:
        raise InputImageError(f"the label image (size {labels.size}) is not on the CT grid (size {ct.size})")
    display = "LPS"[: ct.ndim]  # index axis n along LPS world axis n; panels then flip as displayed
    oriented_ct = geometry.reorient(ct.with_array(_grayscale(ct)), display)
    ct_array, spacing = oriented_ct.array, oriented_ct.spacing
    label_array = geometry.reorient(labels, display).array
    panels = _panels(ct_array, label_array, spacing, _centre_of_labels(label_array, label_map))
    figure = _figure(panels, label_map, window)
    _add_legend(figure, labels, label_map)
    figure.suptitle(f"{title}\nwindow {window[0]:g} to {window[1]:g} HU", color=FOREGROUND)
    png = io.BytesIO()
    figure.savefig(png, format="png", facecolor=BACKGROUND)
    return write_bytes_atomic(path, png.getvalue())


@dataclass(frozen=True)
class _Panel:
    """One 2D view: rows top to bottom, columns left to right as displayed."""

    name: str
    ct: np.ndarray
    labels: np.ndarray
    row_mm: float
    column_mm: float
    edge_letters: tuple[str, str, str, str] | None  # left, right, top, bottom

    @property
    def width_mm(self) -> float:
        return self.ct.shape[1] * self.column_mm

    @property
    def height_mm(self) -> float:
        return self.ct.shape[0] * self.row_mm


def _label_measures(labels: Image, label_map: LabelMap, mm_per_unit: float) -> dict[str, float]:
    voxel_size = float(np.prod(labels.spacing)) / mm_per_unit
    return {
        info.name: float(np.count_nonzero(labels.array == value)) * voxel_size
        for value, info in sorted(label_map.items())
    }


def _grayscale(image: Image) -> np.ndarray:
    """The intensity array, averaging a trailing colour axis (e.g. an RGB radiograph) away."""
    if image.array.ndim > image.ndim:
        return image.array.mean(axis=-1)
    return image.array


def _panels(
    ct: np.ndarray, labels: np.ndarray, spacing: tuple[float, ...], centre: tuple[int, ...]
) -> list[_Panel]:
    """Views through ``centre`` of ``[S, P, L]``-ordered volumes (``[P, L]`` for 2D), in the
    radiological convention."""
    if ct.ndim == 2:
        return [_Panel("Image", ct, labels, spacing[1], spacing[0], None)]
    s, p, left = centre
    flip_up = slice(None, None, -1)  # array rows run inferior to superior; screens run downwards
    return [
        _Panel("Axial", ct[s], labels[s], spacing[1], spacing[0], ("R", "L", "A", "P")),
        _Panel("Coronal", ct[flip_up, p], labels[flip_up, p], spacing[2], spacing[0], ("R", "L", "S", "I")),
        _Panel(
            "Sagittal",
            ct[flip_up, :, left],
            labels[flip_up, :, left],
            spacing[2],
            spacing[1],
            ("A", "P", "S", "I"),
        ),
    ]


def _centre_of_labels(labels: np.ndarray, label_map: LabelMap) -> tuple[int, ...]:
    """Voxel index of the centre of mass of the segments shown; the volume centre if none."""
    foreground = np.isin(labels, list(label_map))
    if not foreground.any():
        return tuple(n // 2 for n in labels.shape)
    return tuple(round(float(c)) for c in ndimage.center_of_mass(foreground))


def _figure(panels: list[_Panel], label_map: LabelMap, window: tuple[float, float]) -> Figure:
    """A dark figure whose panels keep their physical (mm) proportions."""
    width_in = FIGURE_WIDTH_IN[3 if len(panels) > 1 else 2]
    total_width_mm = sum(panel.width_mm for panel in panels)
    tallest_mm = max(panel.height_mm for panel in panels)
    height_in = width_in * tallest_mm / total_width_mm + 1.6  # room for title and legend
    figure = Figure(figsize=(width_in, height_in), dpi=DPI, facecolor=BACKGROUND)
    axes = figure.subplots(1, len(panels), squeeze=False, width_ratios=[p.width_mm for p in panels])[0]
    figure.subplots_adjust(
        left=0.01, right=0.99, top=1 - 0.9 / height_in, bottom=0.6 / height_in, wspace=0.03
    )
    for ax, panel in zip(axes, panels, strict=True):
        _draw_panel(ax, panel, label_map, window)
    return figure


def _draw_panel(ax, panel: _Panel, label_map: LabelMap, window: tuple[float, float]) -> None:
    low, high = window
    gray = np.clip((panel.ct.astype(np.float32) - low) / (high - low), 0.0, 1.0)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    for value, info in label_map.items():
        mask = panel.labels == value
        rgb[mask] = (1 - FILL_ALPHA) * rgb[mask] + FILL_ALPHA * np.asarray(info.color)
    ax.imshow(rgb, aspect=panel.row_mm / panel.column_mm, interpolation="bilinear")
    for value, info in label_map.items():
        mask = panel.labels == value
        if mask.any() and not mask.all() and min(mask.shape) > 1:
            ax.contour(mask.astype(np.float32), levels=[0.5], colors=[info.color], linewidths=OUTLINE_WIDTH)
    ax.set_axis_off()
    ax.set_title(panel.name, color=FOREGROUND)
    if panel.edge_letters:
        _draw_edge_letters(ax, panel.edge_letters)


def _draw_edge_letters(ax, letters: tuple[str, str, str, str]) -> None:
    """Patient-direction letters at the middle of each edge, as on a radiology workstation."""
    positions = [(0.02, 0.5, "left", "center"), (0.98, 0.5, "right", "center")]
    positions += [(0.5, 0.98, "center", "top"), (0.5, 0.02, "center", "bottom")]
    for letter, (x, y, horizontal, vertical) in zip(letters, positions, strict=True):
        ax.text(x, y, letter, transform=ax.transAxes, ha=horizontal, va=vertical, color="yellow", fontsize=12)


def _add_legend(figure: Figure, labels: Image, label_map: LabelMap) -> None:
    if labels.ndim == 3:
        sizes, unit = _label_measures(labels, label_map, MM3_PER_ML), "mL"
    else:
        sizes, unit = _label_measures(labels, label_map, MM2_PER_CM2), "cm²"
    handles = [
        Patch(facecolor=info.color, edgecolor=info.color, label=f"{info.name}: {sizes[info.name]:.1f} {unit}")
        for _, info in sorted(label_map.items())
    ]
    figure.legend(
        handles=handles,
        loc="lower center",
        ncol=max(len(handles), 1),
        frameon=False,
        labelcolor=FOREGROUND,
        fontsize=12,
    )
