"""The one texturing flow: a :class:`~..request.TextureRequest` in, textures and materials out.

Every door (operators, the panel's modal runner, the command line, the batch worker) builds a
request and runs it here, in three stages so a UI can put the slow middle on a worker thread:

1. :func:`prepare` (main thread) checks the request, finds the targets, resolves the views and
   reads the scene into arrays. It writes nothing but the UV maps of targets that have none,
   which :meth:`Run.abort` removes again.
2. :meth:`Run.compute` loads the model (if the run generates), makes each view's picture and
   paints every target (:func:`..core.bake.paint.paint_group`). It reads no Blender data.
3. :meth:`Run.finish` (main thread) checks the targets are still there, writes every file
   (textures, report) to the paths :func:`prepare` planned and checked
   (:func:`.outputs.plan_run`), and only then updates the images, materials and depth map.

An error or a cancel at any stage, in :meth:`Run.finish` too, leaves the scene and the files
exactly as they were.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field

import bpy
import numpy as np

from ..core.bake.paint import Painted, PaintTarget, TargetReport, not_painted_message, paint_group
from ..core.bake.surface import MAX_OUTSIDE_FACES, cached_texel_surface, outside_faces_fraction
from ..core.budget import check_fits
from ..core.disk import reason
from ..core.errors import TextureError
from ..core.geometry.depth import DepthCapture, cached_capture, depth_for_model
from ..core.geometry.mesh import MeshArrays, SceneGeometry, require_uv, scene_geometry
from ..core.geometry.orbit import NamedView, object_bounds, orbit_views
from ..core.pictures import check_aspect, diffusion_pictures, given_pictures
from ..core.progress import Progress
from ..core.provenance import Marking
from ..core.record import RunRecord, json_default
from ..request import TextureRequest
from ..version import extension_version
from . import images, materials, outputs, provenance, scene, targets
from .files import FileSet, writing

log = logging.getLogger(__name__)

REPORT_SCHEMA = 4  # 2: the run record (core/record.py) added; 3: c2pa, settings as recorded;
# 4: seam figures per object, colour corrections per view, settings.match_colors
LOAD_SHARE = 0.05  # of the progress bar, for loading the model (downloading counts here too)


@dataclass
class ViewCapture:
    """What a view sees of the scene: the arrays it read, the Z-buffer and the depth map."""

    meshes: dict[str, MeshArrays]
    geometry: SceneGeometry
    capture: DepthCapture
    depth: np.ndarray  # (H, W) float32, what the model receives
    seen: list[str]  # the meshes with at least one pixel in view, in scene order


def read_scene(
    extra: list[bpy.types.Object] = (), with_uv: bool = True
) -> tuple[list[MeshArrays], SceneGeometry]:
    """Everything visible that renders as triangles (meshes, curves, text, instances), plus
    ``extra`` objects even if hidden, as arrays and one soup; ``with_uv`` False leaves the
    meshes' UVs unread (``uv`` None), for what needs only the surfaces."""
    context = bpy.context
    depsgraph = context.evaluated_depsgraph_get()
    meshes = scene.visible_geometry(depsgraph, context.view_layer, with_uv)
    read = {mesh.name for mesh in meshes}
    meshes += [
        scene.mesh_arrays(obj, depsgraph, with_uv=with_uv) for obj in extra if obj.name not in read
    ]
    return meshes, scene_geometry(meshes)


def seen_names(
    geometry: SceneGeometry, capture: DepthCapture, meshes: list[MeshArrays]
) -> list[str]:
    """The mesh objects (not occluders such as text or instances) with a pixel in view."""
    owners = np.unique(geometry.owner[capture.raster.triangle[capture.foreground]])
    return [geometry.names[i] for i in owners if meshes[i].target]


def read_view(view) -> ViewCapture:
    """Read the visible meshes (without their UVs: a depth map needs none) and capture
    ``view``'s depth; reads only, checks no targets.

    Raises :class:`TextureError` for a view that sees nothing.
    """
    meshes, geometry = read_scene(with_uv=False)
    capture = cached_capture(view, geometry)
    depth = depth_for_model(capture)
    return ViewCapture(
        meshes={mesh.name: mesh for mesh in meshes},
        geometry=geometry,
        capture=capture,
        depth=depth,
        seen=seen_names(geometry, capture, meshes),
    )


@dataclass
class Outcome:
    """What a finished run wrote, for the door's message, reports and tests."""

    textures: dict[str, str]  # object name -> where its texture was stored
    coverage: dict[str, float]  # object name -> fraction of island texels this run painted
    notes: list[str]
    record: RunRecord
    c2pa: dict = field(default_factory=dict)  # signed (by which certificate) or skipped (why)
    reports: list[TargetReport] = field(default_factory=list)
    painted: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (S, S) bool
    pixels: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (S, S, 3) sRGB
    seconds: dict[str, float] = field(default_factory=dict)
    # The files written, for a caller whose next step fails (saving the .blend) to take back.
    files: FileSet = field(default_factory=FileSet)

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
    record: RunRecord


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
        plan: outputs.Plan,
        marking: Marking,
        painted_over: list[dict],
    ) -> None:
        self.request = request
        self.plan = plan
        self.marking = marking  # how the textures are signed, checked before the run
        self.painted_over = painted_over  # targets whose texture a one-view run paints over
        self.groups = groups
        self.geometry = geometry
        self.target_names = [t.name for group in groups for t in group.targets]
        self.notes = notes
        self.seconds = seconds
        # By session id: names change (renames, a file load brings objects of the same names).
        self._created_uv_maps = [(obj.name, obj.session_uid) for obj in created_uv_maps]
        self._target_ids = {name: bpy.data.objects[name].session_uid for name in self.target_names}

    @property
    def view_count(self) -> int:
        return sum(len(group.views) for group in self.groups)

    def compute(self, progress: Progress | None = None) -> Computed:
        """Load the model if needed, make every picture and paint every target.

        Reads no Blender data: safe on a worker thread. Raises CancelledError on a cancel.
        """
        progress = progress or Progress()
        request = self.request
        record = RunRecord.begin(
            extension_version(), request.settings_record(), request.output.provenance
        )
        record.painted_over = list(self.painted_over)
        seconds: dict[str, float] = {}
        start = time.perf_counter()
        if request.generation is not None:
            from ..core.diffusion.cache import load_model

            with progress.span(0.0, LOAD_SHARE, "Model"):
                loaded = load_model(request.model, progress)
            record.model = loaded.record
            make = diffusion_pictures(
                loaded.pipe, request.generation, request.view_prompts, record, progress
            )
            seconds["load"] = time.perf_counter() - start
            first = LOAD_SHARE
        else:
            make = given_pictures(request.pictures, record, request.picture_sources)
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
                    match_colors=request.colours_matched,
                )  # fmt: skip
            done += len(group.views)
            painted.update(result)
            depth = group_depth if group_depth is not None else depth
        seconds["paint"] = time.perf_counter() - start
        return Computed(painted=painted, depth=depth, seconds=seconds, record=record)

    def finish(self, computed: Computed) -> Outcome:
        """Write every file, then every texture image, its material and the depth map.

        Checks first that every target is still there under its name and that each was painted
        at all, so a renamed object or an empty result writes nothing. Files come first, under
        temporary names renamed into place together (:class:`.files.FileSet`), and images and
        materials are touched only once they are all in place: a failure part-way through (a
        full disk, a report that cannot be written, Ctrl+C) leaves files and scene as they were.
        """
        start = time.perf_counter()
        objects = self._live_targets()
        for name, result in computed.painted.items():
            if not result.painted.any():
                raise TextureError(not_painted_message(name, result.report))
        self.plan.recheck()
        # One PNG per texture, with the run record, for its file or for packing (unsaved file),
        # signed before any file is written: a signing failure leaves everything as it was.
        pngs = {
            name: images.texture_png(
                computed.painted[name].texture,
                computed.record.for_targets([name]),
                self.marking,
                os.path.basename(self.plan.textures.get(name) or targets.texture_name(name)),
            )
            for name in self.target_names
        }
        files = FileSet()
        try:
            outcome = self._write_files(computed, pngs, files, start)
            files.commit()
            self._apply(objects, computed, pngs)
        except BaseException:
            files.rollback()
            raise
        files.release()
        outcome.files = files
        return outcome

    def _live_targets(self) -> dict[str, bpy.types.Object]:
        """Every target still there as the object prepared (same session id, same name) with
        a UV map to paint on; otherwise one line, before anything is written."""
        objects = {}
        for name in self.target_names:
            obj = bpy.data.objects.get(name)
            if obj is None or obj.session_uid != self._target_ids[name] or obj.type != "MESH":
                raise TextureError(
                    f"'{name}' was renamed or deleted while its texture was made: "
                    "nothing was written."
                )
            if obj.data.uv_layers.active is None:
                raise TextureError(
                    f"'{name}' lost its UV map while its texture was made: nothing was written."
                )
            objects[name] = obj
        return objects

    def _write_files(
        self, computed: Computed, pngs: dict[str, bytes], files: FileSet, start: float
    ) -> Outcome:
        """Stage 3a: the textures' PNGs and the report, under temporary names in ``files``."""
        plan = self.plan
        for name, path in plan.textures.items():
            with writing(path), open(files.stage(path), "wb") as stream:
                stream.write(pngs[name])  # synced when the set commits
        reports = [computed.painted[name].report for name in self.target_names]
        for report in reports:
            report.notes[:0] = self.notes.get(report.name, [])
        seconds = {**self.seconds, **computed.seconds, "write": time.perf_counter() - start}
        outcome = Outcome(
            textures={name: plan.textures.get(name, images.PACKED) for name in self.target_names},
            coverage={r.name: r.coverage_before_fill for r in reports},
            notes=[note for r in reports for note in r.notes] + self.marking.notes(),
            record=computed.record,
            c2pa=self.marking.status(),
            reports=reports,
            painted={name: computed.painted[name].painted for name in self.target_names},
            pixels={name: computed.painted[name].texture for name in self.target_names},
            seconds=seconds,
        )
        if plan.report:
            write_report(files.stage(plan.report), self.request, outcome, shown=plan.report)
        return outcome

    def _apply(
        self, objects: dict[str, bpy.types.Object], computed: Computed, pngs: dict[str, bytes]
    ) -> None:
        """Stage 3b, once every file is in place: images, their files, materials, depth map."""
        for name, obj in objects.items():
            image, _ = images.texture_image(
                targets.texture_name(name), pngs[name], self.plan.textures.get(name), owner=name
            )
            # The record travels with the image: packing, copying, appending.
            image[images.RECORD_PROPERTY] = images.record_text(computed.record.for_targets([name]))
            uv_map = self.request.output.uv_map or obj.data.uv_layers.active.name
            materials.wire_material(obj, image, uv_map)
        if computed.depth is not None:
            images.keep_depth(computed.depth)

    def abort(self) -> None:
        """Undo what :func:`prepare` changed (UV maps it made), after an error or a cancel.

        Found by session id, so a target renamed meanwhile loses its new UV map too, and
        objects of a newly loaded file are never touched."""
        ids = {session_uid for _, session_uid in self._created_uv_maps}
        made = [obj for obj in bpy.data.objects if obj.session_uid in ids]
        targets.remove_uv_maps([obj for obj in made if obj.data.uv_layers.active is not None])
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


def write_report(
    path: str, request: TextureRequest, outcome: Outcome, shown: str | None = None
) -> None:
    """The run's JSON report at ``path`` (a temporary name that :class:`.files.FileSet` renames
    into place; ``shown`` is the name messages give)."""
    objects = []
    for report in outcome.reports:
        entry = asdict(report)
        entry["texture"] = outcome.textures.get(report.name)
        objects.append(entry)
    record = outcome.record.to_dict()  # minimal: no prompts here either
    data = {
        "schema": REPORT_SCHEMA,
        "settings": record["settings"],
        "record": record,
        "c2pa": outcome.c2pa,
        "seconds": outcome.seconds,
        "objects": objects,
    }
    try:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, allow_nan=False, default=json_default)
    except OSError as error:
        shown = shown or path
        raise TextureError(f"Cannot write the report '{shown}': {reason(error)}.") from error


def prepare(request: TextureRequest) -> Run:
    """Stage 1 (main thread): check the request and how it signs (:mod:`.provenance`: on first
    use this makes the installation's certificate, outside the scene), plan and check every
    path the run writes, and read the scene; writes only UV maps. Errors are structured: the
    door words them."""
    start = time.perf_counter()
    request.check()
    marking = provenance.marking_for(request.output.c2pa_cert, request.output.c2pa_key)
    context = bpy.context
    named = targets.find_targets(request.targets) if request.targets is not None else None
    created: list[bpy.types.Object] = []
    notes: dict[str, list[str]] = {}
    try:
        for obj in named or []:
            _ensure_uv(obj, created, notes, request.output.uv_map)
        shared = _shared_views(request, context) if not request.views.orbit else None
        side = request.views.resolution
        widest = max((v.view.width * v.view.height for v in shared or ()), default=side * side)
        check_fits(request.output.texture_size, widest)
        meshes, geometry = read_scene(named or [])
        captures: dict[int, DepthCapture] = {}
        if shared is not None:
            for number, view in enumerate(shared):
                captures[number] = cached_capture(view.view, geometry)
        if named is None:
            named = _seen_targets(request, meshes, geometry, captures, context)
            new_uv = [
                obj for obj in named if _ensure_uv(obj, created, notes, request.output.uv_map)
            ]
            if new_uv:
                depsgraph = context.evaluated_depsgraph_get()
                replaced = {obj.name: scene.mesh_arrays(obj, depsgraph) for obj in new_uv}
                meshes = [replaced.get(mesh.name, mesh) for mesh in meshes]
        elif shared is not None:
            _check_visible(named, meshes, geometry, captures)
        if request.output.uv_map:
            depsgraph = context.evaluated_depsgraph_get()
            chosen = {
                obj.name: scene.mesh_arrays(obj, depsgraph, request.output.uv_map) for obj in named
            }
            meshes = [chosen.get(mesh.name, mesh) for mesh in meshes]
        if request.pictures and shared is not None:
            for picture, view in zip(request.pictures, shared, strict=True):
                check_aspect(picture, view.view, f"The image for '{view.label}'")
        plan = outputs.plan_run(request.output, [obj.name for obj in named])
        for name, plan_notes in plan.notes.items():
            notes.setdefault(name, []).extend(plan_notes)
        painted_over: list[dict] = []
        groups = _groups(request, named, meshes, shared, captures, painted_over)
    except BaseException:
        targets.remove_uv_maps(created)
        raise
    seconds = {"prepare": time.perf_counter() - start}
    return Run(request, groups, geometry, created, notes, seconds, plan, marking, painted_over)


def _ensure_uv(obj, created: list, notes: dict[str, list[str]], uv_map: str | None) -> bool:
    """The target's UV map: the named one must exist; without a name, one is made if needed."""
    if uv_map:
        if obj.data.uv_layers.get(uv_map) is None:
            maps = ", ".join(f"'{layer.name}'" for layer in obj.data.uv_layers) or "none"
            raise TextureError(f"'{obj.name}' has no UV map named '{uv_map}' (it has {maps}).")
        return False
    note = targets.ensure_uv_map(obj)
    if note:
        created.append(obj)
        notes.setdefault(obj.name, []).append(note)
    return bool(note)


def _shared_views(request: TextureRequest, context) -> list[NamedView]:
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
        cameras = [scene.find_camera(context.scene, name or None) for name in source.cameras]
    return [
        NamedView(
            camera.name, scene.camera_view(context.scene, camera, depsgraph, source.resolution)
        )
        for camera in cameras
    ]


def camera_view(name: str, resolution: int):
    """The named camera's view (the scene camera for ""), at a generation resolution."""
    context = bpy.context
    camera = scene.find_camera(context.scene, name or None)
    return scene.camera_view(context.scene, camera, context.evaluated_depsgraph_get(), resolution)


def _seen_targets(
    request: TextureRequest,
    meshes: list[MeshArrays],
    geometry: SceneGeometry,
    captures: dict,
    context,
) -> list[bpy.types.Object]:
    """No targets named: what the views see (an orbit: what the scene camera sees, or every
    visible mesh when there is no camera)."""
    if request.views.orbit:
        if context.scene.camera is None:
            names = [mesh.name for mesh in meshes if mesh.target]
        else:
            view = scene.camera_view(
                context.scene, context.scene.camera, context.evaluated_depsgraph_get(),
                request.views.resolution,
            )  # fmt: skip
            capture = cached_capture(view, geometry)
            names = seen_names(geometry, capture, meshes)
    else:
        seen = set()
        for capture in captures.values():
            seen.update(seen_names(geometry, capture, meshes))
        names = [mesh.name for mesh in meshes if mesh.name in seen]
    if not names:
        raise TextureError("Nothing is visible in the view: there is no depth to texture from.")
    return targets.find_targets(names)


def _check_visible(
    named: list, meshes: list[MeshArrays], geometry: SceneGeometry, captures: dict
) -> None:
    seen = set()
    for capture in captures.values():
        if not capture.foreground.any():
            continue
        seen.update(seen_names(geometry, capture, meshes))
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
    painted_over: list[dict],
) -> list[_Group]:
    """One group sharing the views, or one group per target for automatic orbits; a target
    whose existing texture a one-view run paints over is added to ``painted_over``."""
    size = request.output.texture_size
    offsets = np.cumsum([0] + [mesh.triangles.shape[0] for mesh in meshes])
    position = {mesh.name: index for index, mesh in enumerate(meshes)}
    paint_targets = []
    for obj in named:
        mesh = require_uv(meshes[position[obj.name]])
        outside = outside_faces_fraction(mesh.uv, mesh.uv_triangles)
        if outside > MAX_OUTSIDE_FACES:
            raise TextureError(
                f"'{obj.name}' has UVs outside the 0-1 square on {outside:.0%} of its faces "
                "(UDIM tiles or unpacked UVs), and one texture holds only that square: pack the "
                "islands into it (UV > Pack Islands)."
            )
        known = mesh.digest is not None and mesh.uv_digest is not None
        surface = cached_texel_surface(
            mesh.vertices, mesh.triangles, mesh.uv, mesh.uv_triangles, size,
            mesh.digest + mesh.uv_digest if known else None,
        )  # fmt: skip
        start = None if request.views.several else _start_colours(obj.name, surface)
        if start is not None:
            under = images.image_record(bpy.data.images[targets.texture_name(obj.name)])
            painted_over.append({"target": obj.name, "origin": (under or {}).get("origin")})
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
    existing = targets.own_image(name)
    size = surface.size
    if existing is None or tuple(existing.size) != (size, size) or not existing.has_data:
        return None
    pixels = images.image_to_array(existing)[..., :3].reshape(-1, 3)
    return pixels[surface.texel]
