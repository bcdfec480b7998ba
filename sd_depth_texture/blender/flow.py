"""The one texturing flow: a :class:`~..request.TextureRequest` in, textures and materials out.

Every door (operators, the panel's modal runner, the command line, the batch worker) builds a
request and runs it here, in three stages so a UI can put the slow middle on a worker thread:

1. :func:`prepare` (main thread) checks the request, finds the targets, resolves the views and
   reads the scene into arrays. It writes nothing but the UV maps of targets that have none,
   which :meth:`Run.abort` removes again.
2. :meth:`Run.compute` loads the model (if the run generates), makes each view's picture and
   paints every target (:func:`..core.bake.paint.paint_group`). It reads no Blender data.
3. :meth:`Run.finish` (main thread) checks the targets are still there, then writes the
   images, their files, the materials, the kept depth map and the report.

An error or a cancel before stage 3 leaves the scene and the files exactly as they were.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field

import bpy
import numpy as np

from ..core.bake.paint import Painted, PaintTarget, TargetReport, paint_group
from ..core.bake.surface import cached_texel_surface
from ..core.errors import TextureError
from ..core.geometry.depth import DepthCapture, capture_depth, depth_for_model
from ..core.geometry.mesh import MeshArrays, SceneGeometry, scene_geometry
from ..core.geometry.orbit import NamedView, object_bounds, orbit_views
from ..core.pictures import check_aspect, diffusion_pictures, given_pictures
from ..core.progress import Progress
from ..request import TextureRequest
from . import images, materials, scene, targets

log = logging.getLogger(__name__)

DEPTH_IMAGE = "SD Depth"
REPORT_SCHEMA = 1
LOAD_SHARE = 0.05  # of the progress bar, for loading the model (downloading counts here too)


@dataclass
class ViewCapture:
    """What a view sees of the scene: the arrays it read, the Z-buffer and the depth map."""

    meshes: dict[str, MeshArrays]
    geometry: SceneGeometry
    capture: DepthCapture
    depth: np.ndarray  # (H, W) float32, what the model receives
    seen: list[str]  # the meshes with at least one pixel in view, in scene order


def read_scene(extra: list[bpy.types.Object] = ()) -> tuple[list[MeshArrays], SceneGeometry]:
    """Every visible mesh (and ``extra`` objects even if hidden) as arrays and one soup."""
    context = bpy.context
    depsgraph = context.evaluated_depsgraph_get()
    visible = scene.visible_meshes(context.scene, context.view_layer)
    hidden = [obj for obj in extra if obj not in visible]
    meshes = [scene.mesh_arrays(obj, depsgraph) for obj in [*visible, *hidden]]
    return meshes, scene_geometry(meshes)


def seen_names(geometry: SceneGeometry, capture: DepthCapture) -> list[str]:
    owners = np.unique(geometry.owner[capture.raster.triangle[capture.foreground]])
    return [geometry.names[i] for i in owners]


def read_view(view) -> ViewCapture:
    """Read the visible meshes and capture ``view``'s depth; reads only, checks no targets.

    Raises :class:`TextureError` for a view that sees nothing.
    """
    meshes, geometry = read_scene()
    capture = capture_depth(view, geometry.vertices, geometry.triangles)
    depth = depth_for_model(capture)
    return ViewCapture(
        meshes={mesh.name: mesh for mesh in meshes},
        geometry=geometry,
        capture=capture,
        depth=depth,
        seen=seen_names(geometry, capture),
    )


def keep_depth(depth: np.ndarray) -> bpy.types.Image:
    """Keep the depth map that was sent as an image that survives saving (packed, used)."""
    image = images.array_to_image(DEPTH_IMAGE, depth, is_data=True, float_buffer=True)
    image.use_fake_user = True
    image.pack()
    return image


@dataclass
class Outcome:
    """What a finished run wrote, for the door's message, reports and tests."""

    textures: dict[str, str]  # object name -> where its texture was stored
    coverage: dict[str, float]  # object name -> fraction of island texels this run painted
    notes: list[str]
    reports: list[TargetReport] = field(default_factory=list)
    painted: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (S, S) bool
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{name}: {self.coverage[name]:.0%} of texels" for name in self.textures]
        return "Textured " + ", ".join(parts) + "".join(f". {note}" for note in self.notes)


@dataclass
class _Group:
    """Targets painted from the same views."""

    targets: list[PaintTarget]
    views: list[NamedView]
    captures: dict[int, DepthCapture] = field(default_factory=dict)


@dataclass
class Computed:
    """What :meth:`Run.compute` hands to :meth:`Run.finish`."""

    painted: dict[str, Painted]
    depth: np.ndarray | None
    seconds: dict[str, float]


class Run:
    """A prepared run (see the module's stages)."""

    def __init__(
        self,
        request: TextureRequest,
        groups: list[_Group],
        geometry: SceneGeometry,
        created_uv_maps: list[bpy.types.Object],
        notes: dict[str, list[str]],
        seconds: dict[str, float],
    ) -> None:
        self.request = request
        self.groups = groups
        self.geometry = geometry
        self.target_names = [t.name for group in groups for t in group.targets]
        self.notes = notes
        self.seconds = seconds
        # By name and session id: after a file load another object may carry the same name.
        self._created_uv_maps = [(obj.name, obj.session_uid) for obj in created_uv_maps]

    @property
    def view_count(self) -> int:
        return sum(len(group.views) for group in self.groups)

    def compute(self, progress: Progress | None = None) -> Computed:
        """Load the model if needed, make every picture and paint every target.

        Reads no Blender data: safe on a worker thread. Raises CancelledError on a cancel.
        """
        progress = progress or Progress()
        request = self.request
        seconds: dict[str, float] = {}
        start = time.perf_counter()
        if request.generation is not None:
            from ..core.diffusion.cache import load_pipeline

            with progress.span(0.0, LOAD_SHARE, "Model"):
                pipe = load_pipeline(request.model, progress)
            make = diffusion_pictures(pipe, request.generation, request.view_prompts, progress)
            seconds["load"] = time.perf_counter() - start
            first = LOAD_SHARE
        else:
            make = given_pictures(request.pictures)
            first = 0.0
        painted: dict[str, Painted] = {}
        depth = None
        done, total = 0, max(self.view_count, 1)
        start = time.perf_counter()
        for group in self.groups:
            share = len(group.views) / total
            span = (
                first + (1 - first) * done / total,
                first + (1 - first) * (done / total + share),
            )
            with progress.span(*span):
                result, group_depth = paint_group(
                    group.targets, group.views, self.geometry, make,
                    fill=request.views.several, margin=request.output.margin,
                    captures=group.captures, progress=progress,
                )  # fmt: skip
            done += len(group.views)
            painted.update(result)
            depth = group_depth if group_depth is not None else depth
        seconds["paint"] = time.perf_counter() - start
        return Computed(painted=painted, depth=depth, seconds=seconds)

    def finish(self, computed: Computed) -> Outcome:
        """Write every texture, its file and material, the depth map and the report.

        Checks first that every target is still there under its name and that each was painted
        at all, so a renamed object or an empty result writes nothing.
        """
        start = time.perf_counter()
        objects = {}
        for name in self.target_names:
            obj = bpy.data.objects.get(name)
            if obj is None or obj.type != "MESH":
                raise TextureError(
                    f"'{name}' was renamed or deleted while its texture was made: "
                    "nothing was written."
                )
            objects[name] = obj
        for name, result in computed.painted.items():
            if not result.painted.any():
                raise TextureError(
                    f"'{name}' was not painted: the views see it only edge-on or not at all "
                    "(nothing was written)."
                )
        output = self.request.output
        stored = {}
        for name, obj in objects.items():
            result = computed.painted[name]
            image, stored[name] = images.write_texture(
                targets.texture_name(name), result.texture, output.blend_path
            )
            materials.wire_material(obj, image, obj.data.uv_layers.active.name)
        if computed.depth is not None:
            keep_depth(computed.depth)
        reports = [computed.painted[name].report for name in self.target_names]
        for report in reports:
            report.notes[:0] = self.notes.get(report.name, [])
        seconds = {**self.seconds, **computed.seconds, "write": time.perf_counter() - start}
        outcome = Outcome(
            textures=stored,
            coverage={r.name: r.coverage_before_fill for r in reports},
            notes=[note for r in reports for note in r.notes],
            reports=reports,
            painted={name: computed.painted[name].painted for name in self.target_names},
            seconds=seconds,
        )
        if output.report_path:
            write_report(output.report_path, self.request, outcome)
        return outcome

    def abort(self) -> None:
        """Undo what :func:`prepare` changed (UV maps it made), after an error or a cancel."""
        alive = [bpy.data.objects.get(name) for name, _ in self._created_uv_maps]
        ids = {session_uid for _, session_uid in self._created_uv_maps}
        targets.remove_uv_maps([obj for obj in alive if obj is not None and obj.session_uid in ids])
        self._created_uv_maps = []

    def run(self, progress: Progress | None = None) -> Outcome:
        """All of it, blocking: scripts, ``--background``, the command line and the batch."""
        try:
            computed = self.compute(progress)
            outcome = self.finish(computed)
        except BaseException:
            self.abort()
            raise
        log.info("%s (%s)", outcome.summary(), outcome.seconds)
        return outcome


def write_report(path: str, request: TextureRequest, outcome: Outcome) -> None:
    """The run's JSON report, replaced whole (a temporary file renamed into place)."""
    objects = []
    for report in outcome.reports:
        entry = asdict(report)
        entry["texture"] = outcome.textures.get(report.name)
        objects.append(entry)
    data = {
        "schema": REPORT_SCHEMA,
        "settings": request.settings_record(),
        "seconds": outcome.seconds,
        "objects": objects,
    }
    partial = f"{path}.partial"
    try:
        with open(partial, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, allow_nan=False, default=_json_number)
        os.replace(partial, path)
    except OSError as error:
        raise TextureError(f"Cannot write the report '{path}': {error.strerror}.") from error


def _json_number(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def prepare(request: TextureRequest, door: str = "cli") -> Run:
    """Stage 1 (main thread): check the request and read the scene; writes only UV maps.

    ``door`` names options in messages the way that door shows them ("cli" or "ui").
    """
    start = time.perf_counter()
    request.check(door)
    context = bpy.context
    named = targets.find_targets(request.targets) if request.targets is not None else None
    created: list[bpy.types.Object] = []
    notes: dict[str, list[str]] = {}
    try:
        for obj in named or []:
            _ensure_uv(obj, created, notes)
        meshes, geometry = read_scene(named or [])
        shared = _shared_views(request, context, door) if not request.views.orbit else None
        captures: dict[int, DepthCapture] = {}
        if shared is not None:
            for number, view in enumerate(shared):
                captures[number] = capture_depth(view.view, geometry.vertices, geometry.triangles)
        if named is None:
            named = _seen_targets(request, geometry, captures, context, door)
            new_uv = [obj for obj in named if _ensure_uv(obj, created, notes)]
            if new_uv:
                depsgraph = context.evaluated_depsgraph_get()
                replaced = {obj.name: scene.mesh_arrays(obj, depsgraph) for obj in new_uv}
                meshes = [replaced.get(mesh.name, mesh) for mesh in meshes]
        elif shared is not None:
            _check_visible(named, geometry, captures)
        if request.pictures and shared is not None:
            for picture, view in zip(request.pictures, shared, strict=True):
                check_aspect(picture, view.view, f"The image for '{view.label}'")
        groups = _groups(request, named, meshes, shared, captures)
    except BaseException:
        targets.remove_uv_maps(created)
        raise
    seconds = {"prepare": time.perf_counter() - start}
    return Run(request, groups, geometry, created, notes, seconds)


def _ensure_uv(obj, created: list, notes: dict[str, list[str]]) -> bool:
    note = targets.ensure_uv_map(obj)
    if note:
        created.append(obj)
        notes.setdefault(obj.name, []).append(note)
    return bool(note)


def _shared_views(request: TextureRequest, context, door: str) -> list[NamedView]:
    """The views every target shares: the viewport, named cameras or a camera collection."""
    source = request.views
    if source.given:
        return list(source.given)
    depsgraph = context.evaluated_depsgraph_get()
    if source.collection:
        collection = bpy.data.collections.get(source.collection)
        if collection is None:
            raise TextureError(f"There is no collection named '{source.collection}'.")
        cameras = sorted(
            (obj for obj in collection.all_objects if obj.type == "CAMERA"), key=lambda o: o.name
        )
        if not cameras:
            raise TextureError(f"The collection '{source.collection}' holds no cameras.")
    else:
        cameras = [find_camera(context.scene, name, door) for name in source.cameras]
    return [
        NamedView(
            camera.name, scene.camera_view(context.scene, camera, depsgraph, source.resolution)
        )
        for camera in cameras
    ]


def find_camera(context_scene, name: str, door: str = "cli"):
    """The named camera, or the scene's; without one, a message in the door's words."""
    try:
        return scene.find_camera(context_scene, name or None)
    except TextureError as error:
        if name or door == "cli":
            raise
        raise TextureError(
            "The scene has no camera: add one, or choose the viewport as the view."
        ) from error


def _seen_targets(
    request: TextureRequest, geometry: SceneGeometry, captures: dict, context, door: str
) -> list[bpy.types.Object]:
    """No targets named: what the views see (an orbit: what the scene camera sees, or every
    visible mesh when there is no camera)."""
    if request.views.orbit:
        if context.scene.camera is None:
            names = list(geometry.names)
        else:
            view = scene.camera_view(
                context.scene, context.scene.camera, context.evaluated_depsgraph_get(),
                request.views.resolution,
            )  # fmt: skip
            names = seen_names(geometry, capture_depth(view, geometry.vertices, geometry.triangles))
    else:
        seen = set()
        for capture in captures.values():
            seen.update(seen_names(geometry, capture))
        names = [name for name in geometry.names if name in seen]
    if not names:
        raise TextureError("Nothing is visible in the view: there is no depth to texture from.")
    return targets.find_targets(names)


def _check_visible(named: list, geometry: SceneGeometry, captures: dict) -> None:
    seen = set()
    for capture in captures.values():
        if not capture.foreground.any():
            continue
        seen.update(seen_names(geometry, capture))
    if not any(capture.foreground.any() for capture in captures.values()):
        raise TextureError("Nothing is visible in the view: there is no depth to texture from.")
    hidden = [obj.name for obj in named if obj.name not in seen]
    if hidden:
        where = "this view" if len(captures) == 1 else "any of the views"
        raise TextureError(
            f"'{hidden[0]}' is not visible from {where}: frame it in the view or camera."
        )


def _groups(
    request: TextureRequest,
    named: list[bpy.types.Object],
    meshes: list[MeshArrays],
    shared: list[NamedView] | None,
    captures: dict[int, DepthCapture],
) -> list[_Group]:
    """One group sharing the views, or one group per target for automatic orbits."""
    size = request.output.texture_size
    offsets = np.cumsum([0] + [mesh.triangles.shape[0] for mesh in meshes])
    position = {mesh.name: index for index, mesh in enumerate(meshes)}
    paint_targets = []
    for obj in named:
        mesh = meshes[position[obj.name]]
        surface = cached_texel_surface(
            mesh.vertices, mesh.triangles, mesh.uv, mesh.uv_triangles, size
        )
        start = None if request.views.several else _start_colours(obj.name, surface)
        paint_targets.append(
            PaintTarget(obj.name, mesh, int(offsets[position[obj.name]]), surface, start)
        )
    if shared is not None:
        return [_Group(paint_targets, shared, captures)]
    return [
        _Group([target], orbit_for(obj, request.views.orbit, request.views.resolution, target.mesh))
        for obj, target in zip(named, paint_targets, strict=True)
    ]


def orbit_for(
    obj: bpy.types.Object, count: int, resolution: int, mesh: MeshArrays | None = None
) -> list[NamedView]:
    """Automatic views framed on the object's evaluated bounds, from its own front.

    ``mesh``: the object's arrays when already read (otherwise they are read here).
    """
    if mesh is None:
        mesh = scene.mesh_arrays(obj, bpy.context.evaluated_depsgraph_get())
    center, radius = object_bounds(mesh.vertices)
    return orbit_views(center, radius, count, size=resolution, front=targets.object_front(obj))


def _start_colours(name: str, surface) -> np.ndarray | None:
    """The colours a one-view run paints over: its texture from an earlier run, if any."""
    existing = bpy.data.images.get(targets.texture_name(name))
    size = surface.size
    if existing is None or tuple(existing.size) != (size, size) or not existing.has_data:
        return None
    pixels = images.image_to_array(existing)[..., :3].reshape(-1, 3)
    return pixels[surface.texel]
