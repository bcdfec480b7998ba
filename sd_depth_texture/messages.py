"""How each door words the errors the core raises (no bpy).

The core raises structured errors (:mod:`.core.errors`) and never names a flag or a panel
field; the command line (and the batch, which is one of its commands) and the panel word them
here, each with its own names for the settings (:data:`.defaults.NAMES`) and its own advice.
"""

from __future__ import annotations

from .core.errors import (
    AuxiliaryUnavailableError,
    ModelUnavailableError,
    NoCameraError,
    SettingError,
)
from .defaults import NAMES

CLI = "cli"  # the command line and the batch
UI = "ui"  # the operators, the panel and its modal runner

_OFFLINE_FIX = {
    CLI: "Allow online access in Blender's Preferences (System > Network) to download it once, "
    "or pass --model PATH to a local diffusers folder, or --model random to test with random "
    "weights.",
    UI: "Allow Online Access in Blender's Preferences (System > Network) to download it once, "
    "or set Model in the add-on's preferences to a local diffusers folder, or to 'random' to "
    "test with random weights.",
}
_AUXILIARY_OFFLINE_FIX = {
    CLI: "Download it once with --online (texture, batch), or pass {name} PATH to a local copy "
    "of it, or {name} random to test with random weights.",
    UI: "Allow Online Access in Blender's Preferences (System > Network) to download it once, "
    "or set {name} in the add-on's preferences to a local copy of it.",
}
_NO_CAMERA_FIX = {
    CLI: "add one, or name one with --camera.",
    UI: "add one, or choose the viewport as the view.",
}


def setting_name(key: str, door: str) -> str:
    """What ``door`` calls the setting ``key``: a flag, or a quoted panel label."""
    flag, label = NAMES.get(key, (f"--{key.replace('_', '-')}", key.replace("_", " ").title()))
    return flag if door == CLI else f"'{label}'"


def word(error: BaseException, door: str) -> str:
    """The one line ``door`` shows for ``error``."""
    if isinstance(error, SettingError):
        other = setting_name(error.other_key, door) if error.other_key else None
        return error.worded(setting_name(error.key, door), other)
    if isinstance(error, AuxiliaryUnavailableError):
        advice = _AUXILIARY_OFFLINE_FIX[door].format(name=setting_name(error.key, door))
        return f"{error} {advice}"
    if isinstance(error, ModelUnavailableError):
        return f"{error} {_OFFLINE_FIX[door]}"
    if isinstance(error, NoCameraError):
        return f"{error}: {_NO_CAMERA_FIX[door]}"
    return str(error)
