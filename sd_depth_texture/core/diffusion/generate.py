"""Generate one view from a depth map with a loaded SD2-depth pipeline.

No bpy. Inputs are checked before the pipeline runs: its depth normalisation has no epsilon, so a
constant or non-finite map would silently give a NaN picture. Progress and cancel go through
:class:`~sd_depth_texture.core.progress.Progress` after every denoising step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from diffusers import StableDiffusionDepth2ImgPipeline
from diffusers.utils.torch_utils import randn_tensor

from ..errors import TextureError
from ..progress import Progress
from .device import out_of_memory
from .schedulers import make_scheduler
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


def checked_picture(images: Any) -> np.ndarray:
    """The first of a pipeline's ``np`` images as float32 (H, W, 3), refused when broken (NaN
    or all black: fp16 overflow or damaged weights) rather than baked."""
    result = np.ascontiguousarray(np.asarray(images)[0], dtype=np.float32)
    if not np.isfinite(result).all():
        raise TextureError(
            "The model produced an invalid image (NaN values): try fp32 precision or another "
            "model; the weights may be broken"
        )
    if float(result.max()) < _MIN_MAX_VALUE:
        raise TextureError(
            "The model produced an invalid image (all black): try fp32 precision or another model"
        )
    return result


def _placeholder_image(height: int, width: int) -> torch.Tensor:
    """The pipeline insists on an ``image``; without an init image it only sets the size."""
    return torch.zeros((1, 3, height, width), dtype=torch.float32)


@contextmanager
def _pure_noise_start(pipe: StableDiffusionDepth2ImgPipeline) -> Iterator[None]:
    """Start from pure noise for this call: no VAE encode and no placeholder image leaking in.

    The stock ``prepare_latents`` always encodes ``image`` and mixes ~8 % of it into the start
    latent even at strength 1 (sqrt(alpha_bar) of the first timestep).
    """

    def prepare_latents(
        image: torch.Tensor,
        timestep: torch.Tensor,
        batch_size: int,
        num_images_per_prompt: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        scale = pipe.vae_scale_factor
        shape = (
            batch_size * num_images_per_prompt,
            pipe.vae.config.latent_channels,
            image.shape[-2] // scale,
            image.shape[-1] // scale,
        )
        noise = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        return noise * pipe.scheduler.init_noise_sigma

    had_own = "prepare_latents" in vars(pipe)
    previous = vars(pipe).get("prepare_latents")
    object.__setattr__(pipe, "prepare_latents", prepare_latents)
    try:
        yield
    finally:
        if had_own:
            object.__setattr__(pipe, "prepare_latents", previous)
        else:
            object.__delattr__(pipe, "prepare_latents")


def _step_end(
    progress: Progress | None, on_latents: LatentsHook | None
) -> Callable[[StableDiffusionDepth2ImgPipeline, int, Any, dict[str, Any]], dict[str, Any]]:
    """The pipeline's per-step callback: replace latents, report the step, stop if cancelled."""

    def step_end(
        pipeline: StableDiffusionDepth2ImgPipeline, index: int, _t: Any, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
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
    pipe: StableDiffusionDepth2ImgPipeline,
    depth: np.ndarray,
    settings: GenerationSettings,
    *,
    init_image: np.ndarray | None = None,
    progress: Progress | None = None,
    on_latents: LatentsHook | None = None,
) -> np.ndarray:
    """Generate one (H, W, 3) float32 sRGB image in [0, 1] (row 0 = top) following ``depth``.

    Args:
        pipe: a loaded pipeline (:func:`~.cache.load_pipeline`).
        depth: (H, W) float32 in [0, 1], near = bright, H and W multiples of 8.
        settings: prompt, seed, steps, guidance, scheduler and (with an init image) strength.
        init_image: (H, W, 3) in [0, 1]: img2img at ``settings.strength``; without it the run
            starts from pure noise.
        progress: after every step ``progress.update(done / total, "Step done/total")``, then
            ``progress.check()``, which raises ``CancelledError`` once cancelled.
        on_latents: ``on_latents(steps_done, latents)`` may return replacement latents of the
            same shape after every step (see :func:`~.kept_regions.keep_regions_hook`).
    """
    # 1. Check every input before the model runs.
    validate_settings(settings, has_init_image=init_image is not None)
    depth = validate_depth(depth)
    height, width = depth.shape
    if init_image is not None:
        image = _validate_init_image(init_image, (height, width))
        image_tensor = torch.from_numpy(image.transpose(2, 0, 1)[None].copy())
        strength = float(settings.strength)
    else:
        image_tensor = _placeholder_image(height, width)
        strength = 1.0
    if progress is not None:
        progress.check("before the first step")

    # 2. Scheduler, seed and the pipeline's arguments.
    pipe.scheduler = make_scheduler(pipe, settings.scheduler)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator(device="cpu").manual_seed(int(settings.seed))
    call = {
        "prompt": settings.prompt,
        "negative_prompt": settings.negative_prompt or None,
        "image": image_tensor,
        "depth_map": torch.from_numpy(depth[None].copy()),
        "strength": strength,
        "num_inference_steps": int(settings.steps),
        "guidance_scale": float(settings.guidance),
        "generator": generator,
        "output_type": "np",
        "callback_on_step_end": _step_end(progress, on_latents),
        "callback_on_step_end_tensor_inputs": ["latents"],
    }

    # 3. Denoise.
    started = time.perf_counter()
    with out_of_memory(f"generating a {width}x{height} image"):
        if init_image is None:
            with _pure_noise_start(pipe):
                images = pipe(**call).images
        else:
            images = pipe(**call).images

    # 4. Refuse a broken picture rather than baking it.
    result = checked_picture(images)
    logger.info(
        "Generated %dx%d in %.1f s (%d steps, %s, seed %d)",
        width,
        height,
        time.perf_counter() - started,
        settings.steps,
        settings.scheduler,
        settings.seed,
    )
    return result
