"""The objects a run textures: which can be, their UV maps, their texture's name, their front."""

from __future__ import annotations

import hashlib
import logging

import bpy
import numpy as np

from ..core.errors import TextureError

log = logging.getLogger(__name__)


TEXTURE_SUFFIX = " SD Texture"
#: Set on every image and material this add-on makes, to the name of the object they texture:
#: a user's own image or material that happens to carry the same name is never taken over.
OWNER = "sd_depth_texture_object"
# Blender cuts datablock names at 63 bytes (4.2) or 255 bytes (5.0) of UTF-8.
_NAME_BYTES = 255 if bpy.app.version >= (5, 0, 0) else 63


def texture_name(obj_name: str) -> str:
    """``<object> SD Texture``, the name of the object's image and material. A name Blender
    would cut is shortened at a whole character and tagged with a hash of the exact object name,
    so it keeps the suffix and two long names that share their start stay apart."""
    name = obj_name + TEXTURE_SUFFIX
    if len(name.encode("utf-8", "surrogateescape")) <= _NAME_BYTES:
        return name
    tag = hashlib.sha1(obj_name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    tail = f"-{tag}{TEXTURE_SUFFIX}"
    room = _NAME_BYTES - len(tail)
    return obj_name.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore") + tail


def _legacy_material(material: bpy.types.Material, obj_name: str) -> bool:
    """A material an earlier version made for the object (before :data:`OWNER` was set): its
    name, and the two nodes only this add-on adds."""
    nodes = material.node_tree.nodes if material.node_tree is not None else {}
    return (
        material.name == texture_name(obj_name) and "SD Texture" in nodes and "SD UV Map" in nodes
    )


def own_material(obj_name: str) -> bpy.types.Material | None:
    """The local material this add-on made for the object, if any (another of its name is not)."""
    for material in bpy.data.materials:
        if material.library is None and material.get(OWNER) == obj_name:
            return material
    material = bpy.data.materials.get(texture_name(obj_name))
    if material is not None and material.library is None and OWNER not in material:
        return material if _legacy_material(material, obj_name) else None
    return None


def own_image(obj_name: str) -> bpy.types.Image | None:
    """The local image this add-on made for the object's texture, if any. An image of the same
    name that it did not make (no :data:`OWNER`, and no material of this add-on showing it) is
    the user's, and is left alone."""
    for image in bpy.data.images:
        if image.library is None and image.get(OWNER) == obj_name:
            return image
    image = bpy.data.images.get(texture_name(obj_name))
    if image is None or image.library is not None or OWNER in image:
        return None
    material = own_material(obj_name)
    node = material.node_tree.nodes.get("SD Texture") if material is not None else None
    return image if node is not None and getattr(node, "image", None) == image else None


def owner_of_texture(image: bpy.types.ID) -> str | None:
    """The object an image or material of this add-on textures, None for anyone else's."""
    owner = image.get(OWNER)
    return owner if isinstance(owner, str) else None


def foreign_name_notes(obj_names: list[str]) -> dict[str, list[str]]:
    """Notes for objects whose texture name is already held by an image or material this
    add-on did not make: those are left alone, and the texture's get another name."""
    notes: dict[str, list[str]] = {}
    for obj_name in obj_names:
        name = texture_name(obj_name)
        image, material = bpy.data.images.get(name), bpy.data.materials.get(name)
        for kind, found, own in (
            ("image", image, own_image(obj_name)),
            ("material", material, own_material(obj_name)),
        ):
            if found is not None and found != own:
                notes.setdefault(obj_name, []).append(
                    f"the {kind} '{name}' was not made by this add-on and was left alone; the "
                    f"texture's {kind} gets another name"
                )
    return notes


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
