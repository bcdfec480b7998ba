"""The Blender side of a batch: list a file's assets, texture one asset, commit the file.

:class:`FileWorker` keeps one file open between the assets of that file and is what both the
sequential loop and a Ray actor call, so both produce the same output for the same request.
Each asset is textured in isolation (every other mesh hidden for the moment), from a view
framed on the asset's bounds unless ``--camera`` names one; nothing of that set-up is saved.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import bpy
import numpy as np

from ..batch import (
    DONE,
    AssetInfo,
    AssetJob,
    FileTask,
    base_record,
    failed_record,
    now_iso,
    worker_name,
)
from ..core.bake.render import render_texture
from ..core.bake.surface import face_normals
from ..core.diffusion.settings import GenerationSettings
from ..core.errors import TextureError
from ..core.geometry.depth import capture_depth
from ..core.geometry.orbit import object_bounds, orbit_view
from ..core.geometry.views import View
from ..core.progress import Progress
from ..request import OutputOptions, TextureRequest, ViewSource
from . import flow, images, scene
from .files import fsync, save_blend_copy
from .targets import check_target, texture_name

log = logging.getLogger(__name__)

#: The in-file record: which assets this output holds, committed together with them.
RECORD_TEXT = "SD Batch Record"
STAGING = ".staging"
PREVIEW_AZIMUTH_DEG = 35.0  # front-right, so a lead sees the painted front and a side
PREVIEW_ELEVATION_DEG = 20.0
PREVIEW_FOV_DEG = 40.0
PREVIEW_BACKGROUND = 0.93


def library_paths() -> dict[str, str]:
    """Asset libraries configured in Blender's preferences: name -> folder."""
    return {
        library.name: bpy.path.abspath(library.path)
        for library in bpy.context.preferences.filepaths.asset_libraries
    }


def open_blend(path: str) -> None:
    if not os.path.isfile(path):
        raise TextureError(f"There is no .blend file at '{path}'.")
    try:
        bpy.ops.wm.open_mainfile(filepath=path, load_ui=False)
    except RuntimeError as error:
        raise TextureError(f"Blender cannot open '{path}': it may be damaged.") from error


def scan_file(path: str, all_meshes: bool = False) -> list[AssetInfo]:
    """The objects a batch textures in a file: local mesh objects marked as assets (or all
    local meshes), with their metadata. Non-mesh assets are not textures' business."""
    open_blend(path)
    found = []
    for obj in bpy.data.objects:
        if obj.library is not None or obj.type != "MESH":
            continue
        data = obj.asset_data
        if data is None and not all_meshes:
            continue
        if data is None:
            found.append(AssetInfo(name=obj.name))
            continue
        found.append(
            AssetInfo(
                name=obj.name,
                description=data.description,
                tags=tuple(tag.name for tag in data.tags),
                catalog_id=data.catalog_id if data.catalog_id != _NIL_UUID else "",
                catalog_name=data.catalog_simple_name,
                author=data.author,
            )
        )
    return found


_NIL_UUID = "00000000-0000-0000-0000-000000000000"


def read_record() -> dict[str, Any] | None:
    """The assets the open file holds from earlier batch runs; None if it has no record."""
    text = bpy.data.texts.get(RECORD_TEXT)
    if text is None:
        return None
    try:
        return dict(json.loads(text.as_string()).get("assets", {}))
    except (json.JSONDecodeError, AttributeError):
        log.warning("The batch record in %s is damaged; ignoring it", bpy.data.filepath)
        return None


def write_record(record: dict[str, Any]) -> None:
    text = bpy.data.texts.get(RECORD_TEXT) or bpy.data.texts.new(RECORD_TEXT)
    text.from_string(json.dumps({"version": 1, "assets": record}, indent=1, sort_keys=True))


@contextmanager
def isolated(obj: bpy.types.Object) -> Iterator[None]:
    """Only ``obj`` visible among meshes while texturing it: other assets stored at the same
    spot would otherwise occlude it. Every change is undone before the file is saved."""
    context_scene, view_layer = bpy.context.scene, bpy.context.view_layer
    hidden = [
        other
        for other in view_layer.objects
        if other != obj and other.type == "MESH" and other.visible_get(view_layer=view_layer)
    ]
    undo: list[tuple[str, Any]] = []
    try:
        for other in hidden:
            other.hide_set(True, view_layer=view_layer)
            undo.append(("unhide", other))
        if not obj.visible_get(view_layer=view_layer):
            if obj.name in view_layer.objects and obj.hide_get(view_layer=view_layer):
                obj.hide_set(False, view_layer=view_layer)
                undo.append(("hide", obj))
            if obj.hide_viewport:
                obj.hide_viewport = False
                undo.append(("hide_viewport", obj))
            view_layer.update()
            if not obj.visible_get(view_layer=view_layer):
                context_scene.collection.objects.link(obj)
                undo.append(("unlink", obj))
                view_layer.update()
            if not obj.visible_get(view_layer=view_layer):
                raise TextureError(f"'{obj.name}' cannot be made visible in the scene.")
        yield
    finally:
        for action, target in reversed(undo):
            if action == "unhide":
                target.hide_set(False, view_layer=view_layer)
            elif action == "hide":
                target.hide_set(True, view_layer=view_layer)
            elif action == "hide_viewport":
                target.hide_viewport = True
            elif action == "unlink":
                context_scene.collection.objects.unlink(target)
        view_layer.update()


def preview_view(vertices: np.ndarray, size: int) -> View:
    """The textured asset from the front right, framed like the texturing views."""
    center, radius = object_bounds(vertices)
    return orbit_view(
        center, radius, PREVIEW_AZIMUTH_DEG, PREVIEW_ELEVATION_DEG, fov_deg=PREVIEW_FOV_DEG,
        size=size,
    )  # fmt: skip


def render_preview(obj: bpy.types.Object, size: int) -> np.ndarray:
    """A small shaded picture of the textured asset, rendered with the project's rasteriser.

    No Blender render engine: Workbench costs seconds per picture in background mode and EEVEE
    far more, which would dwarf the rest of an asset's overhead.
    """
    mesh = scene.mesh_arrays(obj, bpy.context.evaluated_depsgraph_get())
    view = preview_view(mesh.vertices, size)
    capture = capture_depth(view, mesh.vertices, mesh.triangles)
    texture = images.image_to_array(bpy.data.images[texture_name(obj.name)])[..., :3]
    picture, mask, _ = render_texture(
        capture, mesh.vertices, mesh.triangles, mesh.uv, mesh.uv_triangles, 0, texture
    )
    normals = face_normals(mesh.vertices, mesh.triangles)[capture.raster.triangle[mask]]
    light = np.abs(normals @ (-view.forward)).astype(np.float32)
    result = np.full((size, size, 3), PREVIEW_BACKGROUND, dtype=np.float32)
    result[mask] = picture[mask] * (0.35 + 0.65 * light)[:, None]
    return np.clip(result, 0.0, 1.0)


def save_png(pixels: np.ndarray, path: str) -> None:
    """Write an (H, W, 3) sRGB array as PNG under a temporary name, then rename it into place."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = images.array_to_image("SD Batch Preview", pixels)
    temporary = os.path.join(os.path.dirname(path), "." + os.path.basename(path))
    try:
        image.filepath_raw = temporary
        image.file_format = "PNG"
        image.save()
    finally:
        bpy.data.images.remove(image)
    os.replace(temporary, path)


class FileWorker:
    """Textures assets of one open file at a time and commits the file after each asset."""

    def __init__(self, options: dict[str, Any], spec: Any) -> None:
        self.args = argparse.Namespace(**options)
        self.spec = spec
        self.current: str | None = None  # the task (file) whose state is open and clean
        self.record: dict[str, Any] = {}
        self.open_seconds = 0.0

    def texture(self, task: FileTask, job: AssetJob) -> dict[str, Any]:
        """Texture one asset and commit its file; never raises for a bad asset (the failure is
        the returned record) so one asset cannot stop a batch."""
        started = time.perf_counter()
        try:
            self._open(task)
            previous = self.record.get(job.key)
            if previous is not None and previous.get("request") == job.request:
                # Committed by a run that died before its manifest line: report, don't redo.
                return {**previous, "recovered": True, "worker": worker_name()}
            if previous is not None:
                raise TextureError(
                    f"{task.output} holds this asset made with another prompt, seed or settings: "
                    "write to a new --out folder."
                )
            return self._texture(task, job, started)
        except TextureError as error:
            message = str(error)
        except MemoryError:
            message = "out of memory"
        except Exception as error:
            log.error("Texturing %s failed:\n%s", job.key, traceback.format_exc())
            message = f"{type(error).__name__}: {error}"
        self.current = None  # whatever the failure left half-done is reloaded from disk
        return failed_record(job, task, message, time.perf_counter() - started)

    def _open(self, task: FileTask) -> None:
        if self.current == task.file:
            return
        started = time.perf_counter()
        self.current = None
        staging = os.path.join(task.texture_dir, STAGING)
        shutil.rmtree(staging, ignore_errors=True)
        record = None
        if os.path.isfile(task.output):
            open_blend(task.output)
            record = read_record()
            if record is None and task.output != task.source:
                log.warning("%s was not written by a batch; starting from the source", task.output)
        if record is None and (task.output != task.source or not os.path.isfile(task.output)):
            open_blend(task.source)
            record = {}
        self.record = record or {}
        self.current = task.file
        self.open_seconds = time.perf_counter() - started

    def _views(self) -> ViewSource:
        """--camera, a camera collection or an orbit of --views; one view by default, framed on
        the asset's bounds from its front (-Y) at a moderate elevation."""
        args = self.args
        if args.camera or args.camera_collection or args.views > 1:
            return ViewSource.choose(
                args.views,
                resolution=args.resolution,
                collection=args.camera_collection or "",
                camera=args.camera or "",
            )
        return ViewSource(resolution=args.resolution, orbit=1)

    def _texture(self, task: FileTask, job: AssetJob, started: float) -> dict[str, Any]:
        seconds = {"open": self.open_seconds}
        self.open_seconds = 0.0
        obj = bpy.data.objects.get(job.asset)
        if obj is None or obj.library is not None:
            raise TextureError(f"There is no local object named '{job.asset}' in the file.")
        check_target(obj)
        args = self.args
        settings = GenerationSettings(
            prompt=job.prompt,
            negative_prompt=job.negative_prompt,
            seed=job.seed,
            steps=args.steps,
            guidance=args.guidance,
            scheduler=args.scheduler,
        )
        loads: list[str] = []
        staging = os.path.join(task.texture_dir, STAGING)
        preview = os.path.join(task.preview_dir, bpy.path.clean_name(job.asset) + ".png")
        with isolated(obj):
            stage = time.perf_counter()
            request = TextureRequest(
                views=self._views(),
                targets=(obj.name,),
                generation=settings,
                model=self.spec,
                view_prompts=args.view_prompts,
                output=OutputOptions(
                    texture_size=args.texture_size,
                    margin=args.margin,
                    blend_path=os.path.join(staging, "x.blend"),
                ),
            )
            run = flow.prepare(request, "cli")
            seconds["prepare"] = time.perf_counter() - stage
            outcome = run.run(Progress(on_change=lambda _f, message: loads.append(message)))
            seconds.update(outcome.seconds)  # compute (the diffusion), projection/write or fill
            stage = time.perf_counter()
            save_png(render_preview(obj, self.args.preview_size), preview)
            seconds["preview"] = time.perf_counter() - stage

        # Staged PNGs move into the file's own texture folder whole (rename), never half-written.
        textures = {}
        for name, staged in outcome.textures.items():
            final = os.path.join(task.texture_dir, os.path.basename(staged))
            os.replace(staged, final)
            bpy.data.images[texture_name(name)].filepath_raw = images.relative_to_open_file(final)
            textures[name] = final
        shutil.rmtree(staging, ignore_errors=True)

        record = {
            **base_record(job, task),
            "status": DONE,
            "textures": textures,
            "preview": preview,
            "coverage": round(float(outcome.coverage.get(obj.name, 0.0)), 4),
            "notes": outcome.notes,
            "model_loaded": any("Loading" in message for message in loads),
            "report": [dataclasses.asdict(report) for report in outcome.reports] or None,
            "worker": worker_name(),
            "error": None,
        }
        stage = time.perf_counter()
        self.record[job.key] = {**record, "seconds": {}, "finished": now_iso()}
        try:
            self._commit(task)
        except BaseException:
            self.record.pop(job.key, None)
            raise
        seconds["save"] = time.perf_counter() - stage
        seconds["total"] = time.perf_counter() - started
        record["seconds"] = {key: round(value, 4) for key, value in seconds.items()}
        record["finished"] = now_iso()
        return record

    def _commit(self, task: FileTask) -> None:
        """Write the whole file under a temporary name and rename it over the output."""
        write_record(self.record)
        if task.backup and not os.path.isfile(task.backup):
            os.makedirs(os.path.dirname(task.backup), exist_ok=True)
            partial = task.backup + ".partial"
            shutil.copy2(task.source, partial)
            fsync(partial)
            os.replace(partial, task.backup)
        save_blend_copy(task.output)
