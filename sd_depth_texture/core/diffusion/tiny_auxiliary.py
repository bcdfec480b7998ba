"""Tiny, randomly initialised but real auxiliary pipelines, built offline in code (no bpy).

They back the ``random`` source of the maps model and the tests. The layout matches the real
models where the code that drives them cares: Marigold's appearance model predicts two targets
(albedo; roughness and metallicity stacked in one image), so its UNet takes the image latent
plus two target latents (12 channels) and returns two (8); its ``target_properties`` are the
real model's. Their outputs are noise.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, DDIMScheduler, MarigoldIntrinsicsPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from .tiny import MAX_TOKENS, build_tiny_tokenizer

#: What the appearance model predicts and in which space (its model_index.json's entry).
APPEARANCE_TARGETS = {
    "target_names": ["albedo", "material"],
    "albedo": {"prediction_space": "srgb", "up_to_scale": False},
    "material": {
        "prediction_space": "stack",
        "sub_target_names": ["roughness", "metallicity", None],
    },
    "roughness": {"prediction_space": "linear", "up_to_scale": False},
    "metallicity": {"prediction_space": "linear", "up_to_scale": False},
}


def _tiny_vae() -> AutoencoderKL:
    """Four blocks, so the scale factor is 8 like the real VAE's."""
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1, norm_num_groups=4, sample_size=64, scaling_factor=0.18215,
    )  # fmt: skip


def _tiny_text_encoder(vocabulary: int, tokenizer) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=vocabulary, hidden_size=32, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=MAX_TOKENS, projection_dim=32,
        hidden_act="gelu", bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    return CLIPTextModel(config)


def build_tiny_marigold(seed: int = 0) -> MarigoldIntrinsicsPipeline:
    """A random-weight ``MarigoldIntrinsicsPipeline`` shaped like the appearance model (fp32,
    CPU, one denoising step at 64 px by default); ``seed`` fixes the weights."""
    tokenizer = build_tiny_tokenizer()
    targets = len(APPEARANCE_TARGETS["target_names"])
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        unet = UNet2DConditionModel(
            sample_size=32, in_channels=4 * (1 + targets), out_channels=4 * targets,
            layers_per_block=1, block_out_channels=(32, 64),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
            attention_head_dim=(2, 4), use_linear_projection=True, norm_num_groups=8,
        )  # fmt: skip
        vae = _tiny_vae()
        text_encoder = _tiny_text_encoder(len(tokenizer), tokenizer)
    finally:
        torch.random.set_rng_state(state)
    scheduler = DDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
        set_alpha_to_one=False, prediction_type="v_prediction", timestep_spacing="trailing",
    )  # fmt: skip
    pipe = MarigoldIntrinsicsPipeline(
        unet=unet.eval(), vae=vae.eval(), scheduler=scheduler, text_encoder=text_encoder.eval(),
        tokenizer=tokenizer, prediction_type="intrinsics", target_properties=APPEARANCE_TARGETS,
        default_denoising_steps=1, default_processing_resolution=64,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe
