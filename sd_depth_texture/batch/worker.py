"""The Blender side of a batch, and the only module of :mod:`..batch` that imports ``bpy``.

It lists a file's assets, reads an output's in-file record, and :class:`FileWorker` textures one
asset of one open file and commits the file. The sequential loop and a Ray actor both drive
that same class, which is why both produce the same pixels. Each asset is textured in isolation
(every other mesh hidden for the moment), from a view framed on the asset's bounds unless
``--camera`` names one; nothing of that set-up is saved.

The texturing itself goes through :func:`texture_asset`, which builds a
:class:`~..request.TextureRequest` and runs the one flow (:mod:`..blender.flow`), as every
other door does; :func:`model_spec` resolves the model from the preferences and the options.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import bpy
import numpy as np

from ..blender import flow, scene
from ..blender.files import FileSet, copy_whole, open_blend, save_blend_copy
from ..core.bake import png
from ..core.bake.render import render_texture
from ..core.bake.surface import face_normals
from ..core.errors import TextureError
from ..core.geometry.depth import capture_depth
from ..core.geometry.orbit import object_bounds, orbit_view
from ..core.geometry.views import View
from ..core.progress import Progress
from ..core.text import shown
from ..request import TextureRequest
from .outputs import STAGING, preview_path, record_paths, staged_path
from .records import (
    DONE,
    AssetInfo,
    AssetJob,
    FileTask,
    base_record,
    failed_record,
    now_iso,
    worker_name,
)

log = logging.getLogger(__name__)

#: The in-file record: which assets this output holds, committed together with them.
RECORD_TEXT = "SD Batch Record"
PREVIEW_AZIMUTH_DEG = 35.0  # front-right, so a lead sees the painted front and a side
PREVIEW_ELEVATION_DEG = 20.0
PREVIEW_FOV_DEG = 40.0
PREVIEW_BACKGROUND = 0.93
_NIL_UUID = "00000000-0000-0000-0000-000000000000"


# --------------------------------------------------------------------------------------------
# Files, assets and records
# --------------------------------------------------------------------------------------------


def library_paths() -> dict[str, str]:
    """Asset libraries configured in Blender's preferences: name -> folder."""
    return {
        library.name: bpy.path.abspath(library.path)
        for library in bpy.context.preferences.filepaths.asset_libraries
    }


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


def output_record(path: str) -> dict[str, Any] | None:
    """The in-file record of the .blend at ``path`` (None: not written by a batch, or not a
    .blend Blender can read). Opens the file."""
    try:
        open_blend(path)
    except TextureError:
        return None
    return read_record()


# --------------------------------------------------------------------------------------------
# One asset on its own, and its preview
# --------------------------------------------------------------------------------------------


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
    """The textured asset from the front right, framed on the sphere around its bounding box
    (as the texturing views are)."""
    center, radius = object_bounds(vertices)
    return orbit_view(
        center, radius, PREVIEW_AZIMUTH_DEG, PREVIEW_ELEVATION_DEG, fov_deg=PREVIEW_FOV_DEG,
        size=size,
    )  # fmt: skip


def render_preview(obj: bpy.types.Object, texture: np.ndarray, size: int) -> np.ndarray:
    """A small shaded picture of the asset with ``texture`` ((S, S, 3) sRGB) on it, from the
    project's rasteriser.

    No Blender render engine: Workbench costs seconds per picture in background mode and EEVEE
    far more, which would dwarf the rest of an asset's overhead.
    """
    mesh = scene.mesh_arrays(obj, bpy.context.evaluated_depsgraph_get())
    view = preview_view(mesh.vertices, size)
    capture = capture_depth(view, mesh.vertices, mesh.triangles)
    picture, mask, _ = render_texture(
        capture, mesh.vertices, mesh.triangles, mesh.uv, mesh.uv_triangles, 0, texture
    )
    normals = face_normals(mesh.vertices, mesh.triangles)[capture.raster.triangle[mask]]
    light = np.abs(normals @ (-view.forward)).astype(np.float32)
    result = np.full((size, size, 3), PREVIEW_BACKGROUND, dtype=np.float32)
    result[mask] = picture[mask] * (0.35 + 0.65 * light)[:, None]
    return np.clip(result, 0.0, 1.0)


def save_png(pixels: np.ndarray, path: str) -> None:
    """Write an (H, W, 3) sRGB array as PNG (to a staging path: it is moved into place later),
    whole and checked: Blender's ``Image.save`` leaves an empty file on a full disk, silently."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    png.write_png(path, pixels)


# --------------------------------------------------------------------------------------------
# The texturing: a request to the one flow
# --------------------------------------------------------------------------------------------


@dataclass
class Textured:
    """What texturing one asset made, in the batch's terms (not the flow's)."""

    textures: dict[str, str]  # object name -> its texture PNG, written by the flow in place
    coverage: float  # share of the asset's texels painted
    seconds: dict[str, float]  # prepare, load, paint (the pictures and projection), write
    record: dict[str, Any]  # the run record (core/record.py)
    c2pa: dict[str, Any]  # the textures' C2PA manifest: signed (by which certificate) or skipped
    texture: np.ndarray  # the asset's own texture, for its preview
    notes: list[str] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)  # whole-object runs, per object
    files: FileSet | None = None  # what the flow wrote, taken back if the .blend is not saved


def texture_asset(
    obj: bpy.types.Object, job: AssetJob, template: TextureRequest, texture_dir: str
) -> Textured:
    """Texture ``obj`` (already isolated) for ``job`` through the one flow: the template with
    the asset's prompt, seed and target, its textures written into ``texture_dir``."""
    request = template.for_asset(
        job.prompt, job.negative_prompt, job.seed, (obj.name,), texture_dir
    )
    outcome = flow.prepare(request).run(Progress())
    return Textured(
        textures=dict(outcome.textures),
        coverage=float(outcome.coverage.get(obj.name, 0.0)),
        seconds=dict(outcome.seconds),
        record=outcome.record.to_dict(),
        c2pa=dict(outcome.c2pa),
        texture=outcome.pixels[obj.name],
        notes=list(outcome.notes),
        reports=[dataclasses.asdict(report) for report in outcome.reports],
        files=outcome.files,
    )


# --------------------------------------------------------------------------------------------
# The worker
# --------------------------------------------------------------------------------------------


def _publish(entries: Iterable[Mapping[str, Any]]) -> None:
    """Move the staged files that committed record entries name into their final place."""
    for entry in entries:
        for final in record_paths(entry):
            staged = staged_path(final)
            if os.path.isfile(staged):
                os.replace(staged, final)


def _clear_staging(task: FileTask) -> None:
    for folder in (task.texture_dir, task.preview_dir):
        shutil.rmtree(os.path.join(folder, STAGING), ignore_errors=True)


class FileWorker:
    """Textures assets of one open file at a time and commits the file after each asset."""

    def __init__(self, template: TextureRequest, preview_size: int) -> None:
        self.template = template  # the batch's request; each asset fills in its own parts
        self.preview_size = preview_size
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
            log.error("Texturing %s failed:\n%s", shown(job.key), traceback.format_exc())
            message = f"{type(error).__name__}: {error}"
        self.current = None  # whatever the failure left half-done is reloaded from disk
        with suppress(Exception):  # now, so no .staging outlives the batch (else: next asset)
            self._open(task)
        return failed_record(job, task, message, time.perf_counter() - started)

    def _open(self, task: FileTask) -> None:
        """Open the task's output (or its source the first time), finish moving what its record
        committed, and drop whatever an interrupted asset left staged."""
        if self.current == task.file:
            return
        started = time.perf_counter()
        self.current = None
        record = None
        if os.path.isfile(task.output):
            open_blend(task.output)
            record = read_record()
            if record is None and task.output != task.source:
                raise TextureError(
                    f"'{task.output}' was not written by a batch (it has no batch record): it "
                    "was left as it is; choose another --out."
                )
        if record is None:
            open_blend(task.source)
            record = {}
        _publish(record.values())
        _clear_staging(task)
        self.record = record
        self.current = task.file
        self.open_seconds = time.perf_counter() - started

    def _texture(self, task: FileTask, job: AssetJob, started: float) -> dict[str, Any]:
        """Texture (the flow writes the PNGs into the task's texture folder, never over a file
        this output does not own), stage the preview, commit the .blend with its record, then
        publish the preview. A failure before the commit takes the textures back."""
        seconds = {"open": self.open_seconds}
        self.open_seconds = 0.0
        obj = bpy.data.objects.get(job.asset)
        if obj is None or obj.library is not None:
            raise TextureError(f"There is no local object named '{job.asset}' in the file.")
        preview = preview_path(task, job.asset, job.file_name)
        with isolated(obj):
            textured = texture_asset(obj, job, self.template, task.texture_dir)
        try:
            seconds.update(textured.seconds)  # prepare, load, paint, write
            stage = time.perf_counter()
            picture = render_preview(obj, textured.texture, self.preview_size)
            save_png(picture, staged_path(preview))
            seconds["preview"] = time.perf_counter() - stage
            record = {
                **base_record(job, task),
                "status": DONE,
                "textures": textured.textures,
                "preview": preview,
                "coverage": round(textured.coverage, 4),
                "notes": [*job.notes, *textured.notes],
                "model_loaded": bool(textured.record["model"]["loaded"]),
                "record": textured.record,
                "c2pa": textured.c2pa,
                "report": textured.reports or None,
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
        except BaseException:
            if textured.files is not None:
                textured.files.take_back()
            raise
        _publish([record])
        _clear_staging(task)
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
            copy_whole(task.source, task.backup)  # no partial copy left on a full disk
        save_blend_copy(task.output)
