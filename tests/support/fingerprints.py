"""What a failed run must leave unchanged, as comparable values: the scene and the files."""

from __future__ import annotations

import hashlib
from pathlib import Path


def scene_fingerprint() -> dict:
    """What a failed run must leave unchanged: datablocks, slots, UV maps and pixels."""
    import bpy
    import numpy as np

    def pixels_hash(image) -> str:
        if not image.has_data:
            return ""
        flat = np.empty(len(image.pixels), dtype=np.float32)
        image.pixels.foreach_get(flat)
        return hashlib.sha1(flat.tobytes()).hexdigest()

    return {
        "objects": sorted(
            (
                obj.name,
                obj.type,
                tuple(
                    (slot.link, slot.material.name if slot.material else "")
                    for slot in obj.material_slots
                ),
                tuple(uv.name for uv in obj.data.uv_layers) if obj.type == "MESH" else (),
            )
            for obj in bpy.data.objects
        ),
        "images": sorted((image.name, pixels_hash(image)) for image in bpy.data.images),
        "materials": sorted(material.name for material in bpy.data.materials),
        "meshes": sorted(
            (mesh.name, len(mesh.uv_layers), len(mesh.materials)) for mesh in bpy.data.meshes
        ),
    }


def folder_fingerprint(folder: Path) -> dict[str, str]:
    """Every file below a folder with its content hash."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
