"""NIfTI-1 files: what ITK's NIfTI reader hides, read from the file's own header and voxels.

ITK reads NIfTI through niftilib, which without a word reads a zero, NaN or infinite ``pixdim``
as 1 mm (a negative one as a flipped axis), NaN and infinite float voxels as 0 (an all-NaN image
becomes "constant 0"), and a cut-off file as zero-filled voxels. So the 348-byte header is parsed
here (either byte order; ITK reads no NIfTI-2), its grid and size checked before ITK reads the
file, and after it a cut-off file is refused and the NaN and infinite float voxels are put back
into ITK's array (one more pass over the voxel bytes), so that the input checks see and refuse
them as in any other format.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from LungLiverSegLib.errors import InputImageError
from LungLiverSegLib.geometry import Image
from LungLiverSegLib.imageio.headers import check_finite, check_spacing

HEADER_BYTES = 348
READ_CHUNK_BYTES = 1 << 24
"""Voxel bytes read at a time: a multiple of every voxel size, so each chunk holds whole voxels."""
DATATYPE_BYTES = {2: 1, 4: 2, 8: 4, 16: 4, 32: 8, 64: 8, 128: 3, 256: 1, 512: 2, 768: 4, 1024: 8, 1280: 8}
"""Bytes per voxel of each NIfTI datatype ITK reads: niftilib sizes voxels by ``datatype`` and
ignores ``bitpix``."""
DEFLATE_MOST_RATIO = 1032
"""The most bytes one byte of gzip's deflate data expands to (zlib's limit): what a ``.nii.gz``
file holds at most, known without decompressing it."""
FLOAT_TYPES = {16: "f4", 64: "f8"}
"""NIfTI datatype codes of real floats (FLOAT32, FLOAT64): niftilib sets their NaN and infinite
voxels to 0 (it does the same to complex ones, which no CT is)."""


@dataclass(frozen=True)
class Header:
    """The NIfTI-1 header fields that place and size the voxels (``shape`` and ``spacing`` along
    ``dim[1..dim[0]]``; ``qform``: quatern_b, c, d and qoffset_x, y, z; ``sform``: srow_x, y, z)."""

    byte_order: str
    shape: tuple[int, ...]
    datatype: int
    spacing: tuple[float, ...]
    voxel_offset: int
    qform: tuple[float, ...] | None
    sform: tuple[float, ...] | None

    @property
    def voxel_bytes(self) -> int:
        return math.prod(self.shape) * DATATYPE_BYTES.get(self.datatype, 0)

    @property
    def file_bytes(self) -> int:
        """Header, extensions and voxels: the uncompressed size of a complete file."""
        return self.voxel_offset + self.voxel_bytes


def _parse(header: bytes) -> Header | None:
    """The header's fields, or None when these bytes are no NIfTI-1 header ITK could read."""
    if len(header) < HEADER_BYTES:
        return None
    for order in "<>":
        dims = struct.unpack_from(order + "8h", header, 40)
        if struct.unpack_from(order + "i", header)[0] == HEADER_BYTES and 1 <= dims[0] <= 7:
            return _fields(header, order, dims[1 : dims[0] + 1])
    return None


def read_header(path: Path) -> Header | None:
    """The header of a ``.nii`` or ``.nii.gz`` file, or None when it has no NIfTI-1 header."""
    try:
        with _open(path) as stream:
            return _parse(stream.read(HEADER_BYTES))
    except (OSError, EOFError) as error:
        raise InputImageError(f"{path}: could not be read as an image ({error})") from None


def check_header(path: Path, header: Header) -> None:
    """Before ITK reads the file: refuse the spacing or placement niftilib would silently replace,
    and a header promising more voxel bytes than the file can hold (ITK would allocate and fill
    them: a 600-byte file claiming 3 GB took 3 GB of memory, a larger claim all of it)."""
    spatial = min(len(header.shape), 3)
    check_spacing(path, header.spacing[:spatial], "header field pixdim")
    if header.qform is not None:
        check_finite(path, "qform", header.qform, "header fields quatern_b..qoffset_z")
    if header.sform is not None:
        check_finite(path, "sform", header.sform, "header fields srow_x..srow_z")
    most = path.stat().st_size * (DEFLATE_MOST_RATIO if _compressed(path) else 1)
    if header.file_bytes > most:
        raise InputImageError(
            f"{path}: could not be read as an image (file cut off: its header promises "
            f"{header.file_bytes} bytes, it holds at most {most})"
        )


def check_voxels(path: Path, header: Header, image: Image) -> None:
    """After ITK read the file into ``image``: refuse a cut-off file, and put the NaN and infinite
    float voxels niftilib read as 0 back into ``image.array``.

    Integer voxels hide nothing, so for them the size of a ``.nii`` or gzip's trailer of a
    ``.nii.gz`` is enough to show the file whole (``holds_every_byte``); float voxels, or a file
    that does not show it that way (several gzip members), take one pass over the voxel bytes.
    """
    float_type = FLOAT_TYPES.get(header.datatype)
    if float_type is None and holds_every_byte(path, header):
        return
    voxels = np.dtype(header.byte_order + float_type) if float_type else None
    target = _in_file_order(image)
    try:
        with _open(path) as stream:
            stream.seek(header.voxel_offset)
            for offset, chunk in _whole_chunks(stream, header.voxel_bytes):
                if voxels is not None:
                    _put_back_non_finite(target, np.frombuffer(chunk, voxels), offset // voxels.itemsize)
            available = stream.tell()
    except (OSError, EOFError) as error:
        raise InputImageError(f"{path}: could not be read as an image ({error})") from None
    if available < header.file_bytes:
        raise InputImageError(
            f"{path}: could not be read as an image (file cut off: {available} of {header.file_bytes} bytes)"
        )


def check_written(path: Path) -> None:
    """Refuse a NIfTI file we just wrote that is shorter than its header promises, without reading
    its voxels again (``holds_every_byte``)."""
    header = read_header(path)
    if header is not None and not holds_every_byte(path, header):
        raise InputImageError(
            f"{path}: cut off (shorter than the {header.file_bytes} bytes its header promises)"
        )


def holds_every_byte(path: Path, header: Header) -> bool:
    """Whether the file holds all the bytes its header promises, known without decompressing it:
    the size of a ``.nii``; for a ``.nii.gz``, gzip's trailer, whose last 4 bytes hold the
    uncompressed size mod 2**32 and which a cut-off file does not end with (its last 4 bytes are
    then deflate data, equal to the size by a 1 in 4 billion chance)."""
    if not _compressed(path):
        return path.stat().st_size >= header.file_bytes
    with path.open("rb") as stream:
        stream.seek(-4, os.SEEK_END)
        return bool(struct.unpack("<I", stream.read(4))[0] == header.file_bytes % 2**32)


def _fields(header: bytes, order: str, shape: tuple[int, ...]) -> Header:
    datatype = struct.unpack_from(order + "h", header, 70)[0]
    pixdim = struct.unpack_from(order + "8f", header, 76)
    voxel_offset = struct.unpack_from(order + "f", header, 108)[0]
    qform_code, sform_code = struct.unpack_from(order + "2h", header, 252)
    return Header(
        byte_order=order,
        shape=tuple(max(size, 0) for size in shape),
        datatype=datatype,
        spacing=pixdim[1 : len(shape) + 1],
        # niftilib's rule: an offset inside the header (or no number) means "right after it"
        voxel_offset=int(voxel_offset) if HEADER_BYTES <= voxel_offset < 2**31 else HEADER_BYTES,
        qform=struct.unpack_from(order + "6f", header, 256) if qform_code > 0 else None,
        sform=struct.unpack_from(order + "12f", header, 280) if sform_code > 0 else None,
    )


def _open(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if _compressed(path) else path.open("rb")


def _compressed(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def _whole_chunks(stream: io.BufferedIOBase, total: int) -> Iterator[tuple[int, bytes]]:
    """``(offset, chunk)`` over the next ``total`` bytes, stopping before a chunk the end of a
    cut-off file makes short (it may end inside a voxel)."""
    done = 0
    while done < total:
        wanted = min(READ_CHUNK_BYTES, total - done)
        chunk = stream.read(wanted)
        if len(chunk) < wanted:
            return
        yield done, chunk
        done += wanted


def _in_file_order(image: Image) -> np.ndarray:
    """A view of ``image.array`` indexed ``[component, voxel]`` in the file's voxel order: NIfTI
    stores vector components as its slowest axis (``dim[5]``), ITK as the fastest."""
    components = image.array.shape[-1] if image.array.ndim > image.ndim else 1
    return image.array.reshape(-1, components).T


def _put_back_non_finite(target: np.ndarray, values: np.ndarray, first: int) -> None:
    """Copy the NaN and infinite ``values`` (file voxels ``first``...) into ``target``."""
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        target[np.unravel_index(first + bad, target.shape)] = values[bad]
