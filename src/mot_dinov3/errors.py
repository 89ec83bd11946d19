"""The exception types users see.

A :class:`UserError` carries a one-line message that names the bad input and the fix. The CLI prints
it without a traceback (unless ``--debug``) and exits with code 2; Python callers can catch it as the
``ValueError`` it is (and a missing file as ``FileNotFoundError``).
"""

from __future__ import annotations

from typing import Any


class UserError(ValueError):
    """A problem the user can fix: bad input, missing model, unwritable output."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class WriteError(UserError):
    """An output could not be written (disk full, I/O error) during or at the end of a run.

    Attributes:
        summary: the run's :class:`~mot_dinov3.profiling.RunSummary` when the run got that far (what
            was complete has been written), else ``None``.
    """

    def __init__(self, message: str, summary: Any = None):
        super().__init__(message)
        self.summary = summary
