"""Whole-object texturing: many views painted in order into one texture, then filled.

Per target object: views come from an orbit around its bounds (or the user's cameras); each
view's depth is captured against the whole scene, the current texture is rendered from it to
decide what is kept, a picture is made (diffusion with kept regions held, or a given image), and
the picture is folded into a per-texel record. After the last view, texels no view saw are filled
over the mesh and the islands padded. The scene is written only at the end (a UV map made for an
object without one is removed again if the run fails or is cancelled).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import bpy
import numpy as np

from ..core.bake.blending import TextureState, ViewRecord, integrate, keep_mask
from ..core.bake.fill import fill_unpainted
from ..core.bake.margin import dilate_margin
from ..core.bake.render import psnr, render_texture
from ..core.bake.sampling import sample_bilinear
from ..core.bake.surface import TexelSurface, cached_texel_surface, face_normals
from ..core.bake.visibility import GRAZING_ANGLE_DEG, depth_edges, pixel_facing, reliable_texels
from ..core.errors import TextureError
from ..core.geometry.depth import DepthCapture, capture_depth, depth_for_model
from ..core.geometry.mesh import MeshArrays, SceneGeometry, require_uv, scene_geometry
from ..core.geometry.orbit import NamedView, orbit_views
from . import engine, images, scene

log = logging.getLogger(__name__)

# The bottom view is dropped when it sees less than this share of what the top view sees.
MIN_BOTTOM_SHARE = 0.05


@dataclass
class ViewRequest:
    """What a picture maker gets for one view."""

    index: int
    label: str
    prompt_hint: str  # words for the prompt ("front view"), empty for the user's cameras
    depth: np.ndarray  # (H, W) for the model
    known: np.ndarray  # (H, W, 3) the current texture seen from this view
    keep: np.ndarray  # (H, W) 1 where earlier views painted well enough to keep


PictureMaker = Callable[[ViewRequest], np.ndarray]


@dataclass
class ObjectReport:
    """The run's record for one object (written as JSON with --report)."""

    name: str
    views: list[dict] = field(default_factory=list)
    coverage_before_fill: float = 0.0
    fill_rings: int = 0
    psnr_per_view: dict[str, float] = field(default_factory=dict)
    colour_spread: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def object_bounds(vertices: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre of the bounding box and the radius of the sphere around it holding every vertex."""
    center = (vertices.min(axis=0) + vertices.max(axis=0)) / 2.0
    return center, float(np.linalg.norm(vertices - center, axis=1).max())


def camera_views(collection_name: str, context_scene, resolution: int) -> list[NamedView]:
    """Every camera in a collection (in name order) as a view."""
    collection = bpy.data.collections.get(collection_name)
    if collection is None:
        raise TextureError(f"There is no collection named '{collection_name}'.")
    cameras = sorted(
        (obj for obj in collection.all_objects if obj.type == "CAMERA"), key=lambda o: o.name
    )
    if not cameras:
        raise TextureError(f"The collection '{collection_name}' holds no cameras.")
    depsgraph = bpy.context.evaluated_depsgraph_get()
    return [
        NamedView(camera.name, scene.camera_view(context_scene, camera, depsgraph, resolution))
        for camera in cameras
    ]


def _texture_image(surface, colors: np.ndarray, alpha: np.ndarray, size: int) -> np.ndarray:
    texture = np.full((size * size, 4), engine.UNFILLED_GREY, dtype=np.float32)
    texture[:, 3] = 0.0
    texture[surface.texel, :3] = colors
    texture[surface.texel, 3] = alpha
    return texture.reshape(size, size, 4)


@dataclass
class ObjectJob:
    """One object's arrays, read on the main thread; painting it needs no Blender data."""

    name: str
    views: list[NamedView]
    target: MeshArrays
    geometry: SceneGeometry
    first_triangle: int
    surface: TexelSurface
    margin: int
    report: ObjectReport


def read_object(
    obj_name: str,
    meshes: list[MeshArrays],
    geometry: SceneGeometry,
    views: list[NamedView],
    options: engine.Options,
) -> ObjectJob:
    """One object's job from the scene's arrays, read once for all targets (no writes)."""
    clock = time.perf_counter()
    position = [m.name for m in meshes].index(obj_name)
    target = require_uv(meshes[position])
    surface = cached_texel_surface(
        target.vertices, target.triangles, target.uv, target.uv_triangles, options.texture_size
    )
    report = ObjectReport(name=obj_name)
    report.seconds["setup"] = time.perf_counter() - clock
    return ObjectJob(
        name=obj_name,
        views=views,
        target=target,
        geometry=geometry,
        first_triangle=int(sum(m.triangles.shape[0] for m in meshes[:position])),
        surface=surface,
        margin=options.margin,
        report=report,
    )


def paint(
    job: ObjectJob,
    make_picture: PictureMaker,
    on_view: Callable[[int, int, str], None] | None = None,
) -> np.ndarray:
    """Paint the object from every view in order, fill and pad; returns the texture.

    Touches no Blender data, so a UI can run it on a worker thread. Fills ``job.report``.
    """
    target, surface, report = job.target, job.surface, job.report
    size = surface.size
    surface_index = np.full(size * size, -1, dtype=np.int64)
    surface_index[surface.texel] = np.arange(surface.texel.size)
    normals = face_normals(target.vertices, target.triangles)
    state = TextureState.empty(surface.texel.size, engine.UNFILLED_GREY)
    # The texture as painted so far, kept up to date texel by texel for rendering each view.
    current = np.full((size, size, 3), engine.UNFILLED_GREY, dtype=np.float32)
    first = job.first_triangle

    # Per used view: its capture, picture, and the pixels it could use (for the final check).
    done: list[tuple[NamedView, DepthCapture, np.ndarray, np.ndarray]] = []
    top_pixels = None
    for number, named in enumerate(job.views):
        times: dict[str, float] = {}
        start = time.perf_counter()
        capture = capture_depth(named.view, job.geometry.vertices, job.geometry.triangles)
        local = capture.raster.triangle.astype(np.int64) - first
        seen_pixels = int(((local >= 0) & (local < target.triangles.shape[0])).sum())
        if named.label == "top":
            top_pixels = seen_pixels
        if named.label == "bottom" and seen_pixels < MIN_BOTTOM_SHARE * (top_pixels or 1):
            report.notes.append("bottom view skipped: the object is not seen from below")
            continue
        if seen_pixels == 0:
            report.notes.append(f"{named.label} view skipped: the object is not visible in it")
            continue
        depth = depth_for_model(capture)
        known, on_target, pixel_texel = render_texture(
            capture, target.vertices, target.triangles, target.uv, target.uv_triangles,
            first, current,
        )  # fmt: skip
        facing = pixel_facing(capture, normals, first)
        keep = keep_mask(state, surface_index, pixel_texel, facing)
        edges = depth_edges(capture)
        accepted = on_target & ~edges & (facing >= np.cos(np.radians(GRAZING_ANGLE_DEG)))
        times["views"] = time.perf_counter() - start
        if on_view is not None:
            on_view(number, len(job.views), named.label)

        start = time.perf_counter()
        request = ViewRequest(number, named.label, named.prompt_hint, depth, known, keep)
        picture = make_picture(request)
        times["picture"] = time.perf_counter() - start

        start = time.perf_counter()
        texels = reliable_texels(surface, capture, edges)
        record: ViewRecord = integrate(state, texels, picture, capture)
        current.reshape(-1, 3)[surface.texel[texels.index]] = state.color[texels.index]
        record.label = named.label
        times["projection"] = time.perf_counter() - start
        record.seconds = times
        report.views.append(asdict(record))
        done.append((named, capture, picture, accepted))

    if not done:
        raise TextureError(f"'{job.name}' is not visible from any of the views.")
    start = time.perf_counter()
    report.coverage_before_fill = float(state.painted.mean())
    colors, report.fill_rings = fill_unpainted(
        surface, state, target.triangles, target.vertices.shape[0]
    )
    final = _texture_image(surface, colors, np.ones(surface.texel.size, np.float32), size)
    final = dilate_margin(final, surface.mask, job.margin)
    report.seconds["fill"] = time.perf_counter() - start

    start = time.perf_counter()
    report.psnr_per_view = {
        named.label: _rerender_psnr(capture, picture, accepted, target, first, final)
        for named, capture, picture, accepted in done
    }
    spreads = [v["overlap_difference"] for v in report.views if v["overlap_difference"] is not None]
    report.colour_spread = float(np.mean(spreads)) if spreads else None
    report.seconds["report"] = time.perf_counter() - start
    return final


def _rerender_psnr(capture, picture, accepted, target, first_triangle, texture) -> float:
    """PSNR of the final texture seen from a view against that view's picture, over the pixels
    the view could use (``accepted``: on the target, not grazing, not on a depth edge)."""
    if not accepted.any():
        return float("nan")
    rendered, _, _ = render_texture(
        capture, target.vertices, target.triangles, target.uv, target.uv_triangles,
        first_triangle, texture[..., :3],
    )  # fmt: skip
    rows, cols = np.nonzero(accepted)
    scale = np.array([picture.shape[1] / accepted.shape[1], picture.shape[0] / accepted.shape[0]])
    centres = np.stack([cols + 0.5, rows + 0.5], axis=1) * scale  # the picture may be any size
    return psnr(rendered[accepted], sample_bilinear(picture[..., :3], centres))


def object_front(obj: bpy.types.Object) -> np.ndarray:
    """The object's own front: its local -Y turned by its rotation, flattened onto the ground.

    Falls back to the world's -Y when the local axis points mostly up or down (importers that
    tilt the object transform to convert axes).
    """
    local = np.array(obj.matrix_world.to_3x3().normalized(), dtype=np.float64) @ [0.0, -1.0, 0.0]
    flat = np.array([local[0], local[1], 0.0])
    return flat / np.linalg.norm(flat) if np.linalg.norm(flat) > 0.5 else np.array([0, -1.0, 0])


def orbit_for(
    obj: bpy.types.Object, count: int, resolution: int, mesh: MeshArrays | None = None
) -> list[NamedView]:
    """Automatic views framed on the object's evaluated bounds, from its own front.

    ``mesh``: the object's arrays when already read (otherwise they are read here).
    """
    if mesh is None:
        mesh = scene.mesh_arrays(obj, bpy.context.evaluated_depsgraph_get())
    center, radius = object_bounds(mesh.vertices)
    return orbit_views(center, radius, count, size=resolution, front=object_front(obj))


def prepare(
    context_scene: bpy.types.Scene,
    view_layer: bpy.types.ViewLayer,
    objects: list[bpy.types.Object],
    views_for: Callable[[bpy.types.Object, MeshArrays], list[NamedView]],
    options: engine.Options,
) -> tuple[list[ObjectJob], list[bpy.types.Object]]:
    """Check the targets, give UV-less ones a UV map, read everything (main thread).

    Returns the jobs and the objects that got a new UV map (for :func:`undo_uv_maps`).
    """
    for obj in objects:
        engine.check_target(obj)
    created: list[bpy.types.Object] = []
    notes: dict[str, str] = {}
    try:
        for obj in objects:  # UV maps first, so the arrays below already carry them
            note = engine.ensure_uv_map(obj)
            if note:
                created.append(obj)
                notes[obj.name] = note
        depsgraph = bpy.context.evaluated_depsgraph_get()
        meshes = scene.visible_geometry(depsgraph, view_layer)
        read = {mesh.name for mesh in meshes}
        meshes += [scene.mesh_arrays(o, depsgraph) for o in objects if o.name not in read]
        geometry = scene_geometry(meshes)
        by_name = {mesh.name: mesh for mesh in meshes}
        jobs = []
        for obj in objects:
            views = views_for(obj, by_name[obj.name])
            job = read_object(obj.name, meshes, geometry, views, options)
            if obj.name in notes:
                job.report.notes.append(notes[obj.name])
            jobs.append(job)
    except BaseException:
        undo_uv_maps(created)
        raise
    return jobs, created


def undo_uv_maps(objects: list[bpy.types.Object]) -> None:
    """Remove UV maps a failed or cancelled run made, leaving the scene as it was."""
    for obj in objects:
        obj.data.uv_layers.remove(obj.data.uv_layers.active)


def write(
    jobs: list[ObjectJob],
    textures: dict[str, np.ndarray],
    options: engine.Options,
    report_path: str | None = None,
) -> engine.Outcome:
    """Write each object's texture, PNG and material, and the JSON report (main thread)."""
    stored = {}
    for job in jobs:
        obj = bpy.data.objects[job.name]
        image = images.array_to_image(engine.texture_name(job.name), textures[job.name])
        stored[job.name] = images.store_texture(image, options.blend_path)
        images.wire_material(obj, image, obj.data.uv_layers.active.name)
    reports = [job.report for job in jobs]
    if report_path:
        with open(report_path, "w", encoding="utf-8") as handle:
            json.dump({"objects": [asdict(r) for r in reports]}, handle, indent=2)
    return engine.Outcome(
        textures=stored,
        coverage={r.name: r.coverage_before_fill for r in reports},
        notes=[note for r in reports for note in r.notes],
        seconds={k: sum(r.seconds.get(k, 0.0) for r in reports) for k in ("setup", "fill")},
        reports=reports,
    )


def whole_object_work(
    context_scene: bpy.types.Scene,
    view_layer: bpy.types.ViewLayer,
    objects: list[bpy.types.Object],
    views_for: Callable[[bpy.types.Object, MeshArrays], list[NamedView]],
    make_picture: PictureMaker,
    options: engine.Options,
    report_path: str | None = None,
    on_view: Callable[[int, int, str], None] | None = None,
) -> engine.Work:
    """Prepare a whole-object run now; painting every object is the thread-safe ``compute``."""
    jobs, created = prepare(context_scene, view_layer, objects, views_for, options)
    return engine.Work(
        compute=lambda: {job.name: paint(job, make_picture, on_view) for job in jobs},
        finish=lambda textures: write(jobs, textures, options, report_path),
        abort=lambda: undo_uv_maps(created),
    )


def run(*args, **kwargs) -> engine.Outcome:
    """Whole-object texturing, blocking (the arguments of :func:`whole_object_work`)."""
    return whole_object_work(*args, **kwargs).run()
