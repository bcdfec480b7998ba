"""Tiny, randomly initialised but real auxiliary pipelines, built offline in code (no bpy).

They back the ``random`` source of the maps model and the tests. The layout matches the real
models where the code that drives them cares: Marigold's appearance model predicts two targets
(albedo; roughness and metallicity stacked in one image), so its UNet takes the image latent
plus two target latents (12 channels) and returns two (8); its ``target_properties`` are the
real model's. Their outputs are noise.
"""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    EulerDiscreteScheduler,
    MarigoldIntrinsicsPipeline,
    StableDiffusionLatentUpscalePipeline,
    StableDiffusionUpscalePipeline,
    UNet2DConditionModel,
)

from .tiny import build_tiny_tokenizer, tiny_text_encoders, tiny_vae

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
        vae = tiny_vae()
        text_encoder = tiny_text_encoders(tokenizer, 32, with_projection=False)[0]
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


def build_tiny_latent_upscaler(seed: int = 0) -> StableDiffusionLatentUpscalePipeline:
    """A random-weight x2 ``StableDiffusionLatentUpscalePipeline`` (the sd-x2-latent-upscaler's
    layout: K-diffusion blocks, the image latent beside the noise latent, a time condition of the
    noise level's 128 features plus the pooled prompt)."""
    tokenizer = build_tiny_tokenizer()
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        unet = UNet2DConditionModel(
            act_fn="gelu", attention_head_dim=8, norm_num_groups=None,
            block_out_channels=(32, 32, 64, 64), time_cond_proj_dim=128 + 32, conv_in_kernel=1,
            conv_out_kernel=1, cross_attention_dim=32,
            down_block_types=("KDownBlock2D",) + ("KCrossAttnDownBlock2D",) * 3,
            in_channels=8, mid_block_type=None, only_cross_attention=False, out_channels=5,
            resnet_time_scale_shift="scale_shift", time_embedding_type="fourier",
            timestep_post_act="gelu", up_block_types=("KCrossAttnUpBlock2D",) * 3 + ("KUpBlock2D",),
        )  # fmt: skip
        vae = tiny_vae()
        text_encoder = tiny_text_encoders(tokenizer, 32, with_projection=False)[0]
    finally:
        torch.random.set_rng_state(state)
    pipe = StableDiffusionLatentUpscalePipeline(
        vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=tokenizer, unet=unet.eval(),
        scheduler=EulerDiscreteScheduler(prediction_type="sample"),
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_x4_upscaler(seed: int = 0) -> StableDiffusionUpscalePipeline:
    """A random-weight x4 ``StableDiffusionUpscalePipeline`` (the stable-diffusion-x4-upscaler's
    layout: the low-resolution picture beside the latent, 7 input channels, a VAE of three
    blocks so it decodes 4x larger, the noise level as a class label)."""
    tokenizer = build_tiny_tokenizer()
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        unet = UNet2DConditionModel(
            block_out_channels=(32, 32, 64), layers_per_block=1, sample_size=32, in_channels=7,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32, attention_head_dim=8, use_linear_projection=True,
            only_cross_attention=(True, True, False), num_class_embeds=100, norm_num_groups=8,
        )  # fmt: skip
        vae = AutoencoderKL(
            block_out_channels=(16, 16, 32), in_channels=3, out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
            latent_channels=4, layers_per_block=1, norm_num_groups=8, scaling_factor=0.08333,
            mid_block_add_attention=False,
        )  # fmt: skip
        text_encoder = tiny_text_encoders(tokenizer, 32, with_projection=False)[0]
    finally:
        torch.random.set_rng_state(state)
    pipe = StableDiffusionUpscalePipeline(
        vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=tokenizer, unet=unet.eval(),
        low_res_scheduler=DDPMScheduler(), scheduler=DDIMScheduler(prediction_type="v_prediction"),
        max_noise_level=350,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe
