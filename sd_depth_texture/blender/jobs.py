"""Glue shared by the operators and the command line: views, targets, the model, pictures.

The diffusion modules (torch, diffusers) are imported only when a model is actually needed, so
depth capture and image projection work in a Blender without them.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable

import bpy
import numpy as np

from ..core.errors import TextureError
from ..core.geometry.views import View
from ..core.progress import Progress
from . import engine, images, scene

log = logging.getLogger(__name__)

ADDON_ID = __package__.rpartition(".")[0]
# An image whose aspect differs from the view's by more than this would be projected stretched.
ASPECT_TOLERANCE = 0.01
_STEP = re.compile(r"Step (?P<done>\d+)/(?P<total>\d+)")


def camera_view(context, camera_name: str, resolution: int) -> View:
    camera = scene.find_camera(context.scene, camera_name or None)
    return scene.camera_view(context.scene, camera, context.evaluated_depsgraph_get(), resolution)


def viewport_view(context, resolution: int) -> View:
    region_3d = context.region_data
    if region_3d.view_perspective == "CAMERA" and context.scene.camera is not None:
        # Looking through the camera: the camera frame is what the user means, not the region.
        return camera_view(context, "", resolution)
    return scene.viewport_view(context.region, region_3d, resolution)


def selected_targets(context) -> list[bpy.types.Object]:
    """The selected objects, each checked; a clear error when nothing is selected."""
    selected = list(context.selected_objects)
    if not selected:
        raise TextureError("Nothing is selected: select the mesh objects to texture.")
    for obj in selected:
        engine.check_target(obj)
    return selected


def preferences(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


def default_cache_dir() -> str | None:
    """Models live in the extension's own user folder, never inside the add-on."""
    try:
        return bpy.utils.extension_path_user(ADDON_ID, path="models", create=True)
    except (ValueError, RuntimeError):  # loaded as a plain module, not as an extension
        return None


def model_spec(context=None, source: str | None = None):
    """The model to use: the given source, else the add-on preferences, else the default."""
    from ..core.diffusion.settings import ModelSpec
    from ..defaults import MODEL_ID

    prefs = preferences(context)
    source = source or (prefs.model_source if prefs else "") or MODEL_ID
    return ModelSpec(
        source=bpy.path.abspath(source) if source.startswith("//") else source,
        config=(bpy.path.abspath(prefs.model_config) or None) if prefs else None,
        device=prefs.device if prefs else "auto",
        precision=prefs.precision if prefs else "auto",
        cache_dir=(prefs.cache_dir if prefs and prefs.cache_dir else default_cache_dir()),
        allow_online=bool(bpy.app.online_access),
    )


def generation_settings(values: dict):
    from ..core.diffusion.settings import GenerationSettings

    if not str(values.get("prompt", "")).strip():
        raise TextureError("The prompt is empty: describe the texture you want.")
    return GenerationSettings(
        prompt=values["prompt"],
        negative_prompt=values.get("negative_prompt", ""),
        seed=int(values.get("seed", 0)),
        steps=int(values.get("steps", 20)),
        guidance=float(values.get("guidance", 7.5)),
        scheduler=values.get("scheduler", "dpmpp"),
    )


class _CallbackProgress(Progress):
    """The callbacks the doors pass today, behind the one Progress protocol of the core."""

    def __init__(self, should_cancel: Callable[[], bool] | None, on_change) -> None:
        super().__init__(on_change)
        self.should_cancel = should_cancel

    def check(self, doing: str = "") -> None:
        if self.should_cancel is not None and self.should_cancel():
            self.cancel()
        super().check(doing)


def _load_progress(on_load, should_cancel) -> Progress:
    """Loading (and downloading) reported as ``on_load(message, fraction)``."""
    return _CallbackProgress(
        should_cancel, (lambda f, m: on_load(m, f)) if on_load is not None else None
    )


def _step_progress(on_step, should_cancel) -> Progress:
    """Denoising reported as ``on_step(done, total)``, read from the "Step done/total" line."""

    def on_change(_fraction: float, message: str) -> None:
        step = _STEP.fullmatch(message)
        if on_step is not None and step is not None:
            on_step(int(step["done"]), int(step["total"]))

    return _CallbackProgress(should_cancel, on_change)


def diffusion_picture(
    spec,
    settings,
    on_step: Callable[[int, int], None] | None = None,
    *,
    should_cancel: Callable[[], bool] | None = None,
    on_load: Callable[[str, float], None] | None = None,
) -> Callable[[engine.Prepared], np.ndarray]:
    """A stage-2 function that runs SD2-depth on the prepared depth map (no Blender data used)."""
    from ..core.diffusion import cache, generate

    def make(prepared: engine.Prepared) -> np.ndarray:
        pipe = cache.load_pipeline(spec, _load_progress(on_load, should_cancel))
        return generate.generate(
            pipe, prepared.depth, settings, progress=_step_progress(on_step, should_cancel)
        )

    return make


def diffusion_views(
    spec,
    settings,
    view_prompts: bool = True,
    on_step: Callable[[int, int], None] | None = None,
    *,
    should_cancel: Callable[[], bool] | None = None,
    on_load: Callable[[str, float], None] | None = None,
):
    """A whole-object picture maker: SD2-depth per view, holding what earlier views painted.

    Each view gets its own seed (base seed + view number) and, with ``view_prompts``, its
    direction appended to the prompt ("..., back view").
    """
    import dataclasses

    from ..core.diffusion import cache, generate
    from ..core.diffusion.kept_regions import keep_regions_hook

    def make(request) -> np.ndarray:
        pipe = cache.load_pipeline(spec, _load_progress(on_load, should_cancel))
        prompt = settings.prompt
        if view_prompts and request.prompt_hint:
            prompt = f"{prompt}, {request.prompt_hint}"
        view_settings = dataclasses.replace(
            settings, prompt=prompt, seed=settings.seed + request.index
        )
        hook = None
        if request.keep.any():
            hook = keep_regions_hook(pipe, request.known, request.keep, view_settings.seed)
        return generate.generate(
            pipe, request.depth, view_settings,
            progress=_step_progress(on_step, should_cancel), on_latents=hook,
        )  # fmt: skip

    return make


def texture_work(
    context_scene,
    view_layer,
    objects: list | None,
    *,
    spec,
    settings,
    options: engine.Options,
    view: View | None = None,
    views: int = 1,
    camera_collection: str = "",
    view_prompts: bool = True,
    resolution: int = 512,
    report_path: str | None = None,
    on_step: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_load: Callable[[str, float], None] | None = None,
    on_view: Callable[[int, int, str], None] | None = None,
) -> engine.Work:
    """A prepared diffusion run, one view or whole objects: what every door asks for.

    With ``views`` > 1 or a camera collection, each object is painted all around (``objects``
    None: every visible mesh); otherwise ``view`` paints what it sees.
    """
    from . import whole

    if views > 1 or camera_collection:
        make = diffusion_views(
            spec, settings, view_prompts, on_step, should_cancel=should_cancel, on_load=on_load
        )
        if objects is None:
            objects = scene.visible_meshes(context_scene, view_layer)
        return whole.whole_object_work(
            context_scene, view_layer, objects,
            views_for(context_scene, views, camera_collection, resolution), make, options,
            report_path=report_path, on_view=on_view,
        )  # fmt: skip
    if view is None:
        raise TextureError("A single-view run needs a view: a camera or the viewport.")
    make = diffusion_picture(spec, settings, on_step, should_cancel=should_cancel, on_load=on_load)
    return engine.single_view_work(context_scene, view_layer, view, objects, make, options)


def views_for(context_scene, count: int, collection: str, resolution: int):
    """Where a whole-object run paints from: the collection's cameras, or an orbit per object."""
    from . import whole

    if collection:
        cameras = whole.camera_views(collection, context_scene, resolution)
        return lambda _obj, _mesh: cameras
    return lambda obj, mesh: whole.orbit_for(obj, count, resolution, mesh)


def fixed_pictures(pictures: list[np.ndarray]):
    """A whole-object picture maker for images the user has, one per view, in view order."""

    def make(request) -> np.ndarray:
        return pictures[request.index]

    return make


def check_aspect(picture: np.ndarray, view: View) -> None:
    """Refuse a picture whose proportions differ from the view's: it would land stretched."""
    view_aspect = view.width / view.height
    aspect = picture.shape[1] / picture.shape[0]
    if abs(aspect / view_aspect - 1.0) > ASPECT_TOLERANCE:
        raise TextureError(
            f"The image's aspect ({aspect:.3f}) differs from the view's ({view_aspect:.3f}): "
            "set the render resolution to the image's proportions."
        )


def fixed_picture(picture: np.ndarray) -> Callable[[engine.Prepared], np.ndarray]:
    """A stage-2 function for an image the user already has; its aspect must match the view's."""

    def make(prepared: engine.Prepared) -> np.ndarray:
        check_aspect(picture, prepared.view)
        return picture

    return make


def load_picture(path: str) -> np.ndarray:
    """Read an image file as (H, W, 3) sRGB float32, leaving no image behind in the .blend."""
    if not os.path.isfile(path):
        raise TextureError(f"There is no image file at '{path}'.")
    try:
        image = bpy.data.images.load(path, check_existing=False)
    except RuntimeError as error:
        raise TextureError(
            f"'{os.path.basename(path)}' is not an image Blender can read."
        ) from error
    try:
        if image.size[0] == 0 or image.size[1] == 0 or not image.has_data:
            raise TextureError(f"'{os.path.basename(path)}' is not an image Blender can read.")
        pixels = images.image_to_array(image)[..., :3]
        if image.is_float and image.colorspace_settings.name not in ("sRGB", "Non-Color"):
            pixels = linear_to_srgb(pixels)
    finally:
        bpy.data.images.remove(image)
    return np.clip(pixels, 0.0, 1.0)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """The sRGB transfer function, so float images are blended in the same space as 8-bit ones."""
    linear = np.clip(linear, 0.0, None)
    return np.where(
        linear <= 0.0031308, linear * 12.92, 1.055 * np.power(linear, 1 / 2.4) - 0.055
    ).astype(np.float32)


def free_model() -> bool:
    if "torch" not in sys.modules:
        return False
    from ..core.diffusion.cache import free_pipeline

    return free_pipeline()


def model_status() -> str:
    if "torch" not in sys.modules:
        return "not loaded"
    from ..core.diffusion.cache import pipeline_status

    return pipeline_status()


class TerminalProgress:
    """One self-overwriting progress line on stderr, for blocking runs."""

    width = 30

    def __init__(self) -> None:
        self.open = False

    def _write(self, text: str, done: bool) -> None:
        sys.stderr.write("\r  " + text + ("\n" if done else ""))
        sys.stderr.flush()
        self.open = not done

    def step(self, done: int, total: int) -> None:
        filled = int(self.width * done / max(total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        self._write(f"[{bar}] step {done}/{total}", done >= total)

    def message(self, text: str, fraction: float) -> None:
        self._write(f"{text} ({fraction:.0%})".ljust(60), fraction >= 1.0)

    def close(self) -> None:
        """End an unfinished line so the next message starts on its own."""
        if self.open:
            self._write("", True)


TERMINAL = TerminalProgress()
