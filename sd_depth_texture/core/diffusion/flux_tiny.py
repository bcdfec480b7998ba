"""A tiny, randomly initialised but real FLUX.1 Depth pipeline (and depth LoRA), built offline.

The tests drive the FLUX backend through these exactly as through the real model: the layout
matches FLUX.1 where the code that drives it cares: a VAE with four blocks (scale factor 8) and
16 latent channels with FLUX's shift and scaling factors, a transformer whose input takes the
packed latents (16 x 2 x 2 = 64 channels) plus as many packed depth-image channels (128 in all,
as FLUX.1-Depth-dev; 64 for the FLUX.1-dev base), guidance embedding (guidance-distilled, as
[dev]), a CLIP text encoder with 77 positions, a T5 encoder and the flow-matching scheduler with
FLUX's dynamic shift. Both tokenizers are built in code: nothing is downloaded. Pictures are noise.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    FluxControlPipeline,
    FluxPipeline,
    FluxTransformer2DModel,
)
from transformers import T5Config, T5EncoderModel, T5Tokenizer

from .tiny import build_tiny_tokenizer, tiny_text_encoders

#: FLUX.1's VAE: 16 latent channels, shifted and scaled before the transformer sees them.
LATENT_CHANNELS = 16
SHIFT_FACTOR = 0.1159
SCALING_FACTOR = 0.3611
#: Packed latents: 2x2 latent cells per token.
PACKED_CHANNELS = LATENT_CHANNELS * 4
#: The scheduler configuration FLUX.1 [dev] ships with (flow matching, resolution-dependent shift).
FLUX_SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
}
T5_MAX_TOKENS = 512
_HIDDEN = 32


def build_tiny_t5_tokenizer() -> T5Tokenizer:
    """A Unigram T5 tokenizer whose pieces are single characters: any ASCII prompt encodes."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    for char in string.ascii_letters + string.digits + string.punctuation:
        pieces += [(char, -5.0), (f"\u2581{char}", -6.0)]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=T5_MAX_TOKENS)


def build_tiny_flux_pipeline(seed: int = 0, *, depth: bool = True) -> FluxControlPipeline:
    """A random-weight FLUX pipeline (fp32, CPU) in well under a second.

    ``depth=True``: FLUX.1-Depth-dev's layout (the transformer takes latents and depth image);
    ``depth=False``: the FLUX.1-dev base, which needs the depth LoRA (saved as a ``FluxPipeline``).
    ``seed`` fixes the weights.
    """
    tokenizer = build_tiny_tokenizer()
    tokenizer_2 = build_tiny_t5_tokenizer()
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        transformer = FluxTransformer2DModel(
            patch_size=1,
            in_channels=PACKED_CHANNELS * (2 if depth else 1),
            out_channels=PACKED_CHANNELS,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=_HIDDEN,
            pooled_projection_dim=_HIDDEN,
            guidance_embeds=True,
            axes_dims_rope=[4, 4, 8],
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=LATENT_CHANNELS,
            block_out_channels=(8, 8, 16, 16),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=1,
            norm_num_groups=4,
            sample_size=64,
            use_quant_conv=False,
            use_post_quant_conv=False,
            shift_factor=SHIFT_FACTOR,
            scaling_factor=SCALING_FACTOR,
        )
        (text_encoder,) = tiny_text_encoders(tokenizer, _HIDDEN, with_projection=False)
        text_encoder_2 = T5EncoderModel(
            T5Config(
                vocab_size=len(tokenizer_2),
                d_model=_HIDDEN,
                d_kv=8,
                d_ff=37,
                num_layers=2,
                num_heads=4,
                relative_attention_num_buckets=8,
                pad_token_id=tokenizer_2.pad_token_id,
                eos_token_id=tokenizer_2.eos_token_id,
                decoder_start_token_id=tokenizer_2.pad_token_id,
            )
        )
    finally:
        torch.random.set_rng_state(generator_state)
    pipeline_class = FluxControlPipeline if depth else FluxPipeline
    pipe = pipeline_class(
        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER_CONFIG),
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2.eval(),
        tokenizer_2=tokenizer_2,
        transformer=transformer.eval(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_depth_lora(folder: Path, seed: int = 0, rank: int = 4) -> Path:
    """A depth control LoRA for the tiny FLUX.1-dev base, as ``FLUX.1-Depth-dev-lora`` is for
    the real one: its ``x_embedder`` LoRA takes twice the base's input channels (latents plus
    the depth image), so loading it widens the transformer. Saved with diffusers' own writer."""
    generator = torch.Generator().manual_seed(seed)
    layers = {
        "x_embedder.lora_A.weight": torch.randn(rank, PACKED_CHANNELS * 2, generator=generator),
        "x_embedder.lora_B.weight": torch.randn(_HIDDEN, rank, generator=generator) * 0.1,
    }
    name = "tiny-depth-lora.safetensors"
    FluxControlPipeline.save_lora_weights(
        str(folder), transformer_lora_layers=layers, weight_name=name
    )
    return Path(folder) / name
