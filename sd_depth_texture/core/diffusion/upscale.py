"""Each view's picture upscaled before it is projected, tile by tile (no bpy).

A texel gets at most what a view's pixels hold: at 512^2 per view on a 2048^2 texture most
texels are interpolated. diffusers' upscalers add detail conditioned on the same prompt:
``StableDiffusionLatentUpscalePipeline`` (x2) and ``StableDiffusionUpscalePipeline`` (x4). The
picture goes through them in overlapping tiles of a fixed input size, so memory stays bounded
whatever the picture's size, and the tiles are joined with weights that fade linearly across
each overlap, so no tile's border shows. The picture is padded (edges repeated) to whole tiles
of the size the models need and cropped back.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch

from ...defaults import GUIDANCE, STEPS
from ..progress import Progress
from .device import out_of_memory
from .settings import GenerationSettings

logger = logging.getLogger(__name__)

#: Input tile side per factor: the x2 upscaler's native input (512 -> 1024), and a 256 input
#: for the x4 (1024 out), which its attention holds in a few GB at fp16.
TILE = {2: 512, 4: 256}
OVERLAP = 32  # input pixels two neighbouring tiles share
#: Tile sides must be whole multiples of this: the x2 model encodes to 1/8 and its UNet halves
#: that three times after doubling it; the x4 model's UNet halves the picture twice.
ALIGN = {2: 32, 4: 8}


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where tiles of ``tile`` start along a side of ``length`` (>= tile), overlapping by at
    least ``overlap``, the last one flush with the end."""
    if length <= tile:
        return [0]
    step = max(tile - overlap, 1)
    starts = list(range(0, length - tile, step))
    return [*starts, length - tile]


def _ramp(length: int, fade: int) -> np.ndarray:
    """1 inside, falling linearly to near 0 over ``fade`` pixels at both ends."""
    position = np.arange(length, dtype=np.float32)
    distance = np.minimum(position + 0.5, length - position - 0.5)
    return np.clip(distance / max(fade, 1), 1e-3, 1.0)


def upscale_picture(
    pipe,
    picture: np.ndarray,
    factor: int,
    settings: GenerationSettings,
    *,
    tile: int | None = None,
    overlap: int = OVERLAP,
    progress: Progress | None = None,
) -> np.ndarray:
    """``picture`` (H, W, 3) in [0, 1] upscaled ``factor`` times, (H * f, W * f, 3) float32.

    Conditioned on ``settings``' prompt and negative prompt, with its steps, guidance and seed
    (each tile's seed offset by its number). ``tile``: the input tile side (default
    :data:`TILE`); ``progress`` hears of each step and is checked between steps.
    """
    progress = progress or Progress()
    settings = dataclasses.replace(  # unset (a script's call): the upscalers' usual values
        settings,
        steps=int(STEPS.default) if settings.steps is None else settings.steps,
        guidance=GUIDANCE.default if settings.guidance is None else settings.guidance,
    )
    height, width = picture.shape[:2]
    align = ALIGN[factor]
    side = max(align, (tile or TILE[factor]) // align * align)
    padded_height, padded_width = (-(-length // align) * align for length in (height, width))
    tile_height, tile_width = min(side, padded_height), min(side, padded_width)
    padded = np.pad(
        np.asarray(picture[..., :3], dtype=np.float32),
        ((0, padded_height - height), (0, padded_width - width), (0, 0)),
        mode="edge",
    )
    rows = tile_starts(padded_height, tile_height, overlap)
    cols = tile_starts(padded_width, tile_width, overlap)
    total = len(rows) * len(cols)
    out = np.zeros((padded_height * factor, padded_width * factor, 3), dtype=np.float32)
    weight_sum = np.zeros((padded_height * factor, padded_width * factor, 1), dtype=np.float32)
    weight = (
        _ramp(tile_height * factor, overlap * factor)[:, None]
        * _ramp(tile_width * factor, overlap * factor)[None, :]
    )[..., None]
    extra = {"noise_level": 20} if factor == 4 else {}
    number = 0
    for top in rows:
        for left in cols:
            progress.check("between upscaling tiles")
            piece = padded[top : top + tile_height, left : left + tile_width]
            image = torch.from_numpy(np.ascontiguousarray(piece)).permute(2, 0, 1)[None]

            def step_done(step: int, _timestep, _latents, number=number) -> None:
                progress.update((number + (step + 1) / max(settings.steps, 1)) / total)
                progress.check("while upscaling")

            generator = torch.Generator(device="cpu").manual_seed(settings.seed + number)
            with out_of_memory(f"upscaling the picture x{factor}"), torch.inference_mode():
                result = pipe(
                    prompt=settings.prompt, negative_prompt=settings.negative_prompt or None,
                    image=image, num_inference_steps=settings.steps,
                    guidance_scale=settings.guidance, generator=generator, output_type="np",
                    callback=step_done, callback_steps=1, **extra,
                ).images[0]  # fmt: skip
            rows_out = slice(top * factor, (top + tile_height) * factor)
            cols_out = slice(left * factor, (left + tile_width) * factor)
            out[rows_out, cols_out] += np.asarray(result, dtype=np.float32) * weight
            weight_sum[rows_out, cols_out] += weight
            number += 1
    out /= weight_sum
    logger.info("Upscaled %dx%d x%d in %d tiles", width, height, factor, total)
    return np.clip(out[: height * factor, : width * factor], 0.0, 1.0)
