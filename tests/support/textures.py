"""Reading what a run painted back from the textures it wrote."""

from __future__ import annotations

import bpy
import numpy as np

from sd_depth_texture.blender import scene
from sd_depth_texture.core.bake.color import UNFILLED_GREY
from sd_depth_texture.core.bake.surface import texel_surface


def islands(name: str, size: int) -> np.ndarray:
    """(S, S) texels on the object's UV islands (the margin around them excluded)."""
    mesh = scene.mesh_arrays(bpy.data.objects[name], bpy.context.evaluated_depsgraph_get())
    return texel_surface(mesh.vertices, mesh.triangles, mesh.uv, mesh.uv_triangles, size).mask


def unpainted(texture: np.ndarray) -> np.ndarray:
    """(S, S) texels still the unfilled grey (8-bit storage: within one quantisation step)."""
    return np.all(np.abs(texture[..., :3] - UNFILLED_GREY) <= 1 / 255, axis=-1)
