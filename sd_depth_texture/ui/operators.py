"""Operators: thin doors that build a :class:`~..request.TextureRequest` and run the one flow.

``execute()`` blocks (scripts, ``blender --background``). ``invoke()`` in an interactive session
prepares the run and hands it to a :class:`.runner.ModalRunner`; ``modal`` and ``cancel`` only
forward timer events, Esc and handler removal to it.

Flags: Generate and Project Image are undoable (``UNDO``) but not ``REGISTER``ed, so Adjust Last
Operation never silently re-runs a minutes-long generation, and their settings are
``SKIP_SAVE``, so a value given once never overrides the panel afterwards. Their runs never
overwrite a texture file (``keep_previous_files``): undo brings back an image that points at
the previous run's file, so the previous pixels come back with it.

A file load ends every run in flight (``load_pre``): its result is never applied to the new file.
"""

from __future__ import annotations

import logging

import bpy
from bpy.app.handlers import persistent
from bpy.props import BoolProperty, CollectionProperty, EnumProperty, StringProperty

from .. import defaults
from ..blender import flow, images, outputs, preferences, scene
from ..blender.files import write_whole
from ..blender.pictures import load_picture
from ..blender.targets import check_target
from ..core.errors import TextureError
from ..core.validation import check_setting, check_settings
from ..messages import UI, word
from ..request import SCENE_CAMERA, TextureRequest, build_request
from . import dependencies
from .properties import SCHEDULER_ITEMS, SDT_Lora, lora_pairs, numbers
from .runner import CANCELLED, FINISHED, RUNNING, STOPPED_MESSAGE, ModalRunner

log = logging.getLogger(__name__)

_SKIP = {"SKIP_SAVE"}
_TIMER_SECONDS = 0.2


def _scene_settings(context):
    return context.scene.sd_depth_texture


def _run_state(context):
    return context.window_manager.sd_depth_texture


def _current_run_state():
    """The run state of the window manager in use now (a file load replaces it)."""
    return bpy.context.window_manager.sd_depth_texture


def interactive(context) -> bool:
    """A window to run modal in: not ``--background``, the bpy module or a script's context."""
    return not bpy.app.background and context.window is not None


def _busy(cls, context) -> bool:
    """A run in flight, or one still stopping: explain it in the button's tooltip."""
    if _run_state(context).running:
        cls.poll_message_set("A texture is being generated: wait for it or cancel it")
        return True
    if ModalRunner.stopping():
        cls.poll_message_set("The previous run is stopping after its current step")
        return True
    return False


class _ViewOperator:
    """Options and helpers of the operators that work from a view."""

    __annotations__ = numbers(defaults.VIEW, defaults.TEXTURE, hard=False, options=_SKIP)
    camera: StringProperty(
        name="Camera",
        description="Camera to work from; empty: the panel's choice, or the scene camera headless",
        options=_SKIP,
    )
    uv_map: StringProperty(
        name="UV Map",
        description="The UV map to texture; empty: each object's active UV map",
        options=_SKIP,
    )
    maps: StringProperty(
        name="Maps",
        description="Texture maps to write, comma-separated, of color, albedo, roughness, "
        "metallic; empty: the panel's choice",
        options=_SKIP,
    )
    maps_model: StringProperty(
        name="Maps Model",
        description="The maps model for this run (Hub id, folder, 'random'); empty: the add-on "
        "preferences. Licence of the default: OpenRAIL++-M",
        options=_SKIP,
    )

    def maps_settings(self, context) -> dict:
        """The maps this run writes (the operator's, else the panel's), the maps model and
        the upscaler (the operator's, else the preferences')."""
        chosen = self.maps if self.properties.is_property_set("maps") else None
        chosen = chosen or tuple(_scene_settings(context).maps) or None
        given = {"maps_model": self.maps_model, "upscale_model": getattr(self, "upscale_model", "")}
        return {**preferences.auxiliary_settings(given, context), "maps": chosen}

    def setting(self, context, name: str):
        """The operator's value if the caller set it, else the scene's panel setting."""
        if self.properties.is_property_set(name) or not hasattr(_scene_settings(context), name):
            return getattr(self, name)
        return getattr(_scene_settings(context), name)

    def camera_name(self, context) -> str:
        settings = _scene_settings(context)
        if self.camera:
            return self.camera
        if settings.view_source == "CAMERA" and settings.camera is not None:
            return settings.camera.name
        return SCENE_CAMERA

    def viewport(self, context, resolution: int):
        """The viewport's own view when the panel says so and there is one (not headless)."""
        settings = _scene_settings(context)
        if self.camera or settings.view_source != "VIEWPORT" or context.region_data is None:
            return None
        region_3d = context.region_data
        if region_3d.view_perspective == "CAMERA" and context.scene.camera is not None:
            return None  # looking through the camera: the camera frame is what the user means
        return scene.viewport_view(context.region, region_3d, resolution)

    def settings(self, context, *names: str) -> dict:
        """The settings the panel and this operator give, by name, for the request builder:
        every number of this operator's groups, ``names``, the camera and the UV map."""
        keys = [*self._numbers(), *names, "uv_map"]
        values = {name: self.setting(context, name) for name in keys}
        values["camera"] = self.camera_name(context)
        return values

    def _numbers(self) -> list[str]:
        """The numbers this operator has (those of its groups), as registered."""
        registered = self.properties.bl_rna.properties
        return [key for key in defaults.LIMITS if key in registered]

    def viewport_for(self, context, values: dict):
        """The viewport's view when this run is a one-view run from it, else None."""
        resolution = check_setting("resolution", values["resolution"])
        if values.get("views", 1) > 1 or values.get("camera_collection"):
            return None
        return self.viewport(context, resolution)


def selected_targets(context) -> tuple[str, ...]:
    """The selected objects' names, each checked; a clear line when nothing is selected."""
    selected = list(context.selected_objects)
    if not selected:
        raise TextureError("Nothing is selected: select the mesh objects to texture.")
    for obj in selected:
        check_target(obj)
    return tuple(obj.name for obj in selected)


class SDT_OT_generate(_ViewOperator, bpy.types.Operator):
    """Generate a texture from the view's depth and a prompt, and bake it into the UV texture"""

    bl_idname = "sd_depth_texture.generate"
    bl_label = "Generate Texture"
    bl_options = {"UNDO"}

    __annotations__ = numbers(defaults.GENERATION, hard=False, options=_SKIP)
    prompt: StringProperty(name="Prompt", options=_SKIP)
    negative_prompt: StringProperty(name="Negative Prompt", options=_SKIP)
    scheduler: EnumProperty(
        name="Scheduler", items=SCHEDULER_ITEMS, default=defaults.SCHEDULER, options=_SKIP
    )
    model: StringProperty(
        name="Model",
        description="Model source for this run (Hub id, folder, .safetensors, 'random'); "
        "empty: the add-on preferences",
        options=_SKIP,
    )
    controlnet: StringProperty(
        name="ControlNet",
        description="Depth ControlNet for this run (Hub id, folder, .safetensors) with an SD 1.5 "
        "or SDXL model; empty: the add-on preferences",
        options=_SKIP,
    )
    depth_lora: StringProperty(
        name="FLUX Depth LoRA",
        description="With the FLUX.1-dev base as the model: its depth control LoRA "
        "(.safetensors or Hub id); empty: the add-on preferences",
        options=_SKIP,
    )
    view_prompts: BoolProperty(
        name="View Prompts",
        default=True,
        description="Append the view's direction to the prompt ('..., back view')",
        options=_SKIP,
    )
    match_colors: BoolProperty(
        name="Match Colours",
        default=True,
        description="Fit each view's colours to what the views before it painted",
        options=_SKIP,
    )
    camera_collection: StringProperty(
        name="Camera Collection",
        description="Paint from every camera in this collection instead of automatic views",
        options=_SKIP,
    )
    report_path: StringProperty(
        name="Report",
        subtype="FILE_PATH",
        description="Write a JSON report of the run here",
        options=_SKIP,
    )
    upscale_model: StringProperty(
        name="Upscale Model",
        description="The upscaler for this run's Upscale (Hub id, folder, 'random'); empty: "
        "the add-on preferences, else the factor's default",
        options=_SKIP,
    )
    loras: CollectionProperty(
        type=SDT_Lora,
        name="LoRAs",
        description="LoRAs for this run (path, scale); not given: the panel's list",
        options=_SKIP,
    )
    provenance: StringProperty(
        name="Provenance",
        description="'full' or 'minimal' (no prompts in the textures' records); empty: the "
        "add-on preferences. The AI marking is always written",
        options=_SKIP,
    )

    @classmethod
    def poll(cls, context) -> bool:
        if _busy(cls, context):
            return False
        found = dependencies.state()
        if not found.ready:
            cls.poll_message_set(found.poll_message())
            return False
        return True

    def collection_name(self, context, views: int) -> str:
        """The operator's collection if given; the panel's only where the panel shows it (its
        Views above 1) and this run has several views: a hidden choice is never used."""
        if self.properties.is_property_set("camera_collection"):
            return self.camera_collection
        settings = _scene_settings(context)
        if views > 1 and settings.views > 1 and settings.camera_collection is not None:
            return settings.camera_collection.name
        return ""

    def build_request(self, context) -> TextureRequest:
        """The request the operator's and the panel's settings make (reads no scene data)."""
        values = self.settings(
            context, "prompt", "negative_prompt", "scheduler", "view_prompts", "match_colors"
        )
        views = check_setting("views", values["views"])
        values["camera_collection"] = self.collection_name(context, views)
        values["report"] = (
            outputs.user_path(self.report_path, "the report") if self.report_path else None
        )
        values["keep_previous_files"] = True
        values["loras"] = lora_pairs(self.setting(context, "loras"))
        values.update(preferences.provenance_settings({"provenance": self.provenance}, context))
        values.update(self.maps_settings(context))
        return build_request(
            values,
            targets=selected_targets(context),
            model=preferences.model_spec(
                self.model or None,
                context,
                self.controlnet or None,
                depth_lora=self.depth_lora or None,
            ),
            viewport=self.viewport_for(context, values),
        )

    def execute(self, context):
        try:
            outcome = flow.prepare(self.build_request(context)).run()
        except TextureError as error:
            self.report({"ERROR"}, word(error, UI))
            return {"CANCELLED"}
        _run_state(context).coverage = min(outcome.coverage.values(), default=0.0)
        self.report({"INFO"}, outcome.summary())
        return {"FINISHED"}

    def invoke(self, context, _event):
        if not interactive(context):
            return self.execute(context)
        try:
            run = flow.prepare(self.build_request(context))
        except TextureError as error:
            self.report({"ERROR"}, word(error, UI))
            return {"CANCELLED"}
        self._runner = ModalRunner(run, _current_run_state)
        self._runner.start()
        self._timer = context.window_manager.event_timer_add(_TIMER_SECONDS, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        """Forward Esc and timer events to the runner; report its one message at the end."""
        if event.type == "ESC":
            if event.value == "PRESS":
                self._runner.cancel()
            return {"RUNNING_MODAL"}  # Esc is ours while a run is in flight
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        status = self._runner.tick()
        if status == RUNNING:
            return {"RUNNING_MODAL"}
        self._remove_timer(context)
        level = {FINISHED: "INFO", CANCELLED: "WARNING"}.get(status, "ERROR")
        self.report({level}, self._runner.message)
        return {"FINISHED"} if status == FINISHED else {"CANCELLED"}

    def cancel(self, context):
        """Blender removed the handler: stop the worker, drop the timer, free the panel."""
        self._runner.handler_removed()
        self._remove_timer(context)

    def _remove_timer(self, context) -> None:
        if getattr(self, "_timer", None) is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None


class SDT_OT_project_image(_ViewOperator, bpy.types.Operator):
    """Project an image you already have from the view onto the objects' UV textures"""

    bl_idname = "sd_depth_texture.project_image"
    bl_label = "Project Image"
    bl_options = {"UNDO"}

    filepath: StringProperty(name="Image", subtype="FILE_PATH", options=_SKIP)
    match_colors: BoolProperty(
        name="Match Colours",
        default=False,
        description="Fit the image's colours to what earlier views of the run painted",
        options=_SKIP,
    )

    @classmethod
    def poll(cls, context) -> bool:
        # A run in flight would overwrite this projection with what it read before it.
        return not _busy(cls, context)

    def execute(self, context):
        try:
            values = check_settings(self.settings(context))  # before the image is read
            values["keep_previous_files"] = True
            values["match_colors"] = self.match_colors  # the operator's own: off unless asked
            values.update(preferences.provenance_settings({}, context))
            values.update(self.maps_settings(context))
            viewport = self.viewport_for(context, values)
            names = selected_targets(context)
            if not self.filepath:
                raise TextureError("No image was chosen: pick the picture to project.")
            path = outputs.user_path(self.filepath, "the image")
            request = build_request(
                values,
                targets=names,
                pictures=(load_picture(path),),
                picture_sources=(path,),
                viewport=viewport,
            )
            outcome = flow.prepare(request).run()
        except TextureError as error:
            self.report({"ERROR"}, word(error, UI))
            return {"CANCELLED"}
        self.report({"INFO"}, outcome.summary())
        return {"FINISHED"}

    def invoke(self, context, _event):
        """Always ask which image: a click never silently re-projects an earlier file."""
        if not interactive(context):
            return self.execute(context)
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}


class SDT_OT_capture_depth(_ViewOperator, bpy.types.Operator):
    """Capture the view's depth map as the model would receive it (image 'SD Depth')"""

    bl_idname = "sd_depth_texture.capture_depth"
    bl_label = "Capture Depth"
    bl_options = {"REGISTER"}

    filepath: StringProperty(
        name="16-bit PNG",
        subtype="FILE_PATH",
        description="Also write it here (optional)",
        options=_SKIP,
    )

    def execute(self, context):
        try:
            values = self.settings(context)
            view = self.viewport_for(context, values)
            if view is None:
                view = flow.camera_view(values["camera"], values["resolution"])
            path = None
            if self.filepath:
                path, _ = outputs.plan_depth(
                    outputs.user_path(self.filepath, "the depth PNG"),
                    bpy.data.filepath or None,
                    False,
                    "ui",
                )
            seen = flow.read_view(view)
            if path is not None:
                write_whole(
                    path, lambda partial: images.save_depth_png(seen.depth, partial, context.scene)
                )
        except TextureError as error:
            self.report({"ERROR"}, word(error, UI))
            return {"CANCELLED"}
        kept = images.keep_depth(seen.depth)
        height, width = seen.depth.shape
        self.report({"INFO"}, f"Depth captured at {width}x{height} ({kept.name})")
        return {"FINISHED"}


class SDT_OT_free_model(bpy.types.Operator):
    """Release the loaded models (the generating one and the maps model) and their GPU memory"""

    bl_idname = "sd_depth_texture.free_model"
    bl_label = "Free Model"

    @classmethod
    def poll(cls, context) -> bool:
        return not _busy(cls, context)

    def execute(self, _context):
        import sys

        freed = False
        if "torch" in sys.modules:
            from ..core.diffusion.auxiliary import free_auxiliaries
            from ..core.diffusion.cache import free_pipeline

            freed = free_pipeline()
            freed = free_auxiliaries() or freed  # the maps model too
        self.report({"INFO"}, "Model released" if freed else "No model was loaded")
        return {"FINISHED"}


class SDT_OT_cancel(bpy.types.Operator):
    """Stop the running generation at its next step; the scene is left as it was"""

    bl_idname = "sd_depth_texture.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context) -> bool:
        return _run_state(context).running

    def execute(self, context):
        if not ModalRunner.active:  # a run that ended without telling the panel
            _run_state(context).running = False
            self.report({"INFO"}, "No generation was running")
            return {"CANCELLED"}
        for runner in list(ModalRunner.active):
            runner.cancel()
        return {"FINISHED"}


classes = (
    SDT_OT_generate,
    SDT_OT_project_image,
    SDT_OT_capture_depth,
    SDT_OT_free_model,
    SDT_OT_cancel,
)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)
_stopped_by_load = False


@persistent
def _stop_runs_before_load(*_args) -> None:
    """A file is about to replace this one: end every run while its scene still exists."""
    global _stopped_by_load
    _stopped_by_load = ModalRunner.stop_all() > 0


@persistent
def _tell_the_new_file(*_args) -> None:
    """The new file's panel says why the run it may have shown is gone."""
    global _stopped_by_load
    if _stopped_by_load:
        _current_run_state().status = STOPPED_MESSAGE
        _stopped_by_load = False


def register() -> None:
    _register_classes()
    bpy.app.handlers.load_pre.append(_stop_runs_before_load)
    bpy.app.handlers.load_post.append(_tell_the_new_file)


def unregister() -> None:
    ModalRunner.stop_all("The add-on was disabled: the run was stopped and nothing applied")
    for handlers, handler in (
        (bpy.app.handlers.load_post, _tell_the_new_file),
        (bpy.app.handlers.load_pre, _stop_runs_before_load),
    ):
        if handler in handlers:
            handlers.remove(handler)
    _unregister_classes()
