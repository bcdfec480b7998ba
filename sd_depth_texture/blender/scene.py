"""Blender scenes as arrays: evaluated meshes in world space, and views as matrices."""

from __future__ import annotations

import logging
from typing import Any

import bpy
import numpy as np

from ..core.errors import TextureError
from ..core.geometry.mesh import MeshArrays
from ..core.geometry.views import View, camera_world_to_view, fit_projection, generation_size

log = logging.getLogger(__name__)


def mesh_arrays(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph) -> MeshArrays:
    """Read an object's evaluated mesh into arrays with ``foreach_get`` (no per-element loops).

    Positions, corner vertices and UVs are read from their attribute arrays, which copy in
    one block; only the loop triangles' corners go through per-item RNA access.
    """
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        mesh.calc_loop_triangles()
        vertices = _attribute(
            mesh, "position", "vector", (mesh.vertices, "co"), len(mesh.vertices) * 3, np.float32
        )
        corners = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int32)
        mesh.loop_triangles.foreach_get("loops", corners)
        corner_vertex = _attribute(
            mesh, ".corner_vert", "value", (mesh.loops, "vertex_index"), len(mesh.loops), np.int32
        )
        triangles = corner_vertex[corners]
        uv = None
        if mesh.uv_layers.active is not None:
            uv = np.empty(len(mesh.loops) * 2, dtype=np.float32)
            mesh.uv_layers.active.uv.foreach_get("vector", uv)
            uv = uv.reshape(-1, 2).astype(np.float64)
        matrix = np.array(evaluated.matrix_world, dtype=np.float64)
    finally:
        evaluated.to_mesh_clear()
    local = vertices.reshape(-1, 3).astype(np.float64)
    world = local @ matrix[:3, :3].T + matrix[:3, 3]
    return MeshArrays(
        name=obj.name,
        vertices=world,
        triangles=triangles.reshape(-1, 3).astype(np.int64),
        uv=uv,
        uv_triangles=corners.reshape(-1, 3).astype(np.int64),
    )


def _attribute(
    mesh: bpy.types.Mesh, name: str, field: str, fallback: tuple[Any, str], size: int, dtype: type
) -> np.ndarray:
    """A mesh attribute's values as one flat block; ``fallback`` (collection, field) reads the
    same values through RNA where the attribute does not exist (an empty mesh has none)."""
    values = np.empty(size, dtype=dtype)
    attribute = mesh.attributes.get(name)
    if attribute is not None:
        attribute.data.foreach_get(field, values)
    else:
        fallback[0].foreach_get(fallback[1], values)
    return values


def visible_meshes(scene: bpy.types.Scene, view_layer: bpy.types.ViewLayer) -> list:
    """Mesh objects visible in the view layer (what the viewport and renders would show)."""
    return [
        obj
        for obj in scene.objects
        if obj.type == "MESH" and obj.visible_get(view_layer=view_layer)
    ]


def find_camera(scene: bpy.types.Scene, name: str | None) -> bpy.types.Object:
    """The named camera object, or the scene camera; a clear error if there is none."""
    if name:
        camera = bpy.data.objects.get(name)
        if camera is None or camera.type != "CAMERA":
            raise TextureError(f"There is no camera named '{name}' in the file.")
        return camera
    if scene.camera is None or scene.camera.type != "CAMERA":
        raise TextureError("The scene has no camera: add one or name one with --camera.")
    return scene.camera


def camera_view(
    scene: bpy.types.Scene,
    camera: bpy.types.Object,
    depsgraph: bpy.types.Depsgraph,
    short_side: int = 512,
) -> View:
    """The camera's view at generation size, framed as Cycles frames it.

    The projection is Blender's own for the render: resolution, pixel aspect, sensor fit, lens
    shift, perspective or orthographic. The frame's aspect (pixel aspect included) sets the
    depth map's size. Panoramic cameras, a camera scaled to zero and a frame too long for
    memory are refused with :class:`TextureError` before anything is read.
    """
    if camera.data.type not in {"PERSP", "ORTHO"}:
        kind = "panoramic" if camera.data.type == "PANO" else camera.data.type.lower()
        raise TextureError(
            f"'{camera.name}' is a {kind} camera: only perspective and orthographic cameras "
            "are supported."
        )
    render = scene.render
    aspect = (render.resolution_x * render.pixel_aspect_x) / (
        render.resolution_y * render.pixel_aspect_y
    )
    width, height = generation_size(aspect, short_side)
    evaluated = camera.evaluated_get(depsgraph)
    world_to_view = camera_world_to_view(np.array(evaluated.matrix_world), camera.name)
    projection = np.array(
        evaluated.calc_matrix_camera(
            depsgraph,
            x=render.resolution_x,
            y=render.resolution_y,
            scale_x=render.pixel_aspect_x,
            scale_y=render.pixel_aspect_y,
        ),
        dtype=np.float64,
    )
    return View(world_to_view, fit_projection(projection, aspect, width, height), width, height)


def viewport_view(region: bpy.types.Region, region_3d, short_side: int = 512) -> View:
    """The 3D viewport exactly as the user sees it: its own view and window matrices and aspect."""
    aspect = region.width / max(region.height, 1)
    width, height = generation_size(aspect, short_side)
    projection = np.array(region_3d.window_matrix, dtype=np.float64)
    world_to_view = np.array(region_3d.view_matrix, dtype=np.float64)
    return View(world_to_view, fit_projection(projection, aspect, width, height), width, height)
