"""Blender scenes as arrays: evaluated surfaces in world space, and views as matrices.

Everything visible that renders as triangles occludes (:func:`visible_geometry`); only mesh
objects can be textured (:func:`mesh_arrays` reads a target with its UVs).
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from typing import Any

import bpy
import numpy as np

from ..core.errors import NoCameraError, TextureError
from ..core.geometry.mesh import MeshArrays, digest_arrays
from ..core.geometry.views import View, camera_world_to_view, generation_size

log = logging.getLogger(__name__)

# Loop-triangle corners by the content they follow from (see :func:`_loop_triangle_corners`).
_CORNERS_CACHE: OrderedDict[bytes, np.ndarray] = OrderedDict()
_CORNERS_CACHE_SIZE = 4  # 12 MB each for 1M triangles


def mesh_arrays(
    obj: bpy.types.Object,
    depsgraph: bpy.types.Depsgraph,
    uv_map: str | None = None,
    with_uv: bool = True,
) -> MeshArrays:
    """A texturing target's evaluated mesh (modifiers applied) in world space, with its UVs.

    Targets must be mesh objects: they own the UV map and the material a texture goes into.
    UVs are read from the evaluated mesh's layer named ``uv_map`` (default: the object's
    active UV map's name, the one the material is wired to), else from its active layer; a
    modifier stack that drops UVs gives ``uv`` None (see
    :func:`..core.geometry.mesh.require_uv`). ``with_uv`` False reads no UVs (``uv`` None):
    for what needs only the surface, such as a depth map.
    """
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        local, triangles, corners, shape = _triangles(mesh)
        uv, uv_digest = _uv(mesh, uv_map or _uv_name(obj)) if with_uv else (None, None)
        matrix = np.array(evaluated.matrix_world, dtype=np.float64)
    finally:
        evaluated.to_mesh_clear()
    world = _to_world(local, matrix)
    _refuse_non_finite(obj.name, world)
    return MeshArrays(
        name=obj.name,
        vertices=world,
        triangles=triangles,
        uv=uv,
        uv_triangles=corners,
        target=obj.type == "MESH",
        digest=hashlib.sha1(shape + matrix.tobytes()).digest(),
        uv_digest=uv_digest,
    )


def visible_geometry(
    depsgraph: bpy.types.Depsgraph, view_layer: bpy.types.ViewLayer, with_uv: bool = True
) -> list[MeshArrays]:
    """Everything visible that renders as triangles, in world space: all of it occludes.

    Read as a render engine reads it, from the evaluated depsgraph's object instances: mesh
    objects, and the triangles that text, curves, surfaces and metaballs evaluate to, collection
    instances and geometry-nodes instances, all of which the depsgraph presents as meshes.
    Visible mesh objects come first, named after their objects and with their UVs (a target's
    triangles are found by its name); every other surface is named
    ``"<instancer>/<object>#<n>"``, made unique against every object name in the file, and
    has ``target`` False: only mesh objects can be textured. Instances of one mesh share one
    read of its arrays; each instance costs a matrix product. ``with_uv`` False: the mesh
    objects' UVs are not read either (see :func:`mesh_arrays`).
    """
    objects: list[str] = []
    instances: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, bytes]] = []
    shared: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, bytes]] = {}
    for instance in depsgraph.object_instances:
        obj = instance.object
        if obj.type != "MESH":  # text, curves and metaballs also come as MESH entries
            continue
        if not instance.is_instance:
            if instance.show_self and obj.original.visible_get(view_layer=view_layer):
                objects.append(obj.original.name)
            continue
        if not instance.parent.original.visible_get(view_layer=view_layer):
            continue
        # The instance's object and mesh are only valid during the iteration: read them now.
        mesh = obj.data
        key = mesh.as_pointer()
        if key not in shared:
            shared[key] = _triangles(mesh)
        matrix = np.array(instance.matrix_world, dtype=np.float64)
        local, triangles, _, shape = shared[key]
        instances.append((f"{instance.parent.name}/{obj.name}", matrix, local, triangles, shape))

    meshes = [mesh_arrays(bpy.data.objects[name], depsgraph, with_uv=with_uv) for name in objects]
    taken = set(bpy.data.objects.keys())
    counts: dict[str, int] = {}
    for stem, matrix, local, triangles, shape in instances:
        if not triangles.size:
            continue
        number = counts.get(stem, 0)
        counts[stem] = number + 1
        name = f"{stem}#{number}"
        while name in taken:  # an object may be called so; instance names must never clash
            name += "#"
        taken.add(name)
        meshes.append(
            MeshArrays(
                name=name,
                vertices=_to_world(local, matrix),
                triangles=triangles,
                uv=None,
                uv_triangles=np.zeros((0, 3), dtype=np.int64),
                target=False,
                digest=hashlib.sha1(shape + matrix.tobytes()).digest(),
            )
        )
    log.debug("read %d mesh objects, %d other surfaces", len(objects), len(meshes) - len(objects))
    return meshes


def _triangles(mesh: bpy.types.Mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray, bytes]:
    """A mesh's local vertices (V, 3) float64, triangles (F, 3), their corners (F, 3), and a
    digest of the arrays all three follow from.

    Positions and corner vertices are read from their attribute arrays, which copy in one
    block; the loop triangles' corners come from :func:`_loop_triangle_corners`.
    """
    mesh.calc_loop_triangles()
    vertices = _attribute(
        mesh, "position", "vector", (mesh.vertices, "co"), len(mesh.vertices) * 3, np.float32
    )
    corner_vertex = _attribute(
        mesh, ".corner_vert", "value", (mesh.loops, "vertex_index"), len(mesh.loops), np.int32
    )
    corners, shape = _loop_triangle_corners(mesh, vertices, corner_vertex)
    # Gathered straight into int64: one pass over the 3F corners, not a gather and a cast.
    triangles = np.take(corner_vertex.astype(np.int64), corners).reshape(-1, 3)
    local = vertices.reshape(-1, 3).astype(np.float64)
    return local, triangles, corners.reshape(-1, 3).astype(np.int64), shape


def _loop_triangle_corners(
    mesh: bpy.types.Mesh, positions: np.ndarray, corner_vertex: np.ndarray
) -> tuple[np.ndarray, bytes]:
    """(F * 3,) int32 corners of the mesh's loop triangles (``calc_loop_triangles`` done), and
    the digest of the arrays they follow from (the mesh's shape, before its transform).

    Only these go through per-item RNA access (0.09 s for 1M triangles, most of reading a
    mesh); everything else copies in one block. Blender's triangulation is a function of the
    positions, the corners' vertices and the faces (each face's triangles, which
    ``loop_triangle_polygons`` gives in one block), so corners read once are reused for a mesh
    whose arrays hash the same: the same object read again by the next command or run.
    """
    faces = np.empty(len(mesh.loop_triangles), dtype=np.int32)
    mesh.loop_triangle_polygons.foreach_get("value", faces)
    key = hashlib.sha1(digest_arrays((positions, corner_vertex, faces))).digest()
    cached = _CORNERS_CACHE.get(key)
    if cached is not None:
        _CORNERS_CACHE.move_to_end(key)
        return cached, key
    corners = np.empty(faces.size * 3, dtype=np.int32)
    mesh.loop_triangles.foreach_get("loops", corners)
    corners.flags.writeable = False  # shared by every read of this mesh
    _CORNERS_CACHE[key] = corners
    while len(_CORNERS_CACHE) > _CORNERS_CACHE_SIZE:
        _CORNERS_CACHE.popitem(last=False)
    return corners, key


def _uv_name(obj: bpy.types.Object) -> str | None:
    """The name of the object's own active UV map (what its material is wired to), if any."""
    data = obj.data if obj.type == "MESH" else None
    active = data.uv_layers.active if data is not None else None
    return active.name if active is not None else None


def _uv(mesh: bpy.types.Mesh, name: str | None) -> tuple[np.ndarray | None, bytes | None]:
    """(L, 2) float64 per-corner UVs of the layer called ``name``, else of the active layer,
    and a digest of them as read."""
    layer = mesh.uv_layers.get(name) if name else None
    layer = layer if layer is not None else mesh.uv_layers.active
    if layer is None:
        return None, None
    uv = np.empty(len(mesh.loops) * 2, dtype=np.float32)
    layer.uv.foreach_get("vector", uv)
    return uv.reshape(-1, 2).astype(np.float64), hashlib.sha1(uv.view(np.uint8)).digest()


def _refuse_non_finite(name: str, vertices: np.ndarray) -> None:
    """A vertex at NaN or infinity (a broken import, a modifier dividing by zero) has no depth
    and no place in a view: name the object instead of letting it look invisible."""
    if np.isfinite(vertices.sum()):
        return  # a NaN or an infinity anywhere makes the sum one: the usual case in one pass
    finite = np.isfinite(vertices).all(axis=1)
    if not finite.all():
        bad = int(finite.size - np.count_nonzero(finite))
        raise TextureError(
            f"'{name}' has {bad} vertex position(s) that are not finite numbers (NaN or "
            "infinite, after its modifiers and transform): fix or delete those vertices, or "
            "hide the object."
        )


def _to_world(local: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    world = local @ matrix[:3, :3].T
    world += matrix[:3, 3]
    return world


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
    """Mesh objects visible in the view layer (what the viewport and renders would show).

    The objects themselves, for choosing targets; what occludes is :func:`visible_geometry`.
    """
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
        raise NoCameraError("The scene has no camera")
    return scene.camera


def camera_view(
    scene: bpy.types.Scene,
    camera: bpy.types.Object,
    depsgraph: bpy.types.Depsgraph,
    short_side: int = 512,
) -> View:
    """The camera's view at generation size, framed exactly as Cycles frames it.

    The projection is Blender's own for the render: resolution, pixel aspect, sensor fit, lens
    shift, perspective or orthographic, used as it is. The frame's aspect (pixel aspect
    included) sets the depth map's size; rounding that to multiples of 8 leaves its pixels at
    most 4 / short side (0.8 % at 512) away from square rather than cropping or widening the
    frame. Panoramic cameras, a camera scaled to zero and a frame too long for memory are
    refused with :class:`TextureError` before anything is read.
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
    return View(world_to_view, projection, width, height)


def viewport_view(region: bpy.types.Region, region_3d, short_side: int = 512) -> View:
    """The 3D viewport exactly as the user sees it: its own view and window matrices and aspect."""
    aspect = region.width / max(region.height, 1)
    width, height = generation_size(aspect, short_side)
    projection = np.array(region_3d.window_matrix, dtype=np.float64)
    world_to_view = np.array(region_3d.view_matrix, dtype=np.float64)
    return View(world_to_view, projection, width, height)
