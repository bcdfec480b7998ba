"""A tiny, randomly initialised but real SD2-depth pipeline, built offline in code.

It backs the ``random`` model source (so the whole add-on can be exercised without a 2.3 GB
download) and the tests. The component layout matches the real model where it matters for the
code that drives it: a UNet with 5 input channels (4 latent + 1 depth), a VAE with four blocks so
the VAE scale factor is 8, a CLIP text encoder with a 77-token context and an SD-style PNDM
scheduler. Its images are noise.
"""

from __future__ import annotations

import shutil

import torch
from diffusers import (
    AutoencoderKL,
    PNDMScheduler,
    StableDiffusionDepth2ImgPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

#: Context length of the real SD2 text encoder; without it the tokenizer pads to ~1e30 tokens.
MAX_TOKENS = 77

#: The scheduler configuration the real SD2-depth model ships with (PNDM, epsilon prediction).
SD2_SCHEDULER_CONFIG = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
}


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP's reversible byte -> printable character table (256 characters)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for code in codes]


def build_tiny_tokenizer() -> CLIPTokenizer:
    """A byte-level CLIP tokenizer with no merges: every byte is one token, any text encodes."""
    chars = _bytes_to_unicode()
    tokens = chars + [f"{char}</w>" for char in chars] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=MAX_TOKENS)


def build_tiny_pipeline(seed: int = 0) -> StableDiffusionDepth2ImgPipeline:
    """Build a random-weight ``StableDiffusionDepth2ImgPipeline`` (fp32, CPU) in ~0.1 s.

    ``seed`` fixes the weights, so two calls with the same seed give identical pipelines.
    """
    tokenizer = build_tiny_tokenizer()
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        unet = UNet2DConditionModel(
            sample_size=32,
            in_channels=5,
            out_channels=4,
            layers_per_block=2,
            block_out_channels=(32, 64),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            norm_num_groups=8,
        )
        vae = tiny_vae()
        (text_encoder,) = tiny_text_encoders(tokenizer, 32, with_projection=False)
    finally:
        torch.random.set_rng_state(generator_state)
    pipe = StableDiffusionDepth2ImgPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=PNDMScheduler(**SD2_SCHEDULER_CONFIG),
        depth_estimator=None,
        feature_extractor=None,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_text_encoders(tokenizer: CLIPTokenizer, hidden: int, *, with_projection: bool):
    """The CLIP text encoder (and SDXL's second, with its projection) of the tiny models."""
    from transformers import CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=MAX_TOKENS,
        projection_dim=hidden,
        hidden_act="gelu",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    first = CLIPTextModel(config).eval()
    return (first, CLIPTextModelWithProjection(config).eval()) if with_projection else (first,)


def tiny_vae() -> AutoencoderKL:
    """Four blocks, so the scale factor is 8 like the real VAE's."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=64,
        scaling_factor=0.18215,
    ).eval()


_SD15_SHAPE = {
    "block_out_channels": (32, 64),
    "layers_per_block": 2,
    "in_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "attention_head_dim": (2, 4),
    "use_linear_projection": True,
    "cross_attention_dim": 32,
    "norm_num_groups": 8,
}
#: The tiny SDXL UNet's and ControlNet's shared shape (diffusers' own SDXL ControlNet fast test,
#: with a sample size of 8 so the native size is 64 px and tests stay quick).
_SDXL_SHAPE = {
    **_SD15_SHAPE,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    "transformer_layers_per_block": (1, 2),
    "projection_class_embeddings_input_dim": 80,  # 6 x 8 time ids + 32 pooled text
    "cross_attention_dim": 64,  # the two text encoders' 32 + 32
}
#: Four entries: three stride-2 steps, as the 4-block VAE's factor of 8.
_CONDITIONING_CHANNELS = (8, 16, 16, 32)
#: Which tiny ControlNet pipelines :func:`build_tiny_controlnet_pipeline` builds.
TINY_FAMILIES = ("sd15", "sdxl", "sdxl-union")


def build_tiny_controlnet_pipeline(family: str, seed: int = 0):
    """A random-weight SD 1.5 or SDXL depth-ControlNet pipeline (``family`` in
    :data:`TINY_FAMILIES`; ``sdxl-union`` with a ``ControlNetUnionModel``), fp32 on the CPU,
    its UNet's native size 64 px. The same ``seed`` gives the same weights."""
    from diffusers import (
        ControlNetModel,
        ControlNetUnionModel,
        StableDiffusionControlNetPipeline,
        StableDiffusionXLControlNetPipeline,
        StableDiffusionXLControlNetUnionPipeline,
    )

    if family not in TINY_FAMILIES:
        raise ValueError(f"No tiny {family!r} pipeline: one of {', '.join(TINY_FAMILIES)}")
    xl = family != "sd15"
    shape = _SDXL_SHAPE if xl else _SD15_SHAPE
    tokenizer = build_tiny_tokenizer()
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        unet = UNet2DConditionModel(
            sample_size=8,
            out_channels=4,
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            **shape,
        ).eval()
        if family == "sdxl-union":
            controlnet = ControlNetUnionModel(
                conditioning_embedding_out_channels=_CONDITIONING_CHANNELS,
                num_control_type=8,
                num_trans_channel=32,
                num_trans_head=2,
                num_proj_channel=32,
                **shape,
            ).eval()
        else:
            controlnet = ControlNetModel(
                conditioning_embedding_out_channels=_CONDITIONING_CHANNELS, **shape
            ).eval()
        _wake_zero_convolutions(controlnet)
        encoders = tiny_text_encoders(tokenizer, 32, with_projection=xl)
        vae = tiny_vae()
    finally:
        torch.random.set_rng_state(generator_state)
    scheduler = PNDMScheduler(**SD2_SCHEDULER_CONFIG)
    if not xl:
        pipe = StableDiffusionControlNetPipeline(
            vae=vae, text_encoder=encoders[0], tokenizer=tokenizer, unet=unet,
            controlnet=controlnet, scheduler=scheduler, safety_checker=None,
            feature_extractor=None, requires_safety_checker=False,
        )  # fmt: skip
    else:
        pipeline_class = (
            StableDiffusionXLControlNetUnionPipeline
            if family == "sdxl-union"
            else StableDiffusionXLControlNetPipeline
        )
        pipe = pipeline_class(
            vae=vae, text_encoder=encoders[0], text_encoder_2=encoders[1], tokenizer=tokenizer,
            tokenizer_2=build_tiny_tokenizer(), unet=unet, controlnet=controlnet,
            scheduler=scheduler, add_watermarker=False,
        )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def _wake_zero_convolutions(controlnet: torch.nn.Module) -> None:
    """A ControlNet starts with zero convolutions (it adds nothing until trained) and PyTorch's
    default init fades a signal over the depth embedding's seven convolutions: give the embedding
    variance-keeping (He) weights and the zero convolutions small random ones, so a test can see
    the depth reach the picture."""
    for module in controlnet.controlnet_cond_embedding.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            torch.nn.init.zeros_(module.bias)
    for parameter in controlnet.parameters():
        if not parameter.any():
            parameter.normal_(std=0.05)


def save_tiny_controlnet_model(family: str, folder, seed: int = 0) -> tuple:
    """Save a tiny pipeline's base (``folder/base``) and ControlNet (``folder/controlnet``) as
    the add-on reads them (safetensors), and return the two folders."""
    from pathlib import Path

    folder = Path(folder)
    pipe = build_tiny_controlnet_pipeline(family, seed)
    base, controlnet = folder / "base", folder / "controlnet"
    pipe.controlnet.save_pretrained(str(controlnet), safe_serialization=True)
    pipe.save_pretrained(str(base), safe_serialization=True)
    shutil.rmtree(base / "controlnet", ignore_errors=True)
    return base, controlnet
