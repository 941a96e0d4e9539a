"""The header of a safetensors file, read without torch: which tensors it holds, of which dtype
and shape, checked to describe the file exactly.

A safetensors file is an 8-byte little-endian header length, that many bytes of JSON (tensor name
-> dtype, shape, byte range in the data; optional ``__metadata__``), then the data. Reading the
header first lets a bundle be refused for a foreign, truncated or padded weights file, or one whose
tensors do not fit the network (``weights.load_network``), before its data is read or a network is
allocated. The length is bounded: a hostile file cannot make the reader allocate gigabytes for it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from LungLiverSegLib.bundle.json_fields import is_int
from LungLiverSegLib.errors import BundleError

LENGTH_BYTES = 8
MAX_HEADER_BYTES = 16 << 20
"""safetensors itself allows 100 MB; a U-Net's header is a few kB (about 100 bytes per tensor)."""
METADATA_KEY = "__metadata__"
DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
"""Bytes per element of each safetensors dtype this reader knows."""


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as a safetensors header (or a network) declares it."""

    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class _Span:
    name: str
    begin: int
    end: int


def _fail(source: object, message: str) -> NoReturn:
    raise BundleError(f"{source}: not a valid safetensors file: {message}")


def _is_size(value: object) -> bool:
    return is_int(value) and value >= 0


def _tensor(name: str, value: Any, source: object) -> tuple[TensorEntry, _Span]:
    """One header entry, its byte range checked to hold exactly ``shape`` elements of ``dtype``."""
    if not isinstance(value, dict):
        _fail(source, f"tensor {name!r}: expected an object with dtype, shape and data_offsets")
    dtype, shape, offsets = value.get("dtype"), value.get("shape"), value.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
        _fail(source, f"tensor {name!r}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_size(size) for size in shape):
        _fail(source, f"tensor {name!r}: shape must be a list of sizes, got {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_size(offset) for offset in offsets)):
        _fail(source, f"tensor {name!r}: data_offsets must be [begin, end], got {offsets!r}")
    begin, end = offsets
    if end - begin != math.prod(shape) * DTYPE_BYTES[dtype]:
        _fail(source, f"tensor {name!r}: {end - begin} bytes cannot hold a {dtype} tensor of shape {shape}")
    return TensorEntry(dtype, tuple(shape)), _Span(name, begin, end)


def _check_layout(spans: list[_Span], data_bytes: int, source: object) -> None:
    """The tensors must fill the data exactly, one after the other, as safetensors writes them."""
    position = 0
    for span in sorted(spans, key=lambda span: (span.begin, span.end)):
        if span.begin != position:
            _fail(source, f"tensor {span.name!r} starts at byte {span.begin}, expected {position}")
        position = span.end
    if position != data_bytes:
        _fail(source, f"the tensors take {position} bytes, the file holds {data_bytes} after its header")


def parse_header(raw: bytes, data_bytes: int, source: object) -> dict[str, TensorEntry]:
    """The tensors the JSON header ``raw`` declares, for a file with ``data_bytes`` after it."""
    try:
        document = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as error:
        _fail(source, f"its header is not JSON ({type(error).__name__})")
    if not isinstance(document, dict):
        _fail(source, "its header is not a JSON object")
    metadata = document.pop(METADATA_KEY, {})
    if not isinstance(metadata, dict) or not all(isinstance(text, str) for text in metadata.values()):
        _fail(source, f"{METADATA_KEY} must map names to strings")
    tensors, spans = {}, []
    for name, value in document.items():
        tensors[name], span = _tensor(name, value, source)
        spans.append(span)
    _check_layout(spans, data_bytes, source)
    return tensors


def _check_length(length: int, size: int, source: object) -> None:
    if size < LENGTH_BYTES:
        _fail(source, f"{size} bytes is shorter than the header length alone")
    if length > MAX_HEADER_BYTES:
        _fail(source, f"a header of {length} bytes is more than any weights file needs ({MAX_HEADER_BYTES})")
    if length > size - LENGTH_BYTES:
        _fail(source, f"a header of {length} bytes does not fit a file of {size} bytes")


def read_header(path: Path) -> dict[str, TensorEntry]:
    """The tensors the safetensors file ``path`` declares, reading only its header."""
    try:
        with path.open("rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            length = int.from_bytes(stream.read(LENGTH_BYTES), "little")
            _check_length(length, size, path)
            raw = stream.read(length)
    except OSError as error:
        raise BundleError(f"{path}: cannot read the weights: {error}") from error
    return parse_header(raw, size - LENGTH_BYTES - length, path)
