"""Errors a user can act on, and warnings a user should see.

The CLI and the Slicer module show ``str(error)`` as a one-line message (the Python API raises
it to the caller); a traceback is only for bugs. Messages name the file or field at fault and
the fix. Other packages (Training) subclass ``LungLiverSegError`` for their own user errors.
"""

from __future__ import annotations


class LungLiverSegError(Exception):
    """Base class: an error caused by the input or the environment, not by a bug."""


class InputImageError(LungLiverSegError):
    """The input image cannot be segmented (missing, unreadable, wrong kind, empty, NaN...)."""


class OutputWriteError(LungLiverSegError, OSError):
    """A file could not be written completely (disk full, read-only, no permission, name too long);
    nothing half-written is left behind. Also an ``OSError``, as the failure it reports is one."""


class BundleError(LungLiverSegError):
    """A model bundle is missing, corrupt, fails validation, or does not fit the task."""


class OutOfMemoryRisk(LungLiverSegError):  # noqa: N818  (public name callers catch; a refusal, not a failure)
    """The memory preflight predicts the job would not fit; the message says what to do."""


class Cancelled(LungLiverSegError):  # noqa: N818  (public name callers catch; the user's choice, not an error)
    """The user cancelled a long-running job."""


class LungLiverSegWarning(UserWarning):
    """Something about this run the user should see: the CLI prints it as ``lunglivseg: warning:``
    and the Slicer module shows it; other libraries' warnings keep Python's own format."""


class ExecutionPlanWarning(LungLiverSegWarning, ResourceWarning):
    """The memory plan changed how the job runs (smaller batches, the CPU instead of the GPU).

    Also a ``ResourceWarning``, so Python's default filters keep it quiet for API callers, as before.
    """
