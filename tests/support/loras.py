"""LoRAs for tests, trained on nothing but real: peft adapters on the tiny SD2-depth UNet with
random (non-zero) weights, saved with diffusers' own ``save_lora_weights``."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import StableDiffusionDepth2ImgPipeline, UNet2DConditionModel
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from safetensors.torch import load_file, save_file

from sd_depth_texture.core.diffusion.tiny import build_tiny_pipeline

ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]


def _save(unet: UNet2DConditionModel, path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    # init_lora_weights=False: lora_B random too, so the LoRA changes the picture.
    unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=ATTENTION, init_lora_weights=False)
    )
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionDepth2ImgPipeline.save_lora_weights(
        str(path.parent), unet_lora_layers=layers, weight_name=path.name, safe_serialization=True
    )
    return path


def make_lora(path: Path, seed: int, unet: UNet2DConditionModel | None = None) -> Path:
    """A LoRA for the tiny SD2-depth model (``build_tiny_pipeline``, any weights seed), or for
    the model whose ``unet`` is given (a copy of it is adapted)."""
    if unet is not None:
        unet = UNet2DConditionModel.from_config(unet.config)
    return _save(unet or build_tiny_pipeline().unet, path, seed)


def make_lora_for_another_base(path: Path, seed: int) -> Path:
    """A LoRA for a UNet whose cross-attention is wider (as SD 1.5's 768 is to SD2's 1024)."""
    config = dict(build_tiny_pipeline().unet.config)
    config["cross_attention_dim"] = 48
    return _save(UNet2DConditionModel.from_config(config), path, seed)


def make_lora_with_missing_layers(source: Path, path: Path) -> Path:
    """``source``'s tensors, half of them renamed to layers the tiny model lacks (a LoRA for
    a UNet with more blocks)."""
    tensors = load_file(str(source))
    renamed = {
        (key.replace("down_blocks.1.", "down_blocks.7.") if "down_blocks.1." in key else key): value
        for key, value in tensors.items()
    }
    save_file(renamed, str(path))
    return path
