"""Generate one view from a depth map with a loaded pipeline of any backend.

No bpy. What differs per model family (the depth's conditioning, the start, sizes, latent
layout) is asked of the pipeline's backend (:mod:`.backends`); nothing here names a family.
Inputs are checked before the pipeline runs: SD2's depth normalisation has no epsilon, so a
constant or non-finite map would silently give a NaN picture. Progress and cancel go through
:class:`~sd_depth_texture.core.progress.Progress` after every denoising step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..errors import TextureError
from ..progress import Progress
from .backends import backend_of
from .backends.base import resize
from .device import out_of_memory
from .settings import GenerationSettings, validate_settings

logger = logging.getLogger(__name__)

#: Replaces the latents after a step: ``on_latents(steps_done, latents) -> latents``.
LatentsHook = Callable[[int, torch.Tensor], torch.Tensor]

_MIN_DEPTH_RANGE = 1e-3
_MIN_MAX_VALUE = 1.0 / 255.0


def validate_depth(depth: np.ndarray) -> np.ndarray:
    """Check the depth map and return it as contiguous float32 (H, W).

    The pipeline min-max normalises depth with no epsilon, so a constant map or one non-finite
    pixel turns the whole image into NaN without an error: refuse those here.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise TextureError(f"The depth map must be a 2D (H, W) array, got shape {depth.shape}")
    height, width = depth.shape
    if height < 8 or width < 8 or height % 8 or width % 8:
        raise TextureError(f"Depth map size {width}x{height} must be a positive multiple of 8")
    if not np.issubdtype(depth.dtype, np.floating):
        raise TextureError(f"The depth map must be floating point, got {depth.dtype}")
    depth = np.ascontiguousarray(depth, dtype=np.float32)
    if not np.isfinite(depth).all():
        raise TextureError("The depth map contains NaN or infinite values")
    low, high = float(depth.min()), float(depth.max())
    if low < 0.0 or high > 1.0:
        raise TextureError(f"Depth values must be in [0, 1], got [{low:.4g}, {high:.4g}]")
    if high - low < _MIN_DEPTH_RANGE:
        raise TextureError("The depth map is (nearly) constant: nothing for the model to follow")
    return depth


def _validate_init_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.shape[:2] != shape:
        raise TextureError(
            f"The init image must be (H, W, 3) matching the depth map {shape}, got {image.shape}"
        )
    image = np.ascontiguousarray(image[..., :3], dtype=np.float32)
    if not np.isfinite(image).all():
        raise TextureError("The init image contains NaN or infinite values")
    if float(image.min()) < 0.0 or float(image.max()) > 1.0:
        raise TextureError("Init image values must be in [0, 1]")
    return image


def _step_end(
    progress: Progress | None, on_latents: LatentsHook | None
) -> Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]:
    """The pipeline's per-step callback: replace latents, report the step, stop if cancelled."""

    def step_end(pipeline: Any, index: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        done, total = index + 1, pipeline.num_timesteps
        latents = kwargs["latents"]
        if on_latents is not None:
            replaced = on_latents(done, latents)
            if replaced is not None:
                if replaced.shape != latents.shape:
                    raise TextureError(
                        f"on_latents returned shape {tuple(replaced.shape)}, "
                        f"expected {tuple(latents.shape)}"
                    )
                latents = replaced.to(device=latents.device, dtype=latents.dtype)
        if progress is not None:
            progress.update(done / total, f"Step {done}/{total}")
            progress.check(f"after {done} of {total} steps")
        return {"latents": latents}

    return step_end


def generate(
    pipe: Any,
    depth: np.ndarray,
    settings: GenerationSettings,
    *,
    init_image: np.ndarray | None = None,
    progress: Progress | None = None,
    on_latents: LatentsHook | None = None,
    kept: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Generate one (H, W, 3) float32 sRGB image in [0, 1] (row 0 = top) following ``depth``.

    Args:
        pipe: a loaded pipeline (:func:`~.cache.load_model`) of any registered backend.
        depth: (H, W) float32 in [0, 1], near = bright, H and W multiples of 8.
        settings: prompt, seed, steps, guidance, scheduler, the ControlNet's scale and span
            (where the backend has one) and (with an init image) strength.
        init_image: (H, W, 3) in [0, 1]: img2img at ``settings.strength`` (backends with
            ``image_to_image``); without it the run starts from pure noise.
        progress: after every step ``progress.update(done / total, "Step done/total")``, then
            ``progress.check()``, which raises ``CancelledError`` once cancelled.
        on_latents: ``on_latents(steps_done, latents) -> latents`` after every step, in the
            pipeline's own latent layout and generation size.
        kept: ``(known, keep)``: hold ``known`` (H, W, 3) where ``keep`` (H, W) is 1 (what
            earlier views painted; :func:`~.kept_regions.keep_regions_hook`), at whatever size
            the backend generates.
    """
    # 1. Check every input before the model runs.
    backend = backend_of(pipe)
    settings = backend.settle(settings)
    validate_settings(settings, has_init_image=init_image is not None)
    backend.check_settings(settings)
    depth = validate_depth(depth)
    height, width = depth.shape
    multiple = backend.size_multiple(pipe)
    if height % multiple or width % multiple:
        raise TextureError(
            f"Depth map size {width}x{height} must be a multiple of {multiple} for {backend.label}"
        )
    size = backend.generation_size(pipe, height, width)
    image_tensor = None
    if init_image is not None:
        image = _validate_init_image(init_image, (height, width))
        image_tensor = resize(torch.from_numpy(image.transpose(2, 0, 1)[None].copy()), *size)
    if on_latents is not None and kept is not None:
        raise TextureError("Give generate() either on_latents or kept, not both")
    if kept is not None:
        from .kept_regions import keep_regions_hook

        known, keep = (_as_size(array, size) for array in kept)
        on_latents = keep_regions_hook(pipe, known, keep, int(settings.seed))
    if progress is not None:
        progress.check("before the first step")

    # 2. Scheduler, seed and the pipeline's arguments.
    pipe.scheduler = backend.scheduler(pipe, settings.scheduler)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator(device="cpu").manual_seed(int(settings.seed))
    call = {
        **backend.text_arguments(pipe, settings),
        "num_inference_steps": int(settings.steps),
        "generator": generator,
        "output_type": "np",
        "callback_on_step_end": _step_end(progress, on_latents),
        "callback_on_step_end_tensor_inputs": ["latents"],
        **backend.conditioning(pipe, _as_size(depth, size), settings),
        **backend.start(pipe, *size, image_tensor, float(settings.strength)),
    }

    # 3. Denoise.
    started = time.perf_counter()
    with out_of_memory(f"generating a {size[1]}x{size[0]} image"):
        if init_image is None:
            with backend.pure_noise(pipe):
                images = pipe(**call).images
        else:
            images = pipe(**call).images

    # 4. Refuse a broken picture rather than baking it.
    result = np.asarray(images)[0]
    if result.shape[:2] != (height, width):
        result = _as_size(result, (height, width))
    result = np.ascontiguousarray(result, dtype=np.float32)
    if not np.isfinite(result).all():
        raise TextureError(
            "The model produced an invalid image (NaN values): try fp32 precision or another "
            "model; the weights may be broken"
        )
    if float(result.max()) < _MIN_MAX_VALUE:
        raise TextureError(
            "The model produced an invalid image (all black): try fp32 precision or another model"
        )
    logger.info(
        "Generated %dx%d with %s in %.1f s (%d steps, %s, seed %d)",
        size[1],
        size[0],
        backend.name,
        time.perf_counter() - started,
        settings.steps,
        backend.own_scheduler or settings.scheduler,
        settings.seed,
    )
    return result


def _as_size(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An (H, W) or (H, W, C) float array resized to ``size`` (unchanged when it fits)."""
    if array.shape[:2] == tuple(size):
        return array
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    grid = tensor[None, None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)[None]
    out = resize(grid, *size)[0]
    out = out[0] if tensor.ndim == 2 else out.permute(1, 2, 0)
    return np.ascontiguousarray(out.clamp(0.0, 1.0).numpy())
