"""Operators: thin doors onto :mod:`.blender.engine`.

``execute()`` blocks (scripts, ``blender --background``, the command line). ``invoke()`` in an
interactive session runs the diffusion on a worker thread that never touches Blender data, and a
timer-driven modal handler reports progress and applies the result on the main thread.
"""

from __future__ import annotations

import logging
import os
import threading

import bpy
from bpy.props import BoolProperty, FloatProperty, IntProperty, StringProperty

from .blender import engine, images, jobs
from .core.errors import CancelledError, TextureError
from .properties import SCHEDULER_ITEMS

log = logging.getLogger(__name__)

_SETTING_NAMES = (
    "prompt",
    "negative_prompt",
    "seed",
    "steps",
    "guidance",
    "scheduler",
    "resolution",
    "texture_size",
    "views",
    "view_prompts",
)


def _scene_settings(context) -> object:
    return context.scene.sd_depth_texture


def _run_state(context) -> object:
    return context.window_manager.sd_depth_texture


class _ViewOperator:
    """Shared options and helpers of the operators that work from a view."""

    camera: StringProperty(
        name="Camera",
        description="Camera to work from; empty: the panel's choice, or the scene camera headless",
    )
    resolution: IntProperty(name="Resolution", default=512, min=256, max=2048)
    texture_size: IntProperty(name="Texture Size", default=2048, min=64, max=8192)

    def setting(self, context, name: str):
        """The operator's value if the caller set it, else the scene's panel setting."""
        if self.properties.is_property_set(name) or not hasattr(_scene_settings(context), name):
            return getattr(self, name)
        return getattr(_scene_settings(context), name)

    def current_view(self, context):
        """The operator's camera, else the panel's view source (viewport only in a UI)."""
        settings = _scene_settings(context)
        resolution = self.setting(context, "resolution")
        if not self.camera and settings.view_source == "VIEWPORT" and context.region_data:
            return jobs.viewport_view(context, resolution)
        camera = self.camera or (settings.camera.name if settings.camera else "")
        return jobs.camera_view(context, camera, resolution)


class SDT_OT_generate(_ViewOperator, bpy.types.Operator):
    """Generate a texture from the view's depth and a prompt, and bake it into the UV texture"""

    bl_idname = "sd_depth_texture.generate"
    bl_label = "Generate Texture"
    bl_options = {"REGISTER", "UNDO"}

    prompt: StringProperty(name="Prompt")
    negative_prompt: StringProperty(name="Negative Prompt")
    seed: IntProperty(name="Seed", default=0, min=0)
    steps: IntProperty(name="Steps", default=20, min=1, max=150)
    guidance: FloatProperty(name="Guidance", default=7.5, min=0.0, max=30.0)
    scheduler: bpy.props.EnumProperty(name="Scheduler", items=SCHEDULER_ITEMS, default="dpmpp")
    model: StringProperty(
        name="Model",
        description="Model source for this run (Hub id, folder, .safetensors, 'random'); "
        "empty: the add-on preferences",
    )

    views: IntProperty(
        name="Views",
        default=1,
        min=1,
        max=26,
        description="1: the view only; more: that many views all around each object "
        "(a ring plus top and bottom), one consistent texture, every texel filled",
    )
    view_prompts: BoolProperty(
        name="View Prompts",
        default=True,
        description="Append the view's direction to the prompt ('..., back view')",
    )
    camera_collection: StringProperty(
        name="Camera Collection",
        description="Paint from every camera in this collection instead of automatic views",
    )
    report_path: StringProperty(
        name="Report", subtype="FILE_PATH", description="Write a JSON report of the run here"
    )

    _thread: threading.Thread | None = None
    _timer = None

    @classmethod
    def poll(cls, context) -> bool:
        if _run_state(context).running:
            cls.poll_message_set("A texture is already being generated")
            return False
        return True

    def generation_settings(self, context):
        values = {name: self.setting(context, name) for name in _SETTING_NAMES}
        return jobs.generation_settings(values)

    def collection_name(self, context) -> str:
        if self.camera_collection or self.properties.is_property_set("camera_collection"):
            return self.camera_collection
        chosen = _scene_settings(context).camera_collection
        return chosen.name if chosen is not None else ""

    def build_work(self, context, on_step, *, should_cancel=None, on_load=None, on_view=None):
        """The run the operator's settings ask for, prepared (reads the scene, writes nothing
        except a UV map for a whole-object run on an object without one)."""
        views = self.setting(context, "views")
        collection = self.collection_name(context)
        single = views == 1 and not collection
        return jobs.texture_work(
            context.scene,
            context.view_layer,
            jobs.selected_targets(context),
            spec=jobs.model_spec(context, self.model or None),
            settings=self.generation_settings(context),
            options=engine.Options(texture_size=self.setting(context, "texture_size")),
            view=self.current_view(context) if single else None,
            views=views,
            camera_collection=collection,
            view_prompts=self.setting(context, "view_prompts"),
            resolution=self.setting(context, "resolution"),
            report_path=bpy.path.abspath(self.report_path) or None,
            on_step=on_step,
            should_cancel=should_cancel,
            on_load=on_load,
            on_view=on_view,
        )

    def execute(self, context):
        try:
            outcome = self.build_work(
                context, jobs.TERMINAL.step, on_load=jobs.TERMINAL.message
            ).run()
        except TextureError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        _run_state(context).coverage = min(outcome.coverage.values(), default=0.0)
        self.report({"INFO"}, outcome.summary())
        return {"FINISHED"}

    def invoke(self, context, _event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        state = _run_state(context)
        self._progress = [0.0, "Loading model", ""]

        def on_step(done: int, total: int) -> None:
            self._progress[:2] = [done / total, f"{self._progress[2]}Step {done}/{total}"]

        def on_load(message: str, fraction: float) -> None:
            self._progress[:2] = [fraction * 0.05, message]

        def on_view(number: int, total: int, label: str) -> None:
            self._progress[2] = f"View {number + 1}/{total} ({label}): "

        try:
            self._work = self.build_work(
                context, on_step, should_cancel=lambda: state.cancel_requested,
                on_load=on_load, on_view=on_view,
            )  # fmt: skip
        except TextureError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self._result: dict[str, object] = {}
        state.running, state.cancel_requested, state.progress = True, False, 0.0
        state.status = "Loading model"
        self._thread = threading.Thread(target=self._compute, daemon=True)
        self._thread.start()
        self._timer = context.window_manager.event_timer_add(0.2, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _compute(self) -> None:
        """Worker thread: the model and the painting. Reads no Blender data and writes none."""
        try:
            self._result["value"] = self._work.compute()
        except TextureError as error:
            self._result["error"] = error
        except Exception as error:  # the thread must always hand something back
            log.exception("Generation failed")
            self._result["error"] = TextureError(f"Generation failed: {error}")

    def modal(self, context, event):
        state = _run_state(context)
        if event.type == "ESC":
            state.cancel_requested = True
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        state.progress, state.status = self._progress[0], self._progress[1]
        if self._thread is not None and self._thread.is_alive():
            return {"RUNNING_MODAL"}
        return self._finish(context)

    def _finish(self, context):
        state = _run_state(context)
        context.window_manager.event_timer_remove(self._timer)
        state.running, state.progress = False, 0.0
        error = self._result.get("error")
        if error is not None:
            self._work.abort()
            cancelled = isinstance(error, CancelledError)
            state.status = "Cancelled; nothing was changed" if cancelled else str(error)
            self.report({"WARNING" if cancelled else "ERROR"}, state.status)
            return {"CANCELLED"}
        try:
            outcome = self._work.finish(self._result["value"])
        except TextureError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        state.coverage = min(outcome.coverage.values(), default=0.0)
        state.status = outcome.summary()
        self.report({"INFO"}, outcome.summary())
        return {"FINISHED"}


class SDT_OT_project_image(_ViewOperator, bpy.types.Operator):
    """Project an image you already have from the view onto the objects' UV textures"""

    bl_idname = "sd_depth_texture.project_image"
    bl_label = "Project Image"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(name="Image", subtype="FILE_PATH")

    def execute(self, context):
        try:
            picture = jobs.load_picture(bpy.path.abspath(self.filepath))
            view, targets = self.current_view(context), jobs.selected_targets(context)
            outcome = engine.run(
                context.scene,
                context.view_layer,
                view,
                targets,
                jobs.fixed_picture(picture),
                engine.Options(texture_size=self.setting(context, "texture_size")),
            )
        except TextureError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, outcome.summary())
        return {"FINISHED"}

    def invoke(self, context, _event):
        if self.filepath or bpy.app.background:
            return self.execute(context)
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}


class SDT_OT_capture_depth(_ViewOperator, bpy.types.Operator):
    """Capture the view's depth map as the model would receive it (image 'SD Depth')"""

    bl_idname = "sd_depth_texture.capture_depth"
    bl_label = "Capture Depth"
    bl_options = {"REGISTER"}

    filepath: StringProperty(
        name="16-bit PNG", subtype="FILE_PATH", description="Also write it here (optional)"
    )

    def execute(self, context):
        try:
            seen = engine.read_view(context.scene, context.view_layer, self.current_view(context))
            if self.filepath:
                path = bpy.path.abspath(self.filepath)
                if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
                    raise TextureError(f"The folder for '{path}' does not exist.")
                images.save_depth_png(seen.depth, path, context.scene)
        except TextureError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        engine.store_depth_preview(seen.depth)
        height, width = seen.depth.shape
        self.report({"INFO"}, f"Depth captured at {width}x{height} ({engine.DEPTH_IMAGE})")
        return {"FINISHED"}


class SDT_OT_free_model(bpy.types.Operator):
    """Release the loaded model and the GPU memory it holds"""

    bl_idname = "sd_depth_texture.free_model"
    bl_label = "Free Model"

    def execute(self, _context):
        freed = jobs.free_model()
        self.report({"INFO"}, "Model released" if freed else "No model was loaded")
        return {"FINISHED"}


class SDT_OT_cancel(bpy.types.Operator):
    """Stop the running generation between two steps; the scene is left as it was"""

    bl_idname = "sd_depth_texture.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context) -> bool:
        return _run_state(context).running

    def execute(self, context):
        _run_state(context).cancel_requested = True
        return {"FINISHED"}


classes = (
    SDT_OT_generate,
    SDT_OT_project_image,
    SDT_OT_capture_depth,
    SDT_OT_free_model,
    SDT_OT_cancel,
)
register, unregister = bpy.utils.register_classes_factory(classes)
