"""The one exception type users see.

A :class:`UserError` carries a one-line message that names the bad input and the fix. The CLI prints
it without a traceback (unless ``--debug``) and exits with code 2.
"""


class UserError(Exception):
    """A problem the user can fix: bad input, missing model, unwritable output."""
