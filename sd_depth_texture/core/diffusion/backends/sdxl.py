"""SDXL with a depth ControlNet (``StableDiffusionXLControlNetPipeline``) or a union ControlNet
(``ControlNetUnionModel``, ``StableDiffusionXLControlNetUnionPipeline``, depth control mode).

No bpy. SDXL has two text encoders and is trained at 1024: a smaller view is generated at the
native size (the UNet's sample size times the VAE factor) and scaled back to the view's size.
Its VAE overflows in fp16, so the kept-region encode runs it in fp32 (``force_upcast``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from diffusers import StableDiffusionXLControlNetPipeline, StableDiffusionXLControlNetUnionPipeline

from ...errors import TextureError
from ..settings import GenerationSettings
from . import register
from .base import Recommended
from .sd15 import ControlNetBackend

#: The union ControlNets' (xinsir's) control mode for depth.
UNION_DEPTH_MODE = 1
_SDXL_BASES = frozenset(
    {
        "StableDiffusionXLPipeline",
        "StableDiffusionXLControlNetPipeline",
        "StableDiffusionXLControlNetUnionPipeline",
        "StableDiffusionXLImg2ImgPipeline",
        "StableDiffusionXLControlNetImg2ImgPipeline",
    }
)


class SDXLControlNet(ControlNetBackend):
    name = "sdxl-controlnet"
    label = "SDXL"
    pipeline_class = StableDiffusionXLControlNetPipeline
    base_classes = _SDXL_BASES
    controlnet_kind = "sdxl"
    licence = "openrail++"
    recommended = Recommended(30, 5.0, "dpmpp")
    weight_components = ("unet", "vae", "text_encoder", "text_encoder_2")
    tokenizers = ("tokenizer", "tokenizer_2")
    upscale_to_native = True

    def check_base(self, folder: Path, unet_config: dict[str, Any]) -> None:
        super().check_base(folder, unet_config)
        if unet_config.get("addition_embed_type") != "text_time":
            raise TextureError(f"{folder} says it is SDXL, but its UNet is not an SDXL UNet")
        if not (folder / "text_encoder").is_dir():
            raise TextureError(
                f"{folder} is an SDXL refiner (no first text encoder): use an SDXL base model"
            )

    def extra_parts(self) -> dict[str, Any]:
        # No invisible watermark: the add-on marks its textures itself (docs/record.md).
        return {"feature_extractor": None, "image_encoder": None, "add_watermarker": False}


class SDXLControlNetUnion(SDXLControlNet):
    name = "sdxl-union"
    label = "SDXL"
    pipeline_class = StableDiffusionXLControlNetUnionPipeline
    controlnet_kind = "sdxl-union"

    def conditioning(self, pipe, depth: np.ndarray, settings: GenerationSettings) -> dict[str, Any]:
        call = super().conditioning(pipe, depth, settings)
        return {
            **{key: value for key, value in call.items() if key != "image"},
            "control_image": [call["image"]],
            "control_mode": [UNION_DEPTH_MODE],
        }


SDXL_CONTROLNET = register(SDXLControlNet())
SDXL_UNION = register(SDXLControlNetUnion())
