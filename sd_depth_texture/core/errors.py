"""The exceptions that carry a user-facing message, structured so each door can word them.

The core never names a command-line flag or a panel field: where the message depends on how
a door shows an option, the error carries the setting's key and the facts, and the door words
it (:func:`sd_depth_texture.messages.word`). ``str(error)`` is a neutral wording for logs and
for callers that are no door (scripts, tests).
"""

from __future__ import annotations

from typing import Any

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


class SettingError(TextureError):
    """A setting's value is not allowed: which setting (``key``, as in
    :data:`sd_depth_texture.defaults.NAMES`), the value given and what is allowed.

    ``problem``, when given, is the whole sentence with ``{name}`` where the door's name for
    the setting goes (and ``{other}`` for ``other_key``'s, a second setting it is checked
    against); otherwise the door says "NAME must be ALLOWED, got VALUE".
    """

    def __init__(
        self,
        key: str,
        value: Any,
        allowed: str,
        problem: str | None = None,
        other_key: str | None = None,
    ) -> None:
        self.key, self.value, self.allowed, self.problem = key, value, allowed, problem
        self.other_key = other_key
        super().__init__(self.worded(key, other_key))

    def worded(self, name: str, other: str | None = None) -> str:
        """The message with the setting called ``name`` (a flag, a quoted panel label) and the
        one it is checked against called ``other``."""
        if self.problem is not None:
            return self.problem.format(name=name, other=other or self.other_key)
        return f"{name} must be {self.allowed}, got {self.value!r}"


class ModelUnavailableError(TextureError):
    """A model cannot be had without the network (not cached, or its cached copy unusable, and
    online access off). The door adds how its user fixes that (its own option names)."""


class AuxiliaryUnavailableError(TextureError):
    """An auxiliary model (the maps model, an upscaler) cannot be had without the network;
    ``key`` is the setting that names it, and the door says how to fix that."""

    def __init__(self, message: str, key: str) -> None:
        self.key = key
        super().__init__(message)


class NoCameraError(TextureError):
    """The scene has no camera and none was named; the door says how to choose a view."""
