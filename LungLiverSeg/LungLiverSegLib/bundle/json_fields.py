"""Typed access to JSON objects, with errors that name the source file and the dotted field."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, NoReturn, TypeGuard

from LungLiverSegLib.bundle.spec import TextRule
from LungLiverSegLib.errors import BundleError
from LungLiverSegLib.labels import LabelMap

_MISSING = object()


def is_number(value: object) -> TypeGuard[int | float]:
    """A finite JSON number that fits a float: JSON allows integers of any length, which
    ``float()`` and ``math.isfinite`` cannot take (OverflowError), and Python's reader NaN and
    Infinity, which no field means."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return abs(value) <= sys.float_info.max if isinstance(value, int) else math.isfinite(value)


def is_int(value: object) -> TypeGuard[int]:
    """A JSON integer: Python's ``bool`` is an ``int`` too, and ``true`` is no size."""
    return isinstance(value, int) and not isinstance(value, bool)


class JsonFields:
    """Typed access to one JSON object; every error names the source file and the dotted field."""

    def __init__(self, data: object, source: str | Path, path: str = "") -> None:
        self.source = str(source)
        self.path = path
        if not isinstance(data, dict):
            self.fail(None, f"expected a JSON object, got {type(data).__name__}")
        self.data: dict[str, Any] = data

    def field_name(self, key: str | None) -> str:
        """Dotted name of ``key`` inside this object (the object itself when ``key`` is None)."""
        if key is None:
            return self.path or "(top level)"
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str | None, message: str) -> NoReturn:
        raise BundleError(f"{self.source}: {self.field_name(key)}: {message}")

    def get(self, key: str, default: object = _MISSING) -> Any:
        """The raw value of ``key``; a missing key is an error unless a default is given."""
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            self.fail(key, "missing")
        return default

    def child(self, key: str) -> JsonFields:
        """The object at ``key``."""
        return JsonFields(self.get(key), self.source, self.field_name(key))

    def optional_child(self, key: str) -> JsonFields | None:
        """The object at ``key``, or None when the key is absent or null."""
        return None if self.get(key, None) is None else self.child(key)

    def mapping(self, key: str) -> dict[str, Any]:
        """A free-form object (provenance, validation); absent means empty."""
        value = self.get(key, {})
        if not isinstance(value, dict):
            self.fail(key, f"expected a JSON object, got {type(value).__name__}")
        return value

    def text(self, key: str, rule: TextRule | None = None, *, default: object = _MISSING) -> str:
        value = self.get(key, default)
        if not isinstance(value, str):
            self.fail(key, f"expected a string, got {value!r}")
        if rule is not None and not rule.pattern.match(value):
            self.fail(key, f"expected {rule.expected}, got {value!r}")
        return value

    def schema_version(self, supported: tuple[int, ...]) -> int:
        """The document's schema_version; a newer one means this LungLiverSeg is too old to read it."""
        value = self.get("schema_version")
        if not is_int(value) or value not in supported:
            readable = ", ".join(map(str, supported))
            self.fail("schema_version", f"{value!r} is not supported (this LungLiverSeg reads {readable})")
        return value

    def choice(self, key: str, choices: tuple[object, ...]) -> Any:
        """One of ``choices``, of the same type too: 3.0 and true are not the dims 3 and 1."""
        value = self.get(key)
        if not any(type(value) is type(choice) and value == choice for choice in choices):
            self.fail(key, f"expected one of {', '.join(map(repr, choices))}; got {value!r}")
        return value

    def number(self, key: str, *, minimum: float | None = None, below: float | None = None) -> float:
        """A finite number in [minimum, below)."""
        value = self.get(key)
        if not is_number(value):
            self.fail(key, f"expected a number, got {value!r}")
        if minimum is not None and value < minimum:
            self.fail(key, f"expected a number >= {minimum}, got {value!r}")
        if below is not None and value >= below:
            self.fail(key, f"expected a number below {below}, got {value!r}")
        return float(value)

    def optional_number(self, key: str) -> float | None:
        """A non-negative number, or None when null or absent."""
        return None if self.get(key, None) is None else self.number(key, minimum=0.0)

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.get(key)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.fail(key, f"expected a list of strings, got {value!r}")
        return tuple(value)

    def integer(self, key: str, *, minimum: int, maximum: int) -> int:
        value = self.get(key)
        if not is_int(value) or not minimum <= value <= maximum:
            self.fail(key, f"expected an integer in {minimum}..{maximum}, got {value!r}")
        return value

    def numbers(
        self, key: str, length: int, *, integers: bool = False, positive: bool = True, why: str = ""
    ) -> tuple[Any, ...] | None:
        """A list of ``length`` numbers (or integers), positive unless told otherwise, or None when
        null or absent."""
        value = self.get(key, None)
        if value is None:
            return None
        kind = "integers" if integers else "numbers"
        if not isinstance(value, list) or len(value) != length:
            count = len(value) if isinstance(value, list) else repr(value)
            self.fail(key, f"expected {length} {kind}{why}, got {count}")
        valid = is_int if integers else is_number
        if not all(valid(item) and (item > 0 or not positive) for item in value):
            self.fail(key, f"expected {'positive ' if positive else ''}{kind}, got {value!r}")
        return tuple(int(item) if integers else float(item) for item in value)

    def required_numbers(
        self, key: str, length: int, *, integers: bool = False, positive: bool = True, why: str = ""
    ) -> tuple[Any, ...]:
        """``numbers`` where null or absent is an error."""
        value = self.numbers(key, length, integers=integers, positive=positive, why=why)
        if value is None:
            self.fail(key, "missing")
        return value

    def sizes(self, key: str, length: int, *, maximum: int, why: str = "") -> tuple[Any, ...] | None:
        """A list of ``length`` positive integers up to ``maximum`` (pixels, voxels), or None when
        null or absent."""
        value = self.numbers(key, length, integers=True, why=why)
        if value is not None and max(value) > maximum:
            self.fail(key, f"expected integers up to {maximum}, got {list(value)}")
        return value

    def required_sizes(self, key: str, length: int, *, maximum: int, why: str = "") -> tuple[Any, ...]:
        """``sizes`` where null or absent is an error."""
        value = self.sizes(key, length, maximum=maximum, why=why)
        if value is None:
            self.fail(key, "missing")
        return value

    def label_values(self, key: str, known: LabelMap) -> tuple[int, ...]:
        """A list of label values that all exist in ``known``."""
        value = self.get(key, [])
        if not isinstance(value, list) or not all(is_int(item) for item in value):
            self.fail(key, f"expected a list of label values, got {value!r}")
        for item in value:
            if item not in known:
                self.fail(key, f"label {item} is not in labels ({sorted(known)})")
        return tuple(value)
