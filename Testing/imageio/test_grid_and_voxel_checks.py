"""What ITK reads without a word and the readers now refuse: NaN voxels read as 0 (NIfTI), and a
zero, NaN, negative or infinite spacing, a NaN origin or a sheared grid in a header read as 1 mm,
0 or let through (NIfTI, NRRD, MetaImage). Files are written by SimpleITK or nibabel, then their
header bytes changed as a broken writer or a hostile user would."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from factories import require_file, threshold_bundle
from LungLiverSegLib.errors import InputImageError
from LungLiverSegLib.geometry import Image, to_sitk
from LungLiverSegLib.imageio import read_image, write_image
from LungLiverSegLib.segmentation.input_checks import check_input

DIM_OFFSET, PIXDIM_OFFSET, SFORM_CODE_OFFSET, SROW_OFFSET = 40, 76, 254, 280
"""Byte offsets in the NIfTI-1 header: dim[0..7] (int16), pixdim[0..7] (float32), sform_code
(int16), srow_x/y/z (float32)."""


def ct(dtype: type = np.int16) -> Image:
    """A small CT-like volume (air and tissue) with spacing (0.5, 0.7, 2.0)."""
    array = np.where(np.arange(4 * 5 * 6).reshape(4, 5, 6) % 3 == 0, -1000, 40).astype(dtype)
    return Image(array, (0.5, 0.7, 2.0), (-12.5, 30.0, 7.0))


def with_non_finite(dtype: type) -> Image:
    image = ct(dtype)
    image.array[0, 1, 2], image.array[3, 4, 5], image.array[2, 0, 0] = np.nan, np.inf, -np.inf
    return image


def same_voxels(actual: np.ndarray, expected: np.ndarray) -> bool:
    """Equal, NaN where NaN (``np.array_equal`` with ``equal_nan`` refuses integer arrays)."""
    return actual.shape == expected.shape and bool(
        np.all((actual == expected) | (np.isnan(actual) & np.isnan(expected)))
    )


def written(path: Path, image: Image) -> Path:
    """``image`` written by SimpleITK itself (uncompressed, so headers stay text; ``.mhd`` too)."""
    sitk.WriteImage(to_sitk(image), str(path))
    return path


def refused(path: Path) -> str:
    with pytest.raises(InputImageError) as raised:
        read_image(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


# --- NaN and infinite voxels -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha", ".mhd"])
def test_nan_and_infinite_voxels_are_read_as_they_are_and_refused(tmp_path, suffix, dtype):
    """NIfTI's reader (niftilib) read them as 0: the NaN check never fired."""
    image = with_non_finite(dtype)
    back = read_image(written(tmp_path / f"ct{suffix}", image))
    assert same_voxels(back.array, image.array)
    with pytest.raises(
        InputImageError, match=r"ct\S*: 3 voxels are NaN or infinite; fix or mask them first$"
    ):
        check_input(back, threshold_bundle(), f"ct{suffix}")


@pytest.mark.parametrize("byte_order", ["<", ">"])
def test_nan_voxels_of_a_nibabel_nifti_are_put_back_in_place(tmp_path, byte_order):
    xyz = np.arange(6 * 5 * 4, dtype=byte_order + "f4").reshape(6, 5, 4)
    xyz[1, 2, 3], xyz[5, 0, 0] = np.nan, -np.inf
    header = nib.Nifti1Header(endianness=byte_order)
    nib.save(nib.Nifti1Image(xyz, np.diag([0.5, 0.7, 2.0, 1.0]), header), tmp_path / "ct.nii.gz")
    back = read_image(tmp_path / "ct.nii.gz")
    assert same_voxels(back.array, xyz.T.astype(np.float32))


def test_nan_voxels_of_a_vector_nifti_land_in_their_component(tmp_path):
    """NIfTI stores vector components as its slowest axis, ITK's array as its fastest."""
    xyzc = np.arange(2 * 3 * 4 * 3, dtype=np.float32).reshape(2, 3, 4, 1, 3)
    xyzc[1, 2, 3, 0, 1] = np.nan
    image = nib.Nifti1Image(xyzc, np.eye(4))
    image.header.set_intent("vector")
    nib.save(image, tmp_path / "field.nii")
    back = read_image(tmp_path / "field.nii")
    assert back.array.shape == (4, 3, 2, 3) and np.argwhere(np.isnan(back.array)).tolist() == [[3, 2, 1, 1]]


def test_an_all_nan_nifti_is_called_nan_not_constant(tmp_path):
    """It was read as all 0 and refused as "the image is constant (every voxel is 0)"."""
    path = write_image(
        tmp_path / "nan.nii.gz", ct(np.float32).with_array(np.full((4, 5, 6), np.nan, np.float32))
    )
    with pytest.raises(InputImageError, match=r"nan.nii.gz: every voxel is NaN or infinite"):
        check_input(read_image(path), threshold_bundle(), "nan.nii.gz")


# --- NIfTI header ------------------------------------------------------------------------------


def nifti_with(folder: Path, name: str, offset: int, layout: str, *values: float) -> Path:
    """A NIfTI file of ``ct()`` whose header holds ``values`` at byte ``offset``."""
    content = bytearray(write_image(folder / "written.nii", ct()).read_bytes())
    struct.pack_into("<" + layout, content, offset, *values)
    path = folder / name
    path.write_bytes(gzip.compress(bytes(content)) if name.endswith(".gz") else bytes(content))
    return path


@pytest.mark.parametrize("name", ["ct.nii", "ct.nii.gz"])
@pytest.mark.parametrize("value", [0.0, np.nan, np.inf, -0.7])
def test_a_bad_nifti_pixdim_is_refused(tmp_path, name, value):
    """ITK read 0, NaN and inf as 1 mm and -0.7 as a flipped axis, and segmented."""
    path = nifti_with(tmp_path, name, PIXDIM_OFFSET + 8, "f", value)
    assert refused(path) == (
        f"{path}: voxel spacing (0.5, {value:.6g}, 2) mm (header field pixdim); "
        "every spacing must be a positive finite number"
    )


def test_a_nan_nifti_sform_is_refused(tmp_path):
    """ITK's matrix code printed raw "vnl_svd" lines to stderr and returned a NaN direction."""
    path = nifti_with(tmp_path, "ct.nii", SROW_OFFSET + 16, "4f", *[np.nan] * 4)
    assert (
        "sform (-0.5, 0, 0, 12.5, nan, nan, nan, nan, 0, 0, 2, 7) (header fields srow_x..srow_z)"
        in refused(path)
    )


def test_a_nan_nifti_qform_is_refused(tmp_path):
    content = bytearray(write_image(tmp_path / "written.nii", ct()).read_bytes())
    struct.pack_into("<h3f", content, SFORM_CODE_OFFSET, 0, np.nan, 0.0, 0.0)  # qform only: quatern_b NaN
    (tmp_path / "ct.nii").write_bytes(bytes(content))
    assert "qform (nan, 0, 0, 12.5, -30, 7) (header fields quatern_b..qoffset_z) is not finite" in refused(
        tmp_path / "ct.nii"
    )


@pytest.mark.parametrize("name", ["ct.nii", "ct.nii.gz"])
def test_a_nifti_header_promising_more_than_the_file_holds_is_refused_before_itk_reads_it(tmp_path, name):
    """dim = (32767, 1600, 4): ITK allocated and filled 420 MB for this 600-byte file before the
    cut-off check; a larger claim took all the memory there was."""
    path = nifti_with(tmp_path, name, DIM_OFFSET, "4h", 3, 32767, 1600, 4)
    most = path.stat().st_size * (1032 if name.endswith(".gz") else 1)
    assert refused(path) == (
        f"{path}: could not be read as an image (file cut off: its header promises "
        f"{352 + 32767 * 1600 * 4 * 2} bytes, it holds at most {most})"
    )


# --- NRRD and MetaImage text headers -----------------------------------------------------------


def with_header_line(path: Path, key: str, line: str | None = None) -> Path:
    """``path`` with the header lines starting ``key`` removed and ``line`` added at the header's end."""
    end = b"\n\n" if path.suffix == ".nrrd" else b"\nElementDataFile"
    head, separator, body = path.read_bytes().partition(end)
    lines = [old for old in head.decode().split("\n") if not old.startswith(key)] + ([line] if line else [])
    path.write_bytes("\n".join(lines).encode() + separator + body)
    return path


@pytest.mark.parametrize(
    ("directions", "expected"),
    [
        ("(0.5,0,0) (0,0,0) (0,0,2)", "voxel spacing (0.5, 0, 2) mm (header field space directions)"),
        ("(0.5,0,0) (nan,nan,nan) (0,0,2)", "voxel spacing (0.5, nan, 2) mm (header field space directions)"),
        ("(0.5,0,0) (0,0.7,0) (0,0.7,2)", "image axes ((1, 0, 0), (0, 1, 0), (0, 0.33035, 0.943858))"),
        ("(0.5,0,0) (0.7,0,0) (0,0,2)", "image axes ((1, 0, 0), (1, 0, 0), (0, 0, 1))"),
    ],
    ids=["zero vector", "nan vector", "sheared", "parallel"],
)
def test_bad_nrrd_space_directions_are_refused(tmp_path, directions, expected):
    """ITK read a NaN vector as 1 mm and let a sheared grid through; the others failed in ITK's words."""
    path = with_header_line(
        written(tmp_path / "ct.nrrd", ct()), "space directions", f"space directions: {directions}"
    )
    assert expected in refused(path)


@pytest.mark.parametrize("value", ["nan", "0", "-0.7", "inf"])
def test_bad_nrrd_spacings_are_refused(tmp_path, value):
    path = with_header_line(written(tmp_path / "ct.nrrd", ct()), "space", f"spacings: 0.5 {value} 2")
    assert f"voxel spacing (0.5, {float(value):.6g}, 2) mm (header field spacings)" in refused(path)


def test_a_nan_nrrd_origin_is_refused(tmp_path):
    """ITK read it as (0, 0, 0)."""
    path = with_header_line(written(tmp_path / "ct.nrrd", ct()), "space origin", "space origin: (nan,30,7)")
    assert "origin (nan, 30, 7) (header field space origin) is not finite" in refused(path)


def test_a_colour_axis_with_nan_spacing_is_no_spatial_axis(tmp_path):
    """NRRD's standard spacing of a pixel-component axis is NaN: no false alarm."""
    rgb = Image(np.zeros((4, 5, 3), np.uint8), (0.5, 0.5), (0.0, 0.0))
    rgb.array[..., 0] = 200
    path = with_header_line(written(tmp_path / "rgb.nrrd", rgb), "space", "spacings: nan 0.5 0.5")
    with_header_line(path, "kinds", "kinds: RGB-color domain domain")
    assert read_image(path).array.shape == (4, 5, 3)


@pytest.mark.parametrize(
    ("key", "line", "expected"),
    [
        (
            "ElementSpacing",
            "ElementSpacing = 0.5 0 2",
            "voxel spacing (0.5, 0, 2) mm (header field ElementSpacing)",
        ),
        (
            "ElementSpacing",
            "ElementSpacing = 0.5 nan 2",
            "voxel spacing (0.5, nan, 2) mm (header field ElementSpacing)",
        ),
        (
            "ElementSpacing",
            "ElementSpacing = 0.5 -0.7 2",
            "voxel spacing (0.5, -0.7, 2) mm (header field ElementSpacing)",
        ),
        (
            "TransformMatrix",
            "TransformMatrix = 2 0 0 0 1 0 0 0 1",
            "image axes ((2, 0, 0), (0, 1, 0), (0, 0, 1))",
        ),
        (
            "TransformMatrix",
            "TransformMatrix = 1 0 0 0 0 0 0 0 1",
            "image axes ((1, 0, 0), (0, 0, 0), (0, 0, 1))",
        ),
        ("Offset", "Offset = nan 30 7", "origin (nan, 30, 7) (header field Offset) is not finite"),
    ],
    ids=[
        "zero spacing",
        "nan spacing",
        "negative spacing",
        "stretched axis",
        "degenerate axes",
        "nan origin",
    ],
)
@pytest.mark.parametrize("suffix", [".mha", ".mhd"])
def test_bad_metaimage_headers_are_refused(tmp_path, suffix, key, line, expected):
    """ITK flipped the negative axis, let the stretched one through, read NaN as 0 and failed
    on the others in its own words ("Refusing to change spacing", "0 0 1")."""
    path = with_header_line(written(tmp_path / f"ct{suffix}", ct()), key, line)
    assert expected in refused(path)


# --- real files: no false alarms ---------------------------------------------------------------


@pytest.mark.realdata
@pytest.mark.parametrize(
    "name",
    [
        "ct_lung_lctsc_2mm/Case_000_ct.nii.gz",
        "ct_lung_lctsc_full/Case_000_ct.nii.gz",
        "ct_liver_lits117/lits117_ct.nii.gz",
        "ct_abdomen_totalseg_example/example_ct.nii.gz",
        "ct_abdomen_totalseg_example/example_mr_sm.nii.gz",
        "ct_lung_cip_64/ct-64.nrrd",
        "ct_lung_cip_64/lm-64.nrrd",
    ],
)
def test_real_images_pass_the_header_checks(shared_data, name):
    image = read_image(require_file(shared_data / name))
    assert image.ndim == 3 and np.isfinite(image.array).all()
