"""One texturing flow behind every door (operators, panel, command line).

It runs in three stages so a UI can put the slow middle on a worker thread:

1. :func:`prepare` (main thread) validates the input and reads the scene into arrays: target
   meshes, the view, the depth capture and the depth map. It writes nothing.
2. The caller turns the depth map into a picture: diffusion, or an image the user already has.
   This stage touches no Blender data.
3. :func:`apply` (main thread) projects the picture into each target's UV texture and writes the
   images and materials. Only this stage changes the scene, so an error or a cancel before it
   leaves the scene exactly as it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import bpy
import numpy as np

from ..core.bake.blending import blend_into_texture, project_view
from ..core.bake.margin import dilate_margin
from ..core.bake.surface import cached_texel_surface
from ..core.errors import TextureError
from ..core.geometry.depth import DepthCapture, capture_depth, depth_for_model
from ..core.geometry.mesh import MeshArrays, require_uv, scene_geometry
from ..core.geometry.views import View
from ..defaults import MARGIN
from . import images, scene

log = logging.getLogger(__name__)

DEPTH_IMAGE = "SD Depth"
UNFILLED_GREY = 0.5


@dataclass
class Options:
    """How a job writes its result."""

    texture_size: int = 2048
    margin: int = int(MARGIN.default)
    blend_path: str | None = None  # where textures are saved beside; None = the open .blend


@dataclass
class Prepared:
    """Everything read from the scene for one view: plain arrays, safe for a worker thread."""

    view: View
    capture: DepthCapture
    depth: np.ndarray  # (H, W) float32, what the model receives
    targets: list[str]  # object names
    meshes: dict[str, MeshArrays] = field(default_factory=dict)  # the targets' arrays


@dataclass
class Outcome:
    """What a finished job wrote, for reports and tests."""

    textures: dict[str, str]  # object name -> where its texture was stored
    coverage: dict[str, float]  # object name -> fraction of island texels that got colour
    notes: list[str]
    seconds: dict[str, float] = field(default_factory=dict)
    reports: list = field(default_factory=list)  # per-object records of whole-object runs

    def summary(self) -> str:
        parts = [f"{name}: {self.coverage[name]:.0%} of texels" for name in self.textures]
        return "Textured " + ", ".join(parts) + "".join(f". {note}" for note in self.notes)


def check_target(obj: bpy.types.Object) -> None:
    """Refuse objects that cannot be textured, with the reason in one line."""
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


@dataclass
class ViewCapture:
    """What a view sees of the scene: every visible mesh's arrays, the Z-buffer, the depth map."""

    meshes: dict[str, MeshArrays]
    capture: DepthCapture
    depth: np.ndarray  # (H, W) float32, what the model receives
    seen: list[str]  # names of the meshes with at least one pixel in view, in scene order


def read_view(
    context_scene: bpy.types.Scene, view_layer: bpy.types.ViewLayer, view: View
) -> ViewCapture:
    """Read the visible meshes and capture the view's depth. Reads only, checks no targets.

    Raises :class:`TextureError` for a view that sees nothing.
    """
    depsgraph = bpy.context.evaluated_depsgraph_get()
    meshes = scene.visible_geometry(depsgraph, view_layer)
    geometry = scene_geometry(meshes)
    capture = capture_depth(view, geometry.vertices, geometry.triangles)
    depth = depth_for_model(capture)
    seen_owner = np.unique(geometry.owner[capture.raster.triangle[capture.foreground]])
    return ViewCapture(
        meshes={mesh.name: mesh for mesh in meshes},
        capture=capture,
        depth=depth,
        seen=[geometry.names[i] for i in seen_owner if meshes[i].target],
    )


def prepare(
    context_scene: bpy.types.Scene,
    view_layer: bpy.types.ViewLayer,
    view: View,
    objects: list[bpy.types.Object] | None,
) -> Prepared:
    """Stage 1: read the scene, capture depth, choose and check the targets. Writes nothing.

    ``objects`` None means every mesh the view sees.
    """
    for obj in objects or []:
        check_target(obj)
    seen = read_view(context_scene, view_layer, view)
    if objects is None:
        targets = seen.seen
        for name in targets:
            check_target(bpy.data.objects[name])
    else:
        targets = [obj.name for obj in objects]
        hidden = [name for name in targets if name not in seen.seen]
        if hidden:
            raise TextureError(
                f"'{hidden[0]}' is not visible from this view: frame it in the view or camera."
            )
    for name in targets:  # UVs the modifiers drop (a new map made in stage 3 is read there)
        if bpy.data.objects[name].data.uv_layers.active is not None:
            require_uv(seen.meshes[name])
    return Prepared(
        view=view,
        capture=seen.capture,
        depth=seen.depth,
        targets=targets,
        meshes={name: seen.meshes[name] for name in targets},
    )


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


def texture_name(obj_name: str) -> str:
    return f"{obj_name} SD Texture"


def starting_texture(name: str, size: int) -> np.ndarray:
    """The texture a run paints over: the previous result if it exists, else unfilled grey.

    Alpha records coverage: 0 for texels no view has painted.
    """
    existing = bpy.data.images.get(name)
    if existing is not None and tuple(existing.size) == (size, size) and existing.has_data:
        return images.image_to_array(existing)
    texture = np.full((size, size, 4), UNFILLED_GREY, dtype=np.float32)
    texture[..., 3] = 0.0
    return texture


def bake_picture(
    prepared: Prepared, picture: np.ndarray, options: Options
) -> dict[str, tuple[np.ndarray, float]]:
    """Project the picture into each target's texture (reads the scene, writes nothing).

    Returns object name -> (texture array, coverage of its UV islands).
    """
    results = {}
    for name in prepared.targets:
        mesh = require_uv(prepared.meshes[name])
        surface = cached_texel_surface(
            mesh.vertices, mesh.triangles, mesh.uv, mesh.uv_triangles, options.texture_size
        )
        samples = project_view(surface, prepared.capture, picture[..., :3])
        texture = starting_texture(texture_name(name), options.texture_size)
        texture, written = blend_into_texture(texture, surface, samples)
        texture = dilate_margin(texture, surface.mask, options.margin)
        coverage = float(written.sum()) / max(surface.texel.size, 1)
        results[name] = (texture, coverage)
    return results


def apply(prepared: Prepared, picture: np.ndarray, options: Options) -> Outcome:
    """Stage 3: write textures and materials for the picture seen from ``prepared.view``."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    notes = []
    for name in prepared.targets:
        note = ensure_uv_map(bpy.data.objects[name])
        if note:  # the mesh read in stage 1 had no UVs
            notes.append(note)
            depsgraph = bpy.context.evaluated_depsgraph_get()
            prepared.meshes[name] = scene.mesh_arrays(bpy.data.objects[name], depsgraph)
    baked = bake_picture(prepared, picture, options)
    timings["projection"] = time.perf_counter() - start

    store_depth_preview(prepared.depth)
    stored, coverage = {}, {}
    for name, (texture, fraction) in baked.items():
        obj = bpy.data.objects[name]
        image = images.array_to_image(texture_name(name), texture)
        stored[name] = images.store_texture(image, options.blend_path)
        images.wire_material(obj, image, obj.data.uv_layers.active.name)
        coverage[name] = fraction
    timings["write"] = time.perf_counter() - start - timings["projection"]
    return Outcome(textures=stored, coverage=coverage, notes=notes, seconds=timings)


def store_depth_preview(depth: np.ndarray) -> bpy.types.Image:
    """Keep the depth map that was sent as an image the user can look at."""
    return images.array_to_image(DEPTH_IMAGE, depth, is_data=True, float_buffer=True)


@dataclass
class Work:
    """A run split for a UI: ``compute`` is safe on a worker thread (no Blender data);
    ``finish`` writes the result and ``abort`` undoes preparation, both on the main thread."""

    compute: Callable[[], object]
    finish: Callable[[object], Outcome]
    abort: Callable[[], None] = lambda: None
    seconds: dict[str, float] = field(default_factory=dict)  # time spent preparing

    def run(self) -> Outcome:
        """All of it, blocking: for scripts, ``--background`` and the command line."""
        start = time.perf_counter()
        try:
            result = self.compute()
        except BaseException:
            self.abort()
            raise
        computed = time.perf_counter() - start
        outcome = self.finish(result)
        outcome.seconds = {**self.seconds, "compute": computed, **outcome.seconds}
        log.info("%s (%s)", outcome.summary(), outcome.seconds)
        return outcome


def single_view_work(
    context_scene: bpy.types.Scene,
    view_layer: bpy.types.ViewLayer,
    view: View,
    objects: list[bpy.types.Object] | None,
    make_picture: Callable[[Prepared], np.ndarray],
    options: Options,
) -> Work:
    """Prepare a one-view run now (reads the scene); the picture is made by ``compute``."""
    start = time.perf_counter()
    prepared = prepare(context_scene, view_layer, view, objects)
    return Work(
        compute=lambda: make_picture(prepared),
        finish=lambda picture: apply(prepared, picture, options),
        seconds={"depth": time.perf_counter() - start},
    )


def run(*args, **kwargs) -> Outcome:
    """A one-view run, blocking (the arguments of :func:`single_view_work`)."""
    return single_view_work(*args, **kwargs).run()
