"""The one exception type that carries a user-facing message."""

from .text import shown


class TextureError(Exception):
    """Bad input or an unusable result, explained in one line for the user.

    Raised before anything in the user's scene or files is changed, so callers can report
    ``str(error)`` and stop with nothing to undo. The line is escaped (:func:`.text.shown`):
    a name it quotes cannot break it into two lines or send a terminal escape sequence.
    """

    def __str__(self) -> str:
        return shown(super().__str__())


class CancelledError(TextureError):
    """The user cancelled a running job."""
