"""Reading and writing: every format round trip, Slicer .seg.nrrd, and every bad input (DICOM: test_dicom)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from factories import require_file
from LungLiverSegLib import geometry
from LungLiverSegLib.errors import InputImageError, LungLiverSegError, OutputWriteError
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.imageio import images as imageio
from LungLiverSegLib.imageio.images import read_image, read_segmentation, write_image
from LungLiverSegLib.labels import LabelInfo
from scipy.spatial.transform import Rotation

OBLIQUE = Rotation.from_euler("xy", [30, 30], degrees=True).as_matrix()
LIVER = LabelInfo(1, "liver", (0.87, 0.51, 0.4), type=("SCT", "10200004", "Liver"))
LEFT_LUNG = LabelInfo(
    2,
    "left lung",
    (0.3, 0.6, 0.9),
    type=("SCT", "39607008", "Lung"),
    modifier=("SCT", "7771000", "Left"),
    extra={"Source": "LungLiverSeg"},
)
LIVER_TERMINOLOGY = (
    "TerminologyEntry:Segmentation category and type - 3D Slicer General Anatomy list"
    "~SCT^123037004^Anatomical Structure~SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^|"
)


@pytest.fixture
def ct() -> Image:
    """Oblique, anisotropic int16 volume with distinct voxel values."""
    array = (np.arange(4 * 5 * 6) - 60).astype(np.int16).reshape(4, 5, 6)
    return Image(array, (0.7, 0.9, 3.0), (-12.5, 30.25, 7.0), OBLIQUE)


def assert_same_image(actual: Image, expected: Image) -> None:
    """Same voxels, and the geometry to float32 precision (what NIfTI stores)."""
    assert np.array_equal(actual.array, expected.array)
    assert actual.array.dtype == expected.array.dtype
    assert geometry.same_grid(actual, expected, tolerance=1e-5)


def nrrd_header(path: Path) -> str:
    """The text header of a NRRD file (everything before the first blank line)."""
    return path.read_bytes().split(b"\n\n", 1)[0].decode()


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha"])
def test_volume_round_trip(tmp_path, ct, suffix):
    path = write_image(tmp_path / f"ct{suffix}", ct)
    back = read_image(path)
    assert_same_image(back, ct)
    assert back.metadata == {"source_path": str(path), "modality": ""}


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_round_trip_stays_2d(tmp_path, dtype):
    picture = Image((np.arange(12).reshape(3, 4) * 20).astype(dtype), (1.0, 1.0), (0.0, 0.0))
    back = read_image(write_image(tmp_path / "picture.png", picture))
    assert back.ndim == 2 and back.spacing == (1.0, 1.0)
    assert_same_image(back, picture)


def test_png_refuses_volumes_and_floats(tmp_path, ct):
    with pytest.raises(LungLiverSegError, match="PNG holds only 2D"):
        write_image(tmp_path / "ct.png", ct)
    with pytest.raises(LungLiverSegError, match="float64"):
        write_image(tmp_path / "x.png", Image(np.zeros((2, 2)), (1, 1), (0, 0)))


def test_unknown_output_extension_is_refused(tmp_path, ct):
    with pytest.raises(LungLiverSegError, match=r"ct\.vtk: cannot write this format"):
        write_image(tmp_path / "ct.vtk", ct)


def test_existing_file_is_kept_unless_overwrite(tmp_path, ct):
    path = write_image(tmp_path / "ct.nii.gz", ct)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        write_image(path, ct.with_array(ct.array + 1))
    assert path.read_bytes() == before
    write_image(path, ct.with_array(ct.array + 1), overwrite=True)
    assert np.array_equal(read_image(path).array, ct.array + 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz"]


def test_failed_write_leaves_neither_target_nor_temporary(tmp_path, ct, monkeypatch):
    def write_half_then_fail(img, name, useCompression):  # noqa: N803  (SimpleITK's keyword)
        Path(name).write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(imageio.sitk, "WriteImage", write_half_then_fail)
    with pytest.raises(OutputWriteError, match=r"ct\.nrrd: could not be written: disk full$"):
        write_image(tmp_path / "out" / "ct.nrrd", ct)
    assert list((tmp_path / "out").iterdir()) == []


def test_nifti_with_lps_or_ras_axes_puts_voxels_at_the_same_places(tmp_path):
    lps = Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), (0.7, 0.9, 3.0), (5.0, -6.0, 7.0))
    ras = geometry.reorient(lps, "RAS")
    lps_path, ras_path = write_image(tmp_path / "lps.nii", lps), write_image(tmp_path / "ras.nii", ras)
    # NIfTI stores RAS: srow_x (header bytes 280..295) is -0.7 for LPS axes and +0.7 for RAS axes.
    assert struct.unpack("<4f", lps_path.read_bytes()[280:296])[0] == pytest.approx(-0.7)
    assert struct.unpack("<4f", ras_path.read_bytes()[280:296])[0] == pytest.approx(0.7)
    lps_back, ras_back = read_image(lps_path), read_image(ras_path)
    assert (geometry.orientation_code(lps_back), geometry.orientation_code(ras_back)) == ("LPS", "RAS")
    ras_ijk = np.argwhere(ras_back.array == 17)[0][::-1]
    lps_ijk = np.argwhere(lps_back.array == 17)[0][::-1]
    assert np.allclose(geometry.physical_point(ras_back, ras_ijk), geometry.physical_point(lps_back, lps_ijk))
    assert_same_image(geometry.reorient(ras_back, "LPS"), lps)


def test_size_one_third_dimension_stays_3d(tmp_path):
    one_slice = Image(np.ones((1, 3, 4), dtype=np.int16), (1.0, 1.0, 2.5), (0.0, 0.0, 0.0))
    back = read_image(write_image(tmp_path / "slice.nii.gz", one_slice))
    assert back.ndim == 3 and back.size == (4, 3, 1)


def test_colour_png_keeps_three_channels_and_gray_rgb_collapses(tmp_path):
    rgb = np.zeros((3, 4, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 2] = 200, 50
    gray_rgba = np.repeat(np.arange(12, dtype=np.uint8).reshape(3, 4, 1), 4, axis=2)
    gray_rgba[..., 3] = 255
    for name, pixels in (("rgb.png", rgb), ("gray_rgba.png", gray_rgba)):
        sitk.WriteImage(sitk.GetImageFromArray(pixels, isVector=True), str(tmp_path / name))
    colour = read_image(tmp_path / "rgb.png")
    assert colour.ndim == 2 and colour.array.shape == (3, 4, 3)
    assert np.array_equal(colour.array, rgb)
    gray = read_image(tmp_path / "gray_rgba.png")
    assert np.array_equal(gray.array, np.arange(12).reshape(3, 4))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda folder: folder / "missing.nii.gz", "missing.nii.gz: no such file"),
        (lambda folder: folder, "holds no DICOM series"),
        (lambda folder: write_text(folder / "notes.nii.gz"), "notes.nii.gz: not an image file"),
        (lambda folder: truncated_nifti(folder / "cut.nii"), "cut.nii: could not be read"),
        (lambda folder: truncated_nifti(folder / "cut.nii.gz"), "cut.nii.gz: could not be read"),
        (lambda folder: write_text(folder / "notes.txt"), "notes.txt: not an image file"),
    ],
    ids=["missing", "empty folder", "text named .nii.gz", "cut .nii", "cut .nii.gz", "text file"],
)
def test_bad_inputs_raise_one_line_errors_naming_the_file(tmp_path, make, message):
    with pytest.raises(InputImageError, match=message) as raised:
        read_image(make(tmp_path))
    assert "\n" not in str(raised.value)


def write_text(path: Path) -> Path:
    path.write_text("this is not an image\n")
    return path


def truncated_nifti(path: Path) -> Path:
    """A NIfTI file cut off half-way (ITK alone would zero-fill the missing voxels silently)."""
    noise = np.random.default_rng(0).integers(-1000, 1000, (8, 8, 8), dtype=np.int16)
    write_image(path, Image(noise, (1, 1, 1), (0, 0, 0)))
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    return path


def test_seg_nrrd_round_trip_keeps_names_colours_and_terminology(tmp_path, ct):
    labels = ct.with_array((np.abs(ct.array) % 4).astype(np.int64))  # values 0..3, 3 not in the map
    path = imageio.write_segmentation(tmp_path / "labels.seg.nrrd", labels, {1: LIVER, 2: LEFT_LUNG})
    back, label_map = read_segmentation(path)
    assert_same_image(back, labels.with_array(labels.array.astype(np.uint8)))
    assert label_map == {1: LIVER, 2: LEFT_LUNG, 3: LabelInfo(3, "label_3")}
    assert label_map[2].extra == {"Source": "LungLiverSeg"}
    assert np.array_equal(read_image(path).array, back.array)


def test_seg_nrrd_header_has_slicer_segmentation_keys(tmp_path, ct):
    labels = ct.with_array((ct.array > 0).astype(np.uint8))
    header = nrrd_header(imageio.write_segmentation(tmp_path / "liver.seg.nrrd", labels, {1: LIVER}))
    for line in [
        "Segmentation_MasterRepresentation:=Binary labelmap",
        "Segmentation_ContainedRepresentationNames:=Binary labelmap|Closed surface|",
        "Segmentation_ReferenceImageExtentOffset:=0 0 0",
        "Segment0_ID:=Segment_1",
        "Segment0_Name:=liver",
        "Segment0_NameAutoGenerated:=0",
        "Segment0_Color:=0.87 0.51 0.4",
        "Segment0_ColorAutoGenerated:=0",
        "Segment0_LabelValue:=1",
        "Segment0_Layer:=0",
        "Segment0_Extent:=0 5 0 4 0 3",
        f"Segment0_Tags:={LIVER_TERMINOLOGY}",
        "type: unsigned char",
        "encoding: gzip",
    ]:
        assert line in header.splitlines()


def test_2d_labels_become_a_one_slice_segmentation(tmp_path):
    labels = Image(np.eye(3, dtype=np.uint8), (0.5, 0.5), (1.0, 2.0))
    back, label_map = read_segmentation(
        imageio.write_segmentation(tmp_path / "x.seg.nrrd", labels, {1: LIVER})
    )
    assert back.size == (3, 3, 1) and np.array_equal(back.array[0], labels.array)
    assert list(label_map) == [1]


def test_plain_label_file_gets_uint8_and_generic_names(tmp_path, ct):
    labels = ct.with_array(np.where(ct.array > 0, 7, 0).astype(np.int64))
    path = imageio.write_segmentation(tmp_path / "labels.nii.gz", labels, {7: LIVER})
    back, label_map = read_segmentation(path)
    assert back.array.dtype == np.uint8 and np.array_equal(back.array, labels.array)
    assert label_map == {7: LabelInfo(7, "label_7")}


def test_segmentation_refuses_negative_labels(tmp_path, ct):
    with pytest.raises(ValueError, match="non-negative"):
        imageio.write_segmentation(tmp_path / "x.seg.nrrd", ct, {})


def test_overlapping_segment_layers_are_refused(tmp_path):
    layers = sitk.GetImageFromArray(np.zeros((2, 3, 4, 2), dtype=np.uint8), isVector=True)
    layers.SetMetaData("Segmentation_MasterRepresentation", "Binary labelmap")
    sitk.WriteImage(layers, str(tmp_path / "layers.seg.nrrd"))
    with pytest.raises(InputImageError, match="segments overlap"):
        read_segmentation(tmp_path / "layers.seg.nrrd")


@pytest.mark.realdata
def test_cip_nrrd_image_and_its_nifti_labels_share_one_grid(shared_data):
    """The NIfTI stores the NRRD's geometry in float32: 1e-5 mm apart, one grid all the same."""
    folder = shared_data / "ct_lung_cip_64"
    ct = read_image(require_file(folder / "ct-64.nrrd"))
    labels = read_image(require_file(folder / "lung_lr-64.nii.gz"))
    assert ct.origin != labels.origin and geometry.same_grid(ct, labels)


def _png_with_a_broken_checksum(path: Path) -> Path:
    write_image(
        path, Image((np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8), (1.0, 1.0), (0.0, 0.0))
    )
    data = bytearray(path.read_bytes())
    data[29] ^= 0xFF  # the IHDR chunk's CRC
    path.write_bytes(bytes(data))
    return path


def _nifti_with_an_unknown_datatype(path: Path) -> Path:
    write_image(path, Image(np.zeros((4, 5, 6), np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)))
    data = bytearray(path.read_bytes())
    data[70:72] = struct.pack("<h", 77)  # datatype: no such code
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("make", "model"),
    [(_png_with_a_broken_checksum, "lungs-cxr-2d"), (_nifti_with_an_unknown_datatype, "lungs-ct-3d")],
    ids=["libpng", "niftilib"],
)
def test_what_the_c_libraries_print_about_a_bad_file_stays_out_of_the_one_line(tmp_path, make, model):
    """libpng and niftilib print their own complaints on the process's stderr; the user sees only
    the one-line error (the whole command, in a child process: the lines are C's, not Python's)."""
    import subprocess
    import sys

    source = make(tmp_path / ("bad.png" if model == "lungs-cxr-2d" else "bad.nii"))
    command = [
        sys.executable,
        "-m",
        "LungLiverSegLib.cli",
        "segment",
        str(source),
        str(tmp_path / "o.nii.gz"),
    ]
    completed = subprocess.run([*command, "--model", model], capture_output=True, text=True, check=False)
    assert completed.returncode == 2
    assert completed.stderr.count("\n") == 1 and completed.stderr.startswith("lunglivseg: error:")


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
def test_an_uncompressed_write_holds_the_raw_voxels_and_reads_back_equal(tmp_path: Path, suffix: str):
    """``compress=False`` (a child's temporary input): the file is at least the raw voxel bytes,
    and reads back voxel for voxel; the default compresses a smooth image well below that."""
    array = np.tile(np.arange(64, dtype=np.int16), (16, 32, 1))
    image = Image(array, (0.8, 0.8, 2.0), (1.0, 2.0, 3.0))
    raw = write_image(tmp_path / f"raw{suffix}", image, compress=False)
    packed = write_image(tmp_path / f"packed{suffix}", image)
    if suffix != ".nii.gz":  # a .nii.gz is gzip by its name, whatever the flag
        assert raw.stat().st_size >= array.nbytes > packed.stat().st_size
    back = read_image(raw)
    np.testing.assert_array_equal(back.array, array)
    assert back.spacing == pytest.approx(image.spacing)
