"""Geometry: IJK/LPS/RAS matrices, orientation codes, exact reorientation, grids, resampling, crops
(the last two are test helpers in factories, checked here because other tests build on them).

References are independent of the module: SimpleITK's own index-to-point transforms,
``sitk.DICOMOrient`` (same "points to" letter convention), SimpleITK slicing, and hand-computed cases.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from factories import crop, resample_to_grid, resampled_grid
from LungLiverSegLib import geometry
from LungLiverSegLib.geometry import Grid, Image
from scipy.spatial.transform import Rotation

SPACING = (0.7, 0.9, 3.0)
ORIGIN = (12.5, -40.25, 101.0)
# 30 degrees about two axes, applied to a right-anterior-inferior base: closest code "RAI".
OBLIQUE = Rotation.from_euler("xz", [30, 30], degrees=True).as_matrix() @ np.diag([-1.0, -1.0, -1.0])


@pytest.fixture
def oblique() -> Image:
    """Anisotropic, oblique 3D image whose voxel values are all different (order is checkable)."""
    array = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)
    return Image(array, SPACING, ORIGIN, OBLIQUE, {"source_path": "x"})


def voxel_indices(image: Image) -> np.ndarray:
    """All (i, j, k) indices in ``array.ravel()`` order."""
    kji = np.indices(image.array.shape[: image.ndim]).reshape(image.ndim, -1).T
    return kji[:, ::-1]


def test_sitk_round_trip_is_exact(oblique):
    back = geometry.from_sitk(geometry.to_sitk(oblique))
    assert np.array_equal(back.array, oblique.array)
    assert back.spacing == oblique.spacing and back.origin == oblique.origin
    assert np.array_equal(back.direction, oblique.direction)


def test_sitk_vector_pixels_become_a_channel_axis():
    channels = [sitk.Image([4, 3], sitk.sitkUInt8) + value for value in (10, 20, 30)]
    image = geometry.from_sitk(sitk.Compose(channels))
    assert image.ndim == 2 and image.array.shape == (3, 4, 3)
    assert image.array[2, 1].tolist() == [10, 20, 30]
    assert geometry.to_sitk(image).GetNumberOfComponentsPerPixel() == 3


def test_physical_points_match_simpleitk(oblique):
    reference = geometry.to_sitk(oblique)
    indices = [(0, 0, 0), (6, 0, 0), (1, 2, 3), (6, 5, 4), (2.5, 0.25, 1.75)]
    expected = [reference.TransformContinuousIndexToPhysicalPoint(index) for index in indices]
    assert np.allclose(geometry.physical_point(oblique, np.array(indices)), expected, atol=1e-9)
    assert np.allclose(geometry.physical_point(oblique, indices[2]), expected[2], atol=1e-9)


def test_ijk_to_lps_matrix_maps_indices_like_simpleitk(oblique):
    reference = geometry.to_sitk(oblique)
    matrix = geometry.ijk_to_lps_matrix(oblique)
    for index in [(0, 0, 0), (3, 1, 4), (6, 5, 4)]:
        lps = matrix @ np.array([*index, 1.0])
        assert np.allclose(lps[:3], reference.TransformIndexToPhysicalPoint(index), atol=1e-9)


def test_ijk_to_ras_matrix_hand_computed():
    image = Image(np.zeros((4, 3, 2)), (2.0, 3.0, 4.0), (1.0, 2.0, 3.0))
    expected = np.array([[-2, 0, 0, -1], [0, -3, 0, -2], [0, 0, 4, 3], [0, 0, 0, 1]], dtype=float)
    assert np.array_equal(geometry.ijk_to_ras_matrix(image), expected)


def test_ijk_to_ras_of_2d_image_treats_k_as_unit_z():
    image = Image(np.zeros((3, 2)), (0.5, 0.25), (4.0, 5.0))
    expected = np.array([[-0.5, 0, 0, -4], [0, -0.25, 0, -5], [0, 0, 1, 0], [0, 0, 0, 1]])
    assert np.array_equal(geometry.ijk_to_ras_matrix(image), expected)


def test_image_from_ijk_to_ras_inverts_ijk_to_ras_matrix(oblique):
    back = geometry.image_from_ijk_to_ras(oblique.array, geometry.ijk_to_ras_matrix(oblique))
    assert back.array is oblique.array
    assert np.allclose(back.spacing, oblique.spacing, atol=1e-12)
    assert np.allclose(back.origin, oblique.origin, atol=1e-12)
    assert np.allclose(back.direction, oblique.direction, atol=1e-12)


def test_image_from_ijk_to_ras_rejects_a_degenerate_matrix():
    matrix = np.diag([1.0, 0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="zero-length"):
        geometry.image_from_ijk_to_ras(np.zeros((2, 2, 2)), matrix)


@pytest.mark.parametrize(
    ("direction", "code"),
    [
        (np.eye(3), "LPS"),
        (np.diag([-1.0, -1.0, 1.0]), "RAS"),
        (np.diag([1.0, 1.0, -1.0]), "LPI"),
        (OBLIQUE, "RAI"),
        # sagittal slices: i towards anterior, j towards inferior, k towards left
        (np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]), "AIL"),
        (np.diag([-1.0, 1.0]), "RP"),
    ],
)
def test_orientation_code(direction, code):
    assert geometry.orientation_code(direction) == code


def test_orientation_code_never_repeats_a_letter_at_45_degrees():
    direction = Rotation.from_euler("z", 45, degrees=True).as_matrix()
    assert sorted(geometry.orientation_code(direction)[:2]) in (
        ["L", "P"],
        ["A", "L"],
        ["P", "R"],
        ["A", "R"],
    )


@pytest.mark.parametrize("code", ["LPS", "RAS", "LPI", "IRA", "SPL", "AIR"])
def test_reorient_matches_simpleitk_dicom_orient(oblique, code):
    result = geometry.reorient(oblique, code)
    reference = geometry.from_sitk(sitk.DICOMOrient(geometry.to_sitk(oblique), code))
    assert geometry.orientation_code(result) == code
    assert np.array_equal(result.array, reference.array)
    assert geometry.same_grid(result, reference, tolerance=1e-9)
    assert result.metadata == oblique.metadata


@pytest.mark.parametrize("code", ["RAS", "SPL"])
def test_reorient_keeps_every_voxel_at_its_physical_position(oblique, code):
    result = geometry.reorient(oblique, code)
    points = geometry.physical_point(result, voxel_indices(result))
    original = geometry.to_sitk(oblique)
    source_ijk = [original.TransformPhysicalPointToIndex(point.tolist()) for point in points]
    assert [oblique.array[i, j, k] for k, j, i in source_ijk] == result.array.ravel().tolist()


def test_reorient_to_own_code_gives_back_the_same_image_exactly(oblique):
    same = geometry.reorient(oblique, geometry.orientation_code(oblique))
    assert np.array_equal(same.array, oblique.array)
    assert same.spacing == oblique.spacing and same.origin == oblique.origin
    assert np.array_equal(same.direction, oblique.direction)


def test_reorient_round_trip(oblique):
    back = geometry.reorient(geometry.reorient(oblique, "SAL"), "RAI")
    assert np.array_equal(back.array, oblique.array)
    assert back.spacing == oblique.spacing
    assert np.allclose(back.origin, oblique.origin, atol=1e-12)
    assert np.array_equal(back.direction, oblique.direction)


def test_reorient_moves_a_trailing_channel_axis_along():
    array = np.arange(2 * 3 * 4 * 3).reshape(2, 3, 4, 3)
    result = geometry.reorient(Image(array, (1, 1, 1), (0, 0, 0)), "RAI")
    assert np.array_equal(result.array, array[::-1, ::-1, ::-1, :])


def test_reorient_2d_takes_two_letter_codes():
    array = np.arange(6).reshape(2, 3)
    result = geometry.reorient(Image(array, (0.5, 2.0), (0, 0)), "PR")
    assert np.array_equal(result.array, array[:, ::-1].T)
    assert result.spacing == (2.0, 0.5)
    assert np.allclose(result.origin, (1.0, 0.0))
    with pytest.raises(ValueError, match="not valid for a 2D image"):
        geometry.reorient(Image(array, (1, 1), (0, 0)), "RAS")


@pytest.mark.parametrize("code", ["LLS", "RA", "XYZ"])
def test_reorient_rejects_bad_codes(oblique, code):
    with pytest.raises(ValueError, match=code):
        geometry.reorient(oblique, code)


def test_resampled_grid_by_size_hand_computed():
    image = Image(np.zeros((10, 10, 10)), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    grid = resampled_grid(image, size=(5, 20, 10))
    assert grid.size == (5, 20, 10)
    assert grid.spacing == (2.0, 0.5, 1.0)
    assert np.allclose(grid.origin, (0.5, -0.25, 0.0))


def test_resampled_grid_by_spacing_keeps_the_field_of_view(oblique):
    grid = resampled_grid(oblique, spacing=(1.5, 1.5, 1.5))
    assert grid.size == (3, 4, 10)  # round(7 * 0.7 / 1.5), round(6 * 0.9 / 1.5), round(5 * 3 / 1.5)
    first_edge = geometry.physical_point(oblique, (-0.5, -0.5, -0.5))
    last_edge = geometry.physical_point(oblique, np.array(oblique.size) - 0.5)
    assert np.allclose(geometry.physical_point(grid, (-0.5, -0.5, -0.5)), first_edge, atol=1e-9)
    assert np.allclose(geometry.physical_point(grid, np.array(grid.size) - 0.5), last_edge, atol=1e-9)


def test_resampled_grid_needs_exactly_one_of_spacing_and_size(oblique):
    with pytest.raises(ValueError, match="exactly one"):
        resampled_grid(oblique)


@pytest.mark.parametrize("size", [(13, 9, 11), (4, 5, 3)])
def test_torch_interpolate_lies_on_the_resampled_grid(size):
    """A torch resize placed on ``resampled_grid`` samples the same physical points as SimpleITK."""
    kk, jj, ii = np.meshgrid(*(np.linspace(0, 1, n) for n in (7, 8, 9)), indexing="ij")
    smooth = np.sin(2 * ii) + np.cos(3 * jj) * kk
    image = Image(smooth, SPACING, ORIGIN, OBLIQUE)
    grid = resampled_grid(image, size=size)
    resized = F.interpolate(torch.from_numpy(smooth)[None, None], size=size[::-1], mode="trilinear")
    by_sitk = resample_to_grid(image, grid, interpolator="linear").array
    inside = (slice(1, -1),) * 3  # torch clamps beyond the outer voxel centres, SimpleITK does not
    assert np.allclose(resized[0, 0].numpy()[inside], by_sitk[inside], atol=1e-9)


def test_nearest_resampling_onto_a_reoriented_grid_equals_reorient(oblique):
    target = geometry.reorient(oblique, "SPL")
    result = resample_to_grid(oblique, geometry.grid_of(target), interpolator="nearest", default=-1)
    assert np.array_equal(result.array, target.array)
    assert geometry.same_grid(result, target, tolerance=1e-9)


def test_resample_to_grid_rejects_unknown_interpolator(oblique):
    with pytest.raises(ValueError, match="cubic"):
        resample_to_grid(oblique, oblique, interpolator="cubic")


def test_crop_keeps_voxels_in_place_like_simpleitk_slicing(oblique):
    box = (slice(1, 4), slice(2, None), slice(0, 5))
    cropped = crop(oblique, box)
    reference = geometry.from_sitk(geometry.to_sitk(oblique)[0:5, 2:6, 1:4])
    assert np.array_equal(cropped.array, oblique.array[box])
    assert geometry.same_grid(cropped, reference, tolerance=1e-9)


def test_crop_rejects_strided_or_short_boxes(oblique):
    with pytest.raises(ValueError, match="step 1"):
        crop(oblique, (slice(None), slice(None), slice(0, 6, 2)))
    with pytest.raises(ValueError, match="3 slices"):
        crop(oblique, (slice(None), slice(None)))


def test_bounding_box_with_margin_is_clipped():
    mask = np.zeros((10, 8, 6), dtype=bool)
    mask[2, 3, 4] = mask[5, 4, 5] = True
    assert geometry.bounding_box(mask, (1, 0, 3)) == (slice(1, 7), slice(3, 5), slice(1, 6))
    with pytest.raises(ValueError, match="empty"):
        geometry.bounding_box(np.zeros((2, 2), dtype=bool), (0, 0))


def test_same_grid_compares_size_spacing_origin_and_direction(oblique):
    assert geometry.same_grid(oblique, geometry.grid_of(oblique))
    nudged = Grid(oblique.size, oblique.spacing, tuple(np.add(oblique.origin, 5e-5)), oblique.direction)
    assert geometry.same_grid(oblique, nudged)
    assert not geometry.same_grid(oblique, nudged, tolerance=1e-6)
    assert not geometry.same_grid(oblique, crop(oblique, (slice(0, 4), slice(None), slice(None))))
    assert not geometry.same_grid(oblique, Image(oblique.array, (0.7, 0.9, 3.1), ORIGIN, OBLIQUE))
    assert not geometry.same_grid(oblique, Image(oblique.array, SPACING, ORIGIN, np.eye(3)))


def test_grid_difference_says_what_differs_and_allows_float32_headers(oblique):
    as_float32 = Image(
        oblique.array, np.float32(SPACING), np.float32(ORIGIN), OBLIQUE.astype(np.float32)
    )  # what a NIfTI header keeps
    assert geometry.grid_difference(oblique, as_float32) is None
    shifted = Image(oblique.array, SPACING, np.add(ORIGIN, (0.0, 2e-3, 0.0)), OBLIQUE)
    assert (
        geometry.grid_difference(oblique, shifted) == "origin (12.5, -40.25, 101.0) vs (12.5, -40.248, 101.0)"
    )
    thinner = Image(oblique.array[:4], SPACING, ORIGIN, OBLIQUE)
    assert geometry.grid_difference(oblique, thinner) == "size (7, 6, 5) vs (7, 6, 4)"


def test_as_volume_adds_one_slice_and_keeps_3d_untouched(oblique):
    flat = Image(np.ones((3, 4)), (0.5, 0.6), (1.0, 2.0), np.diag([-1.0, 1.0]))
    volume = geometry.as_volume(flat)
    assert volume.array.shape == (1, 3, 4) and volume.spacing == (0.5, 0.6, 1.0)
    assert np.array_equal(volume.direction, np.diag([-1.0, 1.0, 1.0]))
    assert geometry.as_volume(oblique) is oblique
