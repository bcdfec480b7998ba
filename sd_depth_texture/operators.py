"""Operators: thin doors onto :mod:`.blender.engine`.

``execute()`` blocks (scripts, ``blender --background``, the command line). ``invoke()`` in an
interactive session runs the diffusion on a worker thread that never touches Blender data, and a
timer-driven modal handler reports progress and applies the result on the main thread.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

import bpy
from bpy.props import FloatProperty, IntProperty, StringProperty

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

    def execute(self, context):
        try:
            view, targets = self.current_view(context), jobs.selected_targets(context)
            settings = self.generation_settings(context)
            outcome = engine.run(
                context.scene,
                context.view_layer,
                view,
                targets,
                jobs.diffusion_picture(
                    jobs.model_spec(context, self.model or None), settings, jobs.TERMINAL.step
                ),
                jobs.options(self.setting(context, "texture_size")),
            )
        except TextureError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, outcome.summary())
        return {"FINISHED"}

    def invoke(self, context, _event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        state = _run_state(context)
        try:
            view, targets = self.current_view(context), jobs.selected_targets(context)
            settings = self.generation_settings(context)
            self._prepared = engine.prepare(context.scene, context.view_layer, view, targets)
        except TextureError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self._spec = jobs.model_spec(context, self.model or None)
        self._texture_size = self.setting(context, "texture_size")
        self._result: dict[str, object] = {}
        self._progress = [0.0, "Loading model"]
        state.running, state.cancel_requested, state.progress = True, False, 0.0
        state.status = "Loading model"
        self._thread = threading.Thread(
            target=self._work, args=(settings, lambda: state.cancel_requested), daemon=True
        )
        self._thread.start()
        self._timer = context.window_manager.event_timer_add(0.2, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _work(self, settings, should_cancel: Callable[[], bool]) -> None:
        """Worker thread: load and run the model. Reads no Blender data and writes none."""

        def on_step(done: int, total: int) -> None:
            self._progress[:] = [done / total, f"Step {done}/{total}"]

        def on_load(message: str, fraction: float) -> None:
            self._progress[:] = [fraction * 0.05, message]

        try:
            make = jobs.diffusion_picture(
                self._spec, settings, on_step, should_cancel=should_cancel, on_load=on_load
            )
            self._result["picture"] = make(self._prepared)
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
        state.progress, state.status = self._progress
        if self._thread is not None and self._thread.is_alive():
            return {"RUNNING_MODAL"}
        return self._finish(context)

    def _finish(self, context):
        state = _run_state(context)
        context.window_manager.event_timer_remove(self._timer)
        state.running, state.progress = False, 0.0
        error = self._result.get("error")
        if isinstance(error, CancelledError):
            state.status = "Cancelled; nothing was changed"
            self.report({"WARNING"}, state.status)
            return {"CANCELLED"}
        if error is not None:
            state.status = str(error)
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        try:
            outcome = engine.apply(
                self._prepared, self._result["picture"], jobs.options(self._texture_size)
            )
        except TextureError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
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
                jobs.options(self.setting(context, "texture_size")),
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
            prepared = engine.prepare(
                context.scene, context.view_layer, self.current_view(context), None
            )
            if self.filepath:
                path = bpy.path.abspath(self.filepath)
                if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
                    raise TextureError(f"The folder for '{path}' does not exist.")
                images.save_depth_png(prepared.depth, path, context.scene)
        except TextureError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        engine.store_depth_preview(prepared.depth)
        height, width = prepared.depth.shape
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
