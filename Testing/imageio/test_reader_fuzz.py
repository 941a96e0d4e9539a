"""Fuzzing the readers: a small valid NIfTI, NRRD, PNG or DICOM file with bytes flipped, cut off
or a header field set to a hostile value must be read, or refused with a ``LungLiverSegError``
(one line for the user), never fail with another exception (a traceback).

Each test has a fixed example budget and ``derandomize=True``: every run tries the same inputs,
so a failure found here is found again, in CI too.
"""

from __future__ import annotations

import contextlib
import gzip
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from factories import threshold_bundle
from hypothesis import given, settings
from hypothesis import strategies as st
from LungLiverSegLib.errors import LungLiverSegError
from LungLiverSegLib.geometry import Image, to_sitk
from LungLiverSegLib.imageio import read_image
from LungLiverSegLib.segmentation.input_checks import check_input

pytestmark = [
    pytest.mark.fuzz,
    # a fuzzed CT that still reads may well not look like one: that warning is not what is tested
    pytest.mark.filterwarnings("ignore::LungLiverSegLib.segmentation.input_checks.InputWarning"),
]

BUNDLE = threshold_bundle()
VOLUME = Image(
    np.where(np.arange(4 * 5 * 6).reshape(4, 5, 6) % 3 == 0, -1000, 40).astype(np.int16),
    (0.5, 0.7, 2.0),
    (-12.5, 30.0, 7.0),
)


def fuzzed(examples: int) -> Callable:
    """The same inputs every run, no example database, no deadline (ITK's first read is slower)."""
    return settings(max_examples=examples, derandomize=True, deadline=None, database=None)


def file_bytes(name: str, image: Image, compress: bool = False) -> bytes:
    """A valid file of ``image`` as SimpleITK writes it."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        sitk.WriteImage(to_sitk(image), str(path), useCompression=compress)
        return path.read_bytes()


def reads_or_refuses(content: bytes, name: str) -> None:
    """Write ``content`` as ``name``, read it and check it as a segmentation input: only our errors."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(content)
        with contextlib.suppress(LungLiverSegError):
            check_input(read_image(path), BUNDLE, name)


def flipped(content: bytes, edits: list[tuple[int, int]], keep: int | None) -> bytes:
    """``content`` with byte ``at`` set to ``value`` for each edit, then cut to ``keep`` bytes."""
    changed = bytearray(content)
    for at, value in edits:
        changed[at % len(changed)] = value
    return bytes(changed[:keep])


EDITS = st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), max_size=6)
CUTS = st.none() | st.integers(0, 2000)
NIFTI = file_bytes("ct.nii", VOLUME)
NRRD = file_bytes("ct.nrrd", VOLUME)
PNG = file_bytes("xray.png", Image(np.arange(48, dtype=np.uint8).reshape(6, 8) * 5, (0.5, 0.5), (0.0, 0.0)))

NIFTI_FIELDS = {
    "dim": (40, "8h"),
    "datatype_bitpix": (70, "2h"),
    "pixdim": (76, "8f"),
    "vox_offset": (108, "f"),
    "scl_slope_inter": (112, "2f"),
    "qform_sform_code": (252, "2h"),
    "quatern_qoffset": (256, "6f"),
    "srow": (280, "12f"),
}
SHORTS = st.integers(-(2**15), 2**15 - 1) | st.sampled_from([0, 1, 2, 3, 4, 7, 8, 16, 32, 64, 128, 256, 512])
FLOATS = st.floats(width=32) | st.sampled_from([0.0, -1.0, 1e30, float("nan"), float("inf")])


@st.composite
def nifti_field(draw: st.DrawFn) -> bytes:
    """NIfTI bytes with one header field set to hostile numbers (NaN, inf, negative, huge)."""
    offset, layout = NIFTI_FIELDS[draw(st.sampled_from(sorted(NIFTI_FIELDS)))]
    values = [draw(SHORTS if code == "h" else FLOATS) for code in layout[-1] * int(layout[:-1] or 1)]
    content = bytearray(NIFTI)
    struct.pack_into("<" + layout, content, offset, *values)
    return bytes(content)


NRRD_VALUES = st.sampled_from(
    ["nan", "-nan", "inf", "-1", "0", "1e308", "x", "", "(1,0,0)", "(nan,nan,nan)", "none", "(0,0,0)", "1,2"]
)


@st.composite
def nrrd_field(draw: st.DrawFn) -> bytes:
    """NRRD bytes with one header line's values replaced by hostile ones."""
    head, _, body = NRRD.partition(b"\n\n")
    lines = head.decode().split("\n")
    number = draw(st.integers(1, len(lines) - 1))
    key = lines[number].partition(":")[0]
    values = draw(st.lists(NRRD_VALUES, min_size=1, max_size=4))
    lines[number] = f"{key}: {' '.join(values)}"
    return "\n".join(lines).encode() + b"\n\n" + body


@fuzzed(400)
@given(content=nifti_field())
def test_nifti_header_fields(content):
    reads_or_refuses(content, "ct.nii")


@fuzzed(300)
@given(edits=EDITS, keep=CUTS)
def test_nifti_bytes(edits, keep):
    reads_or_refuses(flipped(NIFTI, edits, keep), "ct.nii")


@fuzzed(200)
@given(edits=EDITS, keep=CUTS, compress_after=st.booleans())
def test_nifti_gz_bytes(edits, keep, compress_after):
    """Flips in the NIfTI compressed (the header and voxels reach the readers) or in the gzip stream."""
    if compress_after:
        reads_or_refuses(gzip.compress(flipped(NIFTI, edits, keep)), "ct.nii.gz")
    else:
        reads_or_refuses(flipped(gzip.compress(NIFTI), edits, keep), "ct.nii.gz")


@fuzzed(400)
@given(content=nrrd_field())
def test_nrrd_header_fields(content):
    reads_or_refuses(content, "ct.nrrd")


@fuzzed(200)
@given(edits=EDITS, keep=CUTS)
def test_nrrd_bytes(edits, keep):
    reads_or_refuses(flipped(NRRD, edits, keep), "ct.nrrd")


@fuzzed(200)
@given(edits=EDITS, keep=CUTS)
def test_png_bytes(edits, keep):
    reads_or_refuses(flipped(PNG, edits, keep), "xray.png")


def dicom_series(folder: Path) -> list[Path]:
    """Three axial slices 2.5 mm apart, one file each, as a scanner writes them."""
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    paths = []
    for k, plane in enumerate(VOLUME.array[:3]):
        image = sitk.GetImageFromArray(plane)
        image.SetSpacing((0.5, 0.7))
        uid = "1.2.826.0.1.3680043.2.1125.9.1"
        tags = {"0008|0060": "CT", "0020|000e": uid, "0008|0018": f"{uid}.{k}", "0020|0013": str(k + 1)}
        tags |= {"0020|0032": f"10\\-20\\{100 + 2.5 * k:.6f}", "0020|0037": "1\\0\\0\\0\\1\\0"}
        for tag, value in tags.items():
            image.SetMetaData(tag, value)
        paths.append(folder / f"slice{k}.dcm")
        writer.SetFileName(str(paths[-1]))
        writer.Execute(image)
    return paths


@fuzzed(400)
@given(edits=EDITS, keep=CUTS, which=st.integers(0, 2))
def test_dicom_series_with_one_file_broken(edits, keep, which):
    """One slice file of a series broken: the folder read (slice checks), then the file alone."""
    with tempfile.TemporaryDirectory() as folder:
        paths = dicom_series(Path(folder))
        paths[which].write_bytes(flipped(paths[which].read_bytes(), edits, keep))
        for source in (Path(folder), paths[which]):
            with contextlib.suppress(LungLiverSegError):
                check_input(read_image(source), BUNDLE, source.name)
