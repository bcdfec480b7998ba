"""The panel's LoRA list: a UIList of the scene's LoRAs with Add and Remove.

The list lives on the scene settings (saved with the .blend, like the prompt); Generate reads it
(or its own ``loras`` when a script gives them) and hands (path, weight) pairs to the one
builder, which checks every weight; the files are checked before the model loads.
"""

from __future__ import annotations

import bpy


class SDT_UL_loras(bpy.types.UIList):
    """One row per LoRA: used or not, its file, its weight."""

    def draw_item(self, _context, layout, _data, item, _icon, _active_data, _active_prop, _index):
        row = layout.row(align=True)
        row.prop(item, "enabled", text="")
        row.prop(item, "path", text="", emboss=True)
        row.prop(item, "scale", text="")


class SDT_OT_lora_add(bpy.types.Operator):
    """Add a LoRA to the list (choose its .safetensors file in the new row)"""

    bl_idname = "sd_depth_texture.lora_add"
    bl_label = "Add LoRA"
    bl_options = {"UNDO"}

    def execute(self, context):
        settings = context.scene.sd_depth_texture
        settings.loras.add()
        settings.lora_index = len(settings.loras) - 1
        return {"FINISHED"}


class SDT_OT_lora_remove(bpy.types.Operator):
    """Remove the selected LoRA from the list"""

    bl_idname = "sd_depth_texture.lora_remove"
    bl_label = "Remove LoRA"
    bl_options = {"UNDO"}

    @classmethod
    def poll(cls, context) -> bool:
        settings = context.scene.sd_depth_texture
        if not 0 <= settings.lora_index < len(settings.loras):
            cls.poll_message_set("Select a LoRA in the list")
            return False
        return True

    def execute(self, context):
        settings = context.scene.sd_depth_texture
        settings.loras.remove(settings.lora_index)
        settings.lora_index = max(0, min(settings.lora_index, len(settings.loras) - 1))
        return {"FINISHED"}


def draw(layout, settings) -> None:
    """The LoRA box of the panel."""
    box = layout.box()
    box.label(text="LoRAs (weights from -8 to 8)", icon="MODIFIER_ON")
    row = box.row()
    row.template_list("SDT_UL_loras", "", settings, "loras", settings, "lora_index", rows=2)
    column = row.column(align=True)
    column.operator(SDT_OT_lora_add.bl_idname, icon="ADD", text="")
    column.operator(SDT_OT_lora_remove.bl_idname, icon="REMOVE", text="")


classes = (SDT_UL_loras, SDT_OT_lora_add, SDT_OT_lora_remove)
register, unregister = bpy.utils.register_classes_factory(classes)
