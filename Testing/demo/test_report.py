"""Report outputs: volume numbers, table, CSV, and the overlay PNG's content and orientation."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from LungLiverSegLib.demo.phantom import make_phantom
from LungLiverSegLib.demo.report import (
    format_volume_table,
    label_volumes_ml,
    save_overlay_png,
    volumes_to_csv,
)
from LungLiverSegLib.errors import InputImageError
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.labels import LabelInfo
from PIL import Image as PilImage

BOX_LABELS = {1: LabelInfo(1, "box", (1.0, 0.0, 0.0)), 2: LabelInfo(2, "absent", (0.0, 1.0, 0.0))}


@pytest.fixture(scope="module")
def phantom():
    return make_phantom((64, 48, 40), (5.0, 5.0, 7.2), seed=4)


@pytest.fixture(scope="module")
def overlay_path(phantom, tmp_path_factory):
    ct, labels, label_map = phantom
    return save_overlay_png(ct, labels, label_map, tmp_path_factory.mktemp("overlay") / "overlay.png")


def box_image() -> Image:
    """A 4 x 5 x 6 voxel box of label 1 in voxels of 0.5 x 2 x 3 = 3 mm³: 0.36 mL."""
    array = np.zeros((10, 20, 30), np.uint8)
    array[2:8, 5:10, 10:14] = 1
    return Image(array, (0.5, 2.0, 3.0), (0.0, 0.0, 0.0))


def flipped(image: Image, index_axis: int) -> Image:
    """The same scan stored with ``index_axis`` reversed (same physical voxels)."""
    axis_vector = image.direction[:, index_axis]
    last = image.size[index_axis] - 1
    origin = np.asarray(image.origin) + axis_vector * image.spacing[index_axis] * last
    direction = image.direction.copy()
    direction[:, index_axis] *= -1
    array = np.flip(image.array, axis=image.ndim - 1 - index_axis).copy()
    return Image(array, image.spacing, tuple(origin), direction)


def read_png(path) -> np.ndarray:
    return np.asarray(PilImage.open(path).convert("RGB"))


def has_colour(pixels: np.ndarray, colour: tuple[float, float, float]) -> bool:
    target = np.round(np.asarray(colour) * 255)
    return bool((np.abs(pixels.astype(int) - target).max(axis=-1) <= 2).any())


def test_volume_of_a_box_is_computed_from_the_spacing():
    volumes = label_volumes_ml(box_image(), BOX_LABELS)
    assert volumes == pytest.approx({"box": 0.36, "absent": 0.0})


def test_volumes_need_a_3d_image():
    with pytest.raises(InputImageError, match="3D"):
        label_volumes_ml(Image(np.ones((4, 4), np.uint8), (1.0, 1.0), (0.0, 0.0)), BOX_LABELS)


def test_volume_table_is_aligned():
    table = format_volume_table({"lungs": 2255.52, "liver_tumour": 11.6})
    lines = table.splitlines()
    assert lines[0].startswith("Segment") and "Volume (mL)" in lines[0]
    assert "2255.5" in lines[1] and "11.6" in lines[2]
    assert len({len(line) for line in lines}) == 1


def test_csv_round_trips(tmp_path):
    path = volumes_to_csv({"lungs": 2255.52, "liver": 730.25}, tmp_path / "volumes.csv")
    with path.open(newline="") as file:
        rows = list(csv.reader(file))
    assert rows == [["segment", "volume_ml"], ["lungs", "2255.52"], ["liver", "730.25"]]


def test_overlay_png_shows_the_segments(phantom, overlay_path):
    pixels = read_png(overlay_path)
    assert pixels.shape[1] == 1500 and 300 < pixels.shape[0] < 1200
    for info in phantom[2].values():
        assert has_colour(pixels, info.color), info.name
    panels = pixels[: pixels.shape[0] * 3 // 4].astype(int)
    tinted = (panels[..., 0] - panels[..., 2]) > 30
    assert tinted.mean() > 0.02  # filled segments, not only the legend
    assert [p.name for p in overlay_path.parent.iterdir()] == ["overlay.png"]  # no temporary file left


@pytest.mark.parametrize("index_axis", [0, 2])
def test_flipped_input_gives_the_same_picture(phantom, overlay_path, tmp_path, index_axis):
    ct, labels, label_map = phantom
    flipped_png = save_overlay_png(
        flipped(ct, index_axis), flipped(labels, index_axis), label_map, tmp_path / "flipped.png"
    )
    np.testing.assert_array_equal(read_png(flipped_png), read_png(overlay_path))


def test_axial_view_is_radiological(phantom, tmp_path):
    """The liver (patient right) appears on the left half of the axial panel."""
    ct, labels, _ = phantom
    liver_only = {2: LabelInfo(2, "liver", (0.0, 0.0, 1.0))}
    pixels = read_png(save_overlay_png(ct, labels, liver_only, tmp_path / "liver.png")).astype(int)
    axial = pixels[: pixels.shape[0] * 3 // 4, : pixels.shape[1] // 3]
    blue = (axial[..., 2] - axial[..., 0]) > 30
    columns = np.nonzero(blue.any(axis=0))[0]
    assert columns.size and columns.mean() < axial.shape[1] / 2


def test_2d_image_gives_one_panel(tmp_path):
    labels = box_image()
    ct2d = Image(np.full((20, 30), -500, np.int16), (0.5, 2.0), (0.0, 0.0))
    labels2d = Image(labels.array[4], (0.5, 2.0), (0.0, 0.0))
    pixels = read_png(save_overlay_png(ct2d, labels2d, BOX_LABELS, tmp_path / "xray.png"))
    assert pixels.shape[1] == 800
    assert has_colour(pixels, BOX_LABELS[1].color)


def test_empty_segmentation_is_still_drawn(phantom, tmp_path):
    ct, labels, label_map = phantom
    empty = labels.with_array(np.zeros_like(labels.array))
    assert save_overlay_png(ct, empty, label_map, tmp_path / "empty.png").stat().st_size > 1000


def test_labels_on_another_grid_are_refused(phantom, tmp_path):
    ct, labels, label_map = phantom
    with pytest.raises(InputImageError, match="not on the CT grid"):
        save_overlay_png(ct, labels.with_array(labels.array[:-1]), label_map, tmp_path / "bad.png")
