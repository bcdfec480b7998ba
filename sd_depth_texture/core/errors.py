"""The one exception type that carries a user-facing message."""


class TextureError(Exception):
    """Bad input or an unusable result, explained in one line for the user.

    Raised before anything in the user's scene or files is changed, so callers can report
    ``str(error)`` and stop with nothing to undo.
    """


class CancelledError(TextureError):
    """The user cancelled a running job."""
