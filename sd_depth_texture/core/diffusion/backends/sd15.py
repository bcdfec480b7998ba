"""Stable Diffusion 1.5 with a depth ControlNet (``StableDiffusionControlNetPipeline``).

No bpy. The base is any SD 1.5 text-to-image model (``--model``), the depth reaches it through a
ControlNet (``--controlnet``, e.g. ``lllyasviel/control_v11f1p_sd15_depth``) as an RGB control
image in [0, 1] with near = white. The pipeline starts from pure noise by itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from diffusers import StableDiffusionControlNetPipeline

from ...errors import TextureError
from ..settings import GenerationSettings
from . import register
from .base import Backend, Recommended, control_image

#: A text-to-image UNet: 4 latent channels (9 is an inpainting model, 5 SD2-depth).
LATENT_CHANNELS = 4


class ControlNetBackend(Backend):
    """What the depth-ControlNet families share: the control image and its scale and span."""

    def check_base(self, folder: Path, unet_config: dict[str, Any]) -> None:
        channels = unet_config.get("in_channels")
        if channels != LATENT_CHANNELS:
            raise TextureError(
                f"{folder} is not a {self.label} text-to-image model (its UNet takes {channels} "
                f"input channels, not {LATENT_CHANNELS})"
            )

    def conditioning(self, pipe, depth: np.ndarray, settings: GenerationSettings) -> dict[str, Any]:
        return {
            "image": control_image(depth),
            "controlnet_conditioning_scale": float(settings.conditioning_scale),
            "control_guidance_start": float(settings.control_start),
            "control_guidance_end": float(settings.control_end),
        }


class SD15ControlNet(ControlNetBackend):
    name = "sd15-controlnet"
    label = "Stable Diffusion 1.5"
    pipeline_class = StableDiffusionControlNetPipeline
    base_classes = frozenset(
        {
            "StableDiffusionPipeline",
            "StableDiffusionControlNetPipeline",
            "StableDiffusionImg2ImgPipeline",
            "StableDiffusionControlNetImg2ImgPipeline",
        }
    )
    controlnet_kind = "sd"
    licence = "creativeml-openrail-m"
    recommended = Recommended(25, 7.5, "dpmpp")

    def extra_parts(self) -> dict[str, Any]:
        # The safety checker is a separate model the add-on never runs (nor downloads).
        return {
            "safety_checker": None,
            "feature_extractor": None,
            "image_encoder": None,
            "requires_safety_checker": False,
        }


SD15_CONTROLNET = register(SD15ControlNet())
