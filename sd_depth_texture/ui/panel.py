"""The N-panel tab in the 3D viewport: settings, Generate/Cancel, progress and the depth map.

What it hides is never used: the camera collection shows (and counts) only with Views above 1.
"""

from __future__ import annotations

import sys

import bpy

from ..blender import preferences
from ..blender.images import depth_image
from . import loras
from .runner import ModalRunner


def _controlnet_chosen(context) -> bool:
    """Whether the preferences name a depth ControlNet (its settings show only then)."""
    prefs = preferences.preferences(context)
    return bool(prefs is not None and prefs.controlnet_source.strip())


class SDT_PT_main(bpy.types.Panel):
    bl_label = "SD Depth Texture"
    bl_idname = "SDT_PT_main"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "SD Texture"

    def draw(self, context) -> None:
        layout = self.layout
        settings = context.scene.sd_depth_texture
        state = context.window_manager.sd_depth_texture

        layout.prop(settings, "prompt", text="")
        layout.prop(settings, "negative_prompt", text="Avoid")
        column = layout.column(align=True)
        column.prop(settings, "seed")
        column.prop(settings, "steps")
        column.prop(settings, "guidance")
        column.prop(settings, "scheduler", text="")
        if _controlnet_chosen(context):
            column = layout.column(align=True)
            column.prop(settings, "conditioning_scale")
            column.prop(settings, "control_start")
            column.prop(settings, "control_end")
        column = layout.column(align=True)
        column.prop(settings, "resolution")
        column.prop(settings, "texture_size")
        column.prop(settings, "margin")
        active = context.active_object
        if active is not None and active.type == "MESH":
            column.prop_search(settings, "uv_map", active.data, "uv_layers", text="UV Map")
        else:
            column.prop(settings, "uv_map")
        row = layout.row()
        row.prop(settings, "view_source", expand=True)
        if settings.view_source == "CAMERA":
            layout.prop(settings, "camera", text="")
        box = layout.box()
        box.prop(settings, "views", text="Views (1 = this view only)")
        if settings.views > 1:
            box.prop(settings, "view_prompts")
            box.prop(settings, "match_colors")
            box.prop(settings, "camera_collection")

        loras.draw(layout, settings)

        if state.running:
            layout.progress(factor=state.progress, text=state.status or "Working")
            layout.operator("sd_depth_texture.cancel", icon="CANCEL", text="Cancel (Esc)")
        else:
            layout.operator("sd_depth_texture.generate", icon="TEXTURE")
            if ModalRunner.stopping():
                layout.label(text="The previous run is stopping after its current step")
            elif state.status:
                layout.label(text=state.status)
            if state.coverage > 0:
                layout.label(text=f"Coverage: {state.coverage:.0%} of texels seen by a view")
        row = layout.row(align=True)
        row.operator("sd_depth_texture.capture_depth", icon="IMAGE_ZDEPTH")
        row.operator("sd_depth_texture.project_image", icon="IMAGE_DATA")

        box = layout.box()
        box.label(text=f"Model: {model_status()}", icon="MODIFIER")
        box.operator("sd_depth_texture.free_model", icon="TRASH")
        depth = depth_image()
        if depth is not None:
            box = layout.box()
            box.label(text="Depth sent to the model")
            box.template_icon(icon_value=depth.preview_ensure().icon_id, scale=6)


def model_status() -> str:
    """What is loaded, without importing torch (or waiting on a load in progress)."""
    if "torch" not in sys.modules:
        return "not loaded"
    from ..core.diffusion.cache import pipeline_status

    return pipeline_status()


classes = (SDT_PT_main,)
register, unregister = bpy.utils.register_classes_factory(classes)
