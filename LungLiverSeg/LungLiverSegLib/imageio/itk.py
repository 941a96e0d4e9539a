"""Calling ITK from the readers: its exceptions as one ``InputImageError`` line, its warnings off.

SimpleITK raises ``RuntimeError`` with a multi-line text (ITK's source file and line, the class,
then the reason), and ITK prints its warnings straight to stderr (e.g. "Non uniform sampling or
missing slices detected"), as do the C libraries under it ("libpng error: IHDR: CRC error",
niftilib's "** ERROR: nifti_convert_nhdr2nim: bad datatype"): raw lines around our one-line
messages. The readers check what matters themselves and say it in one line, so ITK's warnings are
switched off and the process's C-level stderr goes to the null device while it runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
        with _c_stderr_discarded():
            return call()
    except RuntimeError as error:
        raise InputImageError(f"{failure} ({reason(error)})") from None
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


@contextmanager
def _c_stderr_discarded() -> Iterator[None]:
    """Point file descriptor 2 at the null device while the block runs (C libraries print there
    without asking Python), then back; Python's own ``sys.stderr`` is flushed first."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def reason(error: Exception) -> str:
    """The informative last line of a (multi-line) SimpleITK exception."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
