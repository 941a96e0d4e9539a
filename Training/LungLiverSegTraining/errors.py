"""Training's user errors: subclasses of the core's ``LungLiverSegError``, so the CLI prints one line."""

from __future__ import annotations

from LungLiverSegLib.errors import LungLiverSegError


class DatasetError(LungLiverSegError):
    """A training dataset is missing, malformed or inconsistent (the message names the file)."""


class TrainingConfigError(LungLiverSegError):
    """A training configuration, a resume or an ``--init-from`` bundle does not fit the job."""


class MissingPackageError(LungLiverSegError):
    """A third-party package that training imports is not installed (e.g. matplotlib in a Slicer)."""
