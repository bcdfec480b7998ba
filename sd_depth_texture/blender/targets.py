"""The objects a run textures: which can be, their UV maps, their texture's name, their front."""

from __future__ import annotations

import logging

import bpy
import numpy as np

from ..core.errors import TextureError

log = logging.getLogger(__name__)


def texture_name(obj_name: str) -> str:
    return f"{obj_name} SD Texture"


def check_target(obj: bpy.types.Object) -> None:
    """Refuse objects that cannot be textured, with the reason in one line.

    Targets are mesh objects; curves, text and instances occlude but are not textured.
    """
    if obj.type != "MESH":
        raise TextureError(f"'{obj.name}' is a {obj.type.lower()}, not a mesh: select a mesh.")
    if obj.library is not None or obj.data.library is not None:
        raise TextureError(
            f"'{obj.name}' is linked from another file and read-only: make it local first "
            "(Object > Relations > Make Local)."
        )
    if getattr(obj, "override_library", None) is not None and not obj.data.is_editable:
        raise TextureError(f"'{obj.name}' is a library override whose mesh cannot be edited.")
    if len(obj.data.polygons) == 0:
        raise TextureError(f"'{obj.name}' has no faces to texture.")


def find_targets(names: tuple[str, ...] | list[str]) -> list[bpy.types.Object]:
    """The named objects, each checked; one clear line for a missing or unusable one."""
    found = []
    for name in names:
        obj = bpy.data.objects.get(name)
        if obj is None:
            raise TextureError(f"There is no object named '{name}' in the file.")
        check_target(obj)
        found.append(obj)
    return found


def ensure_uv_map(obj: bpy.types.Object) -> str | None:
    """Give a mesh without UVs a Smart UV Project layout; returns a note when it did."""
    if obj.data.uv_layers.active is not None:
        return None
    mesh = obj.data
    mesh.uv_layers.new(name="UVMap")
    with bpy.context.temp_override(
        active_object=obj, object=obj, selected_objects=[obj], selected_editable_objects=[obj]
    ):
        previous_mode = obj.mode
        bpy.ops.object.mode_set(mode="EDIT")
        bpy.ops.mesh.select_all(action="SELECT")
        bpy.ops.uv.smart_project(island_margin=0.01)
        bpy.ops.object.mode_set(mode=previous_mode)
    return f"'{obj.name}' had no UV map; one was made with Smart UV Project"


def remove_uv_maps(objects: list[bpy.types.Object]) -> None:
    """Remove the UV maps :func:`ensure_uv_map` made, leaving the scene as it was."""
    for obj in objects:
        obj.data.uv_layers.remove(obj.data.uv_layers.active)


def object_front(obj: bpy.types.Object) -> np.ndarray:
    """The object's own front: its local -Y turned by its rotation, flattened onto the ground.

    Falls back to the world's -Y when the local axis points mostly up or down (importers that
    tilt the object transform to convert axes).
    """
    local = np.array(obj.matrix_world.to_3x3().normalized(), dtype=np.float64) @ [0.0, -1.0, 0.0]
    flat = np.array([local[0], local[1], 0.0])
    return flat / np.linalg.norm(flat) if np.linalg.norm(flat) > 0.5 else np.array([0, -1.0, 0])
