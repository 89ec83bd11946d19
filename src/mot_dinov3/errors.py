"""The exception types users see.

A :class:`UserError` carries a one-line message that names the bad input and the fix. The CLI prints
it without a traceback (unless ``--debug``) and exits with code 2; Python callers can catch it as the
``ValueError`` it is (and a missing file as ``FileNotFoundError``).
"""


class UserError(ValueError):
    """A problem the user can fix: bad input, missing model, unwritable output."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""
