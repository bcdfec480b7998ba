"""FLUX.1 Depth (``FluxControlPipeline``): the full FLUX.1-Depth-dev model, or the FLUX.1-dev
base with the depth control LoRA (FLUX.1-Depth-dev-lora, :mod:`..depth_loras`).

No bpy. What differs from the SD families, and why:

* the depth map goes in as an RGB control image (near = white) that the pipeline VAE-encodes and
  packs beside the latents: the transformer's input is twice the packed latent width (FLUX.1-dev
  alone takes the latents only, and the depth LoRA widens it);
* the start is pure noise already (the pipeline encodes no init image);
* one scheduler: flow matching (``FlowMatchEulerDiscreteScheduler``) with FLUX's
  resolution-dependent shift. The SD scheduler setting does not apply: it is ignored, and the
  run record names :data:`FLUX_SCHEDULER`, what really ran;
* no negative prompt: [dev] is guidance-distilled (guidance is an input of the transformer, not
  a second pass), so a negative prompt is refused rather than silently dropped;
* latents are packed 2x2 into tokens: the kept-region blend unpacks, blends, repacks, and noises
  the target the flow-matching way, x = (1 - sigma) * x0 + sigma * noise;
* the FLUX.1 [dev] Non-Commercial License covers the model, not what it makes: every door shows
  :data:`~sd_depth_texture.defaults.FLUX_LICENCE_NOTICE` where the model is chosen.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import FluxControlPipeline

from ....defaults import (
    FLUX_BASE_MODEL_ID,
    FLUX_DEPTH_LORA_ID,
    FLUX_DEPTH_MODEL_ID,
    FLUX_LICENCE,
    FLUX_LICENCE_NOTICE,
)
from ...errors import SettingError, TextureError
from ..safe_files import read_json
from ..settings import GenerationSettings
from . import register
from .base import Backend, Recommended, control_image

logger = logging.getLogger(__name__)

#: What the run record names as the scheduler of every FLUX view.
FLUX_SCHEDULER = "flow-match-euler"
#: T5's context for FLUX.1 [dev] (schnell: 256).
MAX_SEQUENCE_LENGTH = 512
_LICENCE_ON_CARD = "other"  # the cards say "other" and name the licence in license_name


_VAE_CONFIG = "vae/config.json"
_TRANSFORMER_CONFIG = "transformer/config.json"


def transformer_layout(configs: dict[str, dict[str, Any]]) -> str:
    """``"depth"`` (the transformer takes latents and depth image), ``"base"`` (latents only:
    FLUX.1-dev) or ``"other"`` (wider: Fill, an inpainting model), from the configs alone."""
    packed = int(configs.get(_VAE_CONFIG, {}).get("latent_channels", 16)) * 4
    inputs = configs.get(_TRANSFORMER_CONFIG, {}).get("in_channels")
    return {2 * packed: "depth", packed: "base"}.get(inputs, "other")


def _configs(folder: Path) -> dict[str, dict[str, Any]]:
    return {name: read_json(folder / name) for name in (_VAE_CONFIG, _TRANSFORMER_CONFIG)}


class FluxDepth(Backend):
    name = "flux-depth"
    label = "FLUX.1 Depth"
    pipeline_class = FluxControlPipeline
    base_classes = frozenset({"FluxControlPipeline", "FluxPipeline"})
    licence = FLUX_LICENCE
    licence_notice = FLUX_LICENCE_NOTICE
    recommended = Recommended(28, 10.0, FLUX_SCHEDULER)
    weight_components = ("transformer", "vae", "text_encoder", "text_encoder_2")
    tokenizers = ("tokenizer", "tokenizer_2")
    own_scheduler = FLUX_SCHEDULER
    takes_negative_prompt = False
    depth_lora_configs = (_VAE_CONFIG, _TRANSFORMER_CONFIG)

    # ---- loading --------------------------------------------------------------------------

    def check_base(self, folder: Path, unet_config: dict[str, Any]) -> None:
        configs = _configs(folder)
        if transformer_layout(configs) == "other":
            inputs = configs[_TRANSFORMER_CONFIG].get("in_channels")
            raise TextureError(
                f"{folder} is a FLUX model whose transformer takes {inputs} input channels: an "
                "inpainting (Fill) or other variant, not FLUX.1 Depth"
            )

    def check_depth_lora(
        self, where: str, configs: dict[str, dict[str, Any]], depth_lora: Any | None
    ) -> None:
        layout = transformer_layout(configs)
        if layout == "depth" and depth_lora is not None:
            raise SettingError(
                "depth_lora", str(depth_lora.path), "empty",
                f"{where} is already a FLUX depth model: it takes no depth LoRA (give the LoRA "
                "with the FLUX.1-dev base, or leave {name} empty)",
            )  # fmt: skip
        if layout == "base" and depth_lora is None:
            raise SettingError(
                "depth_lora", None, "a depth LoRA",
                f"{where} is the FLUX.1-dev base without depth control: give the depth LoRA "
                f"({FLUX_DEPTH_LORA_ID}) with {{name}}, or use {FLUX_DEPTH_MODEL_ID}",
            )  # fmt: skip
        if depth_lora is not None and layout == "base":
            base_inputs = configs[_TRANSFORMER_CONFIG]["in_channels"]
            if depth_lora.input_width != 2 * int(base_inputs):
                raise TextureError(
                    f"{depth_lora.path.name} is not a FLUX depth control LoRA for this base: "
                    "it does not widen the transformer's input to take the depth image"
                )

    def from_pretrained(
        self, folder: Path, dtype: torch.dtype, variant: str | None, depth_lora=None, **parts
    ):
        pipe = super().from_pretrained(folder, dtype, variant, **parts)
        if depth_lora is not None:
            # diffusers widens the transformer's input layer to the LoRA's (FLUX control LoRAs).
            pipe.load_lora_weights(str(depth_lora.path), adapter_name="depth")
            logger.info("Loaded the depth LoRA %s onto %s", depth_lora.path, FLUX_BASE_MODEL_ID)
        return pipe

    def record_licence(self, card_licence: str | None) -> str | None:
        return FLUX_LICENCE if card_licence in (None, _LICENCE_ON_CARD) else card_licence

    # ---- sizes ----------------------------------------------------------------------------

    def size_multiple(self, pipe) -> int:
        return self.vae_scale_factor(pipe) * 2  # one latent cell times the 2x2 packing

    def native_resolution(self, pipe) -> int:
        return int(pipe.default_sample_size) * self.vae_scale_factor(pipe)  # 1024

    # ---- one call -------------------------------------------------------------------------

    @torch.no_grad()
    def conditioning(self, pipe, depth: np.ndarray, settings: GenerationSettings) -> dict[str, Any]:
        """The depth image's packed latents, encoded here (the VAE's mean) rather than by the
        pipeline, which would sample them with the run's generator: so the start is the seed's
        own Gaussian, as with every other family, and the depth adds no noise of its own."""
        image = pipe.image_processor.normalize(control_image(depth))  # [0, 1] -> [-1, 1]
        grid = self.encode(pipe, image)
        tokens = min(MAX_SEQUENCE_LENGTH, int(pipe.tokenizer_2.model_max_length))
        return {
            "control_image": self.pack(pipe, grid, *depth.shape),
            "max_sequence_length": tokens,
        }

    # ---- latents, for the kept-region blend ----------------------------------------------

    def unpack(self, pipe, latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)

    def pack(self, pipe, grid: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, channels, latent_height, latent_width = grid.shape
        return pipe._pack_latents(grid, batch, channels, latent_height, latent_width)

    def noised(
        self, pipe, target: torch.Tensor, noise: torch.Tensor, steps_done: int
    ) -> torch.Tensor:
        # After step i the latents are at sigmas[i + 1]; the last sigma is 0 (the picture).
        sigmas = pipe.scheduler.sigmas
        sigma = float(sigmas[min(steps_done, len(sigmas) - 1)])
        return (1.0 - sigma) * target + sigma * noise


FLUX_DEPTH = register(FluxDepth())
