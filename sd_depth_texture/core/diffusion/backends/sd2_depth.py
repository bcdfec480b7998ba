"""Stable Diffusion 2 depth (``StableDiffusionDepth2ImgPipeline``): the UNet takes the depth map
as a fifth input channel. The add-on's default family.

No bpy. Its ``prepare_latents`` always VAE-encodes ``image`` and mixes ~8 % of it into the start
even at strength 1, so a run without an init image swaps it for pure noise for the call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import StableDiffusionDepth2ImgPipeline
from diffusers.utils.torch_utils import randn_tensor

from ....defaults import MODEL_LICENCE
from ...errors import TextureError
from ..settings import GenerationSettings
from . import register
from .base import Backend, Recommended

_DEPTH_CHANNELS = 5  # 4 latent + 1 depth


class SD2Depth(Backend):
    name = "sd2-depth"
    label = "SD2-depth"
    pipeline_class = StableDiffusionDepth2ImgPipeline
    base_classes = frozenset({"StableDiffusionDepth2ImgPipeline"})
    licence = MODEL_LICENCE
    recommended = Recommended(20, 7.5, "dpmpp")
    image_to_image = True

    def check_base(self, folder: Path, unet_config: dict[str, Any]) -> None:
        if unet_config.get("in_channels") != _DEPTH_CHANNELS:
            raise TextureError(
                f"{folder} is not a Stable Diffusion 2 depth model (its UNet takes "
                f"{unet_config.get('in_channels')} input channels, the depth model takes 5)"
            )

    def extra_parts(self) -> dict[str, Any]:
        # With depth_map given, the MiDaS estimator (~490 MB) is never used.
        return {"depth_estimator": None, "feature_extractor": None}

    def conditioning(self, pipe, depth: np.ndarray, settings: GenerationSettings) -> dict[str, Any]:
        return {"depth_map": torch.from_numpy(depth[None].copy())}

    def start(
        self, pipe, height: int, width: int, init_image: torch.Tensor | None, strength: float
    ) -> dict[str, Any]:
        if init_image is None:
            return {"image": _placeholder_image(height, width), "strength": 1.0}
        return {"image": init_image, "strength": strength}

    @contextlib.contextmanager
    def pure_noise(self, pipe: StableDiffusionDepth2ImgPipeline) -> Iterator[None]:
        """Start from pure noise for this call: no VAE encode, no placeholder image leaking in."""

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


def _placeholder_image(height: int, width: int) -> torch.Tensor:
    """The pipeline insists on an ``image``; without an init image it only sets the size."""
    return torch.zeros((1, 3, height, width), dtype=torch.float32)


SD2_DEPTH = register(SD2Depth())
