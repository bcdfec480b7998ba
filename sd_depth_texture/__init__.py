"""SD Depth Texture: depth-guided texturing with Stable Diffusion 2 depth, inside Blender.

Registration only: the doors are :mod:`.ui` and :mod:`.cli`, the flow :mod:`.blender.flow`,
the pure work :mod:`.core` (no bpy).
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

_cli_handle = None


def register() -> None:
    import bpy

    from .cli.main import main as cli_main
    from .ui import dependencies, loras, operators, panel, properties

    global _cli_handle
    properties.register()
    dependencies.register()
    operators.register()
    loras.register()
    panel.register()
    if hasattr(bpy.utils, "register_cli_command"):
        _cli_handle = bpy.utils.register_cli_command("sd_depth_texture", cli_main)


def unregister() -> None:
    import bpy

    from .ui import dependencies, loras, operators, panel, properties

    global _cli_handle
    if _cli_handle is not None:
        bpy.utils.unregister_cli_command(_cli_handle)
        _cli_handle = None
    panel.unregister()
    loras.unregister()
    operators.unregister()
    dependencies.unregister()
    properties.unregister()
