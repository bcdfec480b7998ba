"""Dependencies as a state, not a crash: what generating needs and whether this Blender has it.

The add-on enables without torch and diffusers (the usual state after installing the plain
zip). The preferences show what is found and what is missing, with the exact command for this
Blender's own Python and a button that copies it; Generate is disabled with a poll message that
says what is missing; Capture Depth and Project Image need none of it.

Looking for packages is cheap (``find_spec``, no import), so it is cached and refreshed by the
preferences' Check Again button. Devices need torch imported (seconds), so they are described
only on request (the Check Devices button) or once torch is loaded anyway.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

import bpy

from ..core.diffusion.dependencies import (
    OPTIONAL_PACKAGES,
    PINNED_VERSIONS,
    install_command,
    missing_optional,
    missing_packages,
    optional_install_command,
    optional_versions,
)

log = logging.getLogger(__name__)


@dataclass
class DependencyState:
    missing: list[str]
    versions: dict[str, str | None]
    command: str
    devices: list[str] = field(default_factory=list)  # "CUDA: NVIDIA ..., 80.0 GB", "CPU"
    # Optional packages (c2pa-python): missing ones never disable anything, they are skipped.
    optional_missing: list[str] = field(default_factory=list)
    optional: dict[str, str | None] = field(default_factory=dict)
    optional_command: str = ""

    @property
    def ready(self) -> bool:
        return not self.missing

    def poll_message(self) -> str:
        return (
            f"Generating needs {', '.join(self.missing)}: see the add-on's preferences for the "
            "command that installs them"
        )


_state: DependencyState | None = None


def state(refresh: bool = False) -> DependencyState:
    """The cached state (found again with ``refresh``)."""
    global _state
    if _state is None or refresh:
        from ..core.diffusion.dependencies import installed_versions

        devices = _state.devices if _state is not None and not refresh else []
        _state = DependencyState(
            missing=missing_packages(),
            versions=installed_versions(),
            command=install_command(sys.executable, sys.platform),
            devices=devices,
            optional_missing=missing_optional(),
            optional=optional_versions(),
            optional_command=optional_install_command(sys.executable, sys.platform),
        )
        if "torch" in sys.modules and not _state.devices:
            _state.devices = describe_devices()
    return _state


def describe_devices() -> list[str]:
    """The devices torch sees (imports torch: seconds the first time)."""
    if "torch" in missing_packages():
        return []
    from ..core.diffusion.device import describe_devices as devices

    return [device.label for device in devices()]


def draw(layout) -> None:
    """The preferences' dependency box."""
    current = state()
    box = layout.box()
    if current.ready:
        box.label(text="Model packages: all found", icon="CHECKMARK")
    else:
        box.label(text=f"Missing: {', '.join(current.missing)}", icon="ERROR")
        box.label(text="Capture Depth and Project Image work without them.")
    column = box.column(align=True)
    for name, pinned in PINNED_VERSIONS.items():
        found = current.versions.get(name)
        text = f"{name} {found}" if found else f"{name}: not installed"
        if found and found.split("+")[0] != pinned:
            text += f" (tested with {pinned})"
        column.label(text=text, icon="CHECKMARK" if found else "X")
    for name, (_, _pinned, adds) in OPTIONAL_PACKAGES.items():
        found = current.optional.get(name)
        text = f"{name} {found} (optional)" if found else f"{name}: not installed (optional)"
        column.label(text=text, icon="CHECKMARK" if found else "INFO")
        if not found:
            column.label(text=f"It adds {adds}")
    if current.optional_missing:
        box.label(text="Optional, into this Blender's own Python:")
        box.label(text=current.optional_command)
    for device in current.devices:
        box.label(text=device, icon="DESKTOP")
    row = box.row()
    row.operator("sd_depth_texture.check_dependencies", icon="FILE_REFRESH")
    if current.ready:
        row.operator("sd_depth_texture.check_devices", icon="DESKTOP")
    if not current.ready:
        box.label(text="Install them into this Blender's own Python (then restart Blender):")
        box.label(text=current.command)
        box.operator("sd_depth_texture.copy_install_command", icon="COPYDOWN")


class SDT_OT_check_dependencies(bpy.types.Operator):
    """Look again for torch, diffusers and the other packages generating needs"""

    bl_idname = "sd_depth_texture.check_dependencies"
    bl_label = "Check Again"

    def execute(self, _context):
        current = state(refresh=True)
        if current.ready:
            self.report({"INFO"}, "All the packages generating needs are installed")
        else:
            self.report({"WARNING"}, f"Still missing: {', '.join(current.missing)}")
        return {"FINISHED"}


class SDT_OT_check_devices(bpy.types.Operator):
    """List the devices torch can run the model on (loads torch: a few seconds)"""

    bl_idname = "sd_depth_texture.check_devices"
    bl_label = "Check Devices"

    def execute(self, _context):
        state().devices = describe_devices()
        self.report({"INFO"}, "; ".join(state().devices) or "No device found")
        return {"FINISHED"}


class SDT_OT_copy_install_command(bpy.types.Operator):
    """Copy the command that installs the missing packages into this Blender's Python"""

    bl_idname = "sd_depth_texture.copy_install_command"
    bl_label = "Copy Install Command"

    def execute(self, context):
        context.window_manager.clipboard = state().command
        self.report({"INFO"}, "Install command copied: run it in a terminal, then restart Blender")
        return {"FINISHED"}


classes = (SDT_OT_check_dependencies, SDT_OT_check_devices, SDT_OT_copy_install_command)
register, unregister = bpy.utils.register_classes_factory(classes)
