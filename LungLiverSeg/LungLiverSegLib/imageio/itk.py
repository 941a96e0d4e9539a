"""Calling ITK from the readers: its exceptions as one ``InputImageError`` line, its warnings off.

SimpleITK raises ``RuntimeError`` with a multi-line text (ITK's source file and line, the class,
then the reason), and ITK prints its warnings straight to stderr (e.g. "Non uniform sampling or
missing slices detected"): raw lines around our one-line messages. The readers check what
matters themselves and say it in one line, so ITK's warnings are silenced while it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import SimpleITK as sitk

from LungLiverSegLib.errors import InputImageError

T = TypeVar("T")


def checked(failure: str, call: Callable[[], T]) -> T:
    """``call()`` with ITK's warnings silenced (the global switch is put back as it was); its
    ``RuntimeError`` becomes one ``InputImageError`` line: ``failure (ITK's reason)``."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        return call()
    except RuntimeError as error:
        raise InputImageError(f"{failure} ({reason(error)})") from None
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def reason(error: Exception) -> str:
    """The informative last line of a (multi-line) SimpleITK exception."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
