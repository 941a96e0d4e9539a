"""Refuse a DICOM file whose element claims more bytes than the file holds, before GDCM reads it.

GDCM allocates (and zero-fills) the length an element declares before reading its value: a
cut-off or corrupt length of up to 4 GB costs that much memory on every read, and when the read
then fails the memory is never freed (measured: 740 MB kept per read of one 900-byte file with a
flipped length byte; a folder read touches a file three times). Walking the element headers here
costs a few hundredths of a millisecond per element and reads no values.

Only what can be walked for certain is checked: Part-10 files (``DICM`` after the preamble) in
little-endian transfer syntaxes, into undefined-length sequences, up to encapsulated pixel data.
Anything else (big endian, deflated, an undefined-length ``UN``) ends the walk without a verdict.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from LungLiverSegLib.errors import InputImageError

PREAMBLE_BYTES = 128
MAGIC = b"DICM"
UNDEFINED_LENGTH = 0xFFFFFFFF
ITEM_GROUP = 0xFFFE
"""Items and delimiters: a tag and a 4-byte length, no VR, in every transfer syntax."""
META_GROUP, TRANSFER_SYNTAX, PIXEL_DATA = 0x0002, (0x0002, 0x0010), (0x7FE0, 0x0010)
IMPLICIT_LITTLE_ENDIAN = "1.2.840.10008.1.2"
NOT_WALKED = ("1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99")
"""Explicit VR big endian and deflated explicit VR little endian."""
SHORT_VRS = frozenset(b"AE AS AT CS DA DS DT FL FD IS LO LT PN SH SL SS ST TM UI UL US".split())
"""Explicit VRs with a 2-byte length; every other VR, an unknown (corrupt) one too, has 2 reserved
bytes and a 4-byte length, as the standard says and GDCM reads it."""


def has_dicom_magic(path: Path) -> bool:
    """Whether ``path`` is a DICOM Part-10 file (``DICM`` after the 128-byte preamble)."""
    with path.open("rb") as stream:
        stream.seek(PREAMBLE_BYTES)
        return stream.read(len(MAGIC)) == MAGIC


def check_element_lengths(path: Path) -> None:
    """Refuse ``path`` when one of its elements claims more bytes than remain in the file."""
    if has_dicom_magic(path):
        with path.open("rb") as stream:
            stream.seek(PREAMBLE_BYTES + len(MAGIC))
            _walk(path, stream, path.stat().st_size)


def _walk(path: Path, stream: BinaryIO, size: int) -> None:
    explicit, in_meta_group, syntax = True, True, ""  # the meta group is explicit VR little endian
    while len(head := stream.read(8)) == 8:
        group, element = struct.unpack("<2H", head[:4])
        if in_meta_group and group != META_GROUP:  # the data set begins, in its transfer syntax
            if not syntax or syntax in NOT_WALKED:
                return
            explicit, in_meta_group = syntax != IMPLICIT_LITTLE_ENDIAN, False
        vr, length = _vr_and_length(head, explicit and group != ITEM_GROUP, stream)
        if length == UNDEFINED_LENGTH:
            if vr not in (b"SQ", b"") or (group, element) == PIXEL_DATA:
                return  # encapsulated pixel data or an undefined-length UN: nothing more to walk
        elif group != ITEM_GROUP:  # an item's or a sequence's elements follow in the stream
            _check_fits(path, group, element, length, size - stream.tell())
            if (group, element) == TRANSFER_SYNTAX:
                syntax = stream.read(length).decode("ascii", "replace").strip("\0 ")
            else:
                stream.seek(length, 1)


def _check_fits(path: Path, group: int, element: int, length: int, remaining: int) -> None:
    if length > remaining:
        raise InputImageError(
            f"{path}: DICOM file is cut off or corrupt: element ({group:04X},{element:04X}) claims "
            f"{length} bytes, {remaining} remain; replace or remove it"
        )


def _vr_and_length(head: bytes, explicit: bool, stream: BinaryIO) -> tuple[bytes, int]:
    """VR (empty when implicit) and value length of the element whose first 8 bytes are ``head``;
    a header the end of the file cuts short reads as length 0 (the walk ends at the next read)."""
    if not explicit:
        return b"", struct.unpack("<I", head[4:8])[0]
    vr = head[4:6]
    if vr in SHORT_VRS:
        return vr, struct.unpack("<H", head[6:8])[0]
    length = stream.read(4)  # after the 2 reserved bytes
    return vr, struct.unpack("<I", length)[0] if len(length) == 4 else 0
