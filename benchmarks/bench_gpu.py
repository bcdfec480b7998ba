"""GPU speed of the diffusion per model family, against the compute floor.

Full-size pipelines with RANDOM weights, built from their configs in code (nothing is
downloaded; speed depends on the configs, not the weights): SD2-depth at 512, SDXL with a depth
ControlNet at 1024, FLUX.1 Depth at 1024, 20 steps, fp16 (bf16 for FLUX). Each runs one view and
a 10-view object through the add-on's own picture maker (``core.pictures.diffusion_pictures``:
the generate path a real run takes, with the kept-region blend for views 2 to 10). Printed per
family: seconds per view, peak GPU memory, and the compute floor (the denoiser's and VAE
decoder's FLOPs, counted with ``torch.utils.flop_counter``, over this GPU's measured bf16/fp16
matmul rate; ../shared/FIELD_NOTES.md: ~45 ms per 20-step SD2 view on an H200).

    python benchmarks/bench_gpu.py [--families sd2,sdxl,flux] [--views 10] [--steps 20]
    python benchmarks/bench_gpu.py --tiny   # the same code on the CPU with tiny configs

No bpy: the bake's per-view overhead is ``bench_multiview.py``'s. A family whose backend is not
in this checkout is skipped with one line.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from sd_depth_texture.core.bake.paint import ViewRequest  # noqa: E402
from sd_depth_texture.core.diffusion.settings import GenerationSettings  # noqa: E402
from sd_depth_texture.core.diffusion.tiny import SD2_SCHEDULER_CONFIG, build_tiny_tokenizer  # noqa: E402
from sd_depth_texture.core.errors import TextureError  # noqa: E402
from sd_depth_texture.core.geometry.views import View  # noqa: E402
from sd_depth_texture.core.pictures import diffusion_pictures  # noqa: E402
from sd_depth_texture.core.record import RunRecord  # noqa: E402

SD2_FLOOR_H200_MS = 45  # FIELD_NOTES: one 20-step SD2-depth view at 512 on an H200


@dataclass(frozen=True)
class Family:
    label: str
    resolution: int
    tiny_resolution: int
    dtype: torch.dtype
    build: Callable[[bool], object]  # tiny -> pipeline (on the default device and dtype)
    denoiser: str  # the pipeline attribute that runs every step


@contextmanager
def building_on(device: torch.device, dtype: torch.dtype):
    """Create parameters directly on ``device`` in ``dtype``: a 12 B transformer is built in
    seconds on a GPU, and never exists in fp32."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


# ---- Configs (the real models' where not tiny) ------------------------------------------------


def _clip(tokenizer, hidden: int, layers: int, heads: int, ff: int, projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=49408 if hidden > 64 else len(tokenizer), hidden_size=hidden,
        intermediate_size=ff, num_attention_heads=heads, num_hidden_layers=layers,
        max_position_embeddings=77, projection_dim=hidden, hidden_act="gelu",
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def _vae(tiny: bool, latent_channels: int = 4, **extra):
    from diffusers import AutoencoderKL

    blocks = (8, 8, 16, 16) if tiny else (128, 256, 512, 512)
    return AutoencoderKL(
        latent_channels=latent_channels, block_out_channels=blocks,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1 if tiny else 2, norm_num_groups=4 if tiny else 32,
        sample_size=64 if tiny else 1024, **extra,
    ).eval()  # fmt: skip


def build_sd2(tiny: bool):
    from diffusers import PNDMScheduler, StableDiffusionDepth2ImgPipeline, UNet2DConditionModel

    from sd_depth_texture.core.diffusion.tiny import build_tiny_pipeline

    if tiny:
        return build_tiny_pipeline()
    tokenizer = build_tiny_tokenizer()  # speed does not depend on the vocabulary
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=5, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), attention_head_dim=(5, 10, 20, 20),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=1024, use_linear_projection=True,
    )  # fmt: skip
    return StableDiffusionDepth2ImgPipeline(
        vae=_vae(False, scaling_factor=0.18215), text_encoder=_clip(tokenizer, 1024, 23, 16, 4096),
        tokenizer=tokenizer, unet=unet.eval(), scheduler=PNDMScheduler(**SD2_SCHEDULER_CONFIG),
        depth_estimator=None, feature_extractor=None,
    )  # fmt: skip


def build_sdxl(tiny: bool):
    from diffusers import (
        ControlNetModel,
        EulerDiscreteScheduler,
        StableDiffusionXLControlNetPipeline,
        UNet2DConditionModel,
    )

    tokenizer = build_tiny_tokenizer()
    if tiny:  # diffusers' fast-test SDXL sizes (FIELD_NOTES), native at 64 px
        unet = UNet2DConditionModel(
            sample_size=8, block_out_channels=(32, 64), layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
            use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
            projection_class_embeddings_input_dim=80, cross_attention_dim=64, norm_num_groups=8,
        )  # fmt: skip
        encoders = (_clip(tokenizer, 32, 2, 4, 37), _clip(tokenizer, 32, 2, 4, 37, True))
        embedding = (16, 32, 64, 128)
    else:  # stabilityai/stable-diffusion-xl-base-1.0
        unet = UNet2DConditionModel(
            sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(5, 10, 20), use_linear_projection=True,
            addition_embed_type="text_time", addition_time_embed_dim=256,
            transformer_layers_per_block=(1, 2, 10), projection_class_embeddings_input_dim=2816,
            cross_attention_dim=2048,
        )  # fmt: skip
        encoders = (
            _clip(tokenizer, 768, 12, 12, 3072),
            _clip(tokenizer, 1280, 32, 20, 5120, projection=True),
        )
        embedding = (16, 32, 96, 256)
    # diffusers/controlnet-depth-sdxl-1.0 is a full copy of the UNet's encoder.
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=embedding)
    return StableDiffusionXLControlNetPipeline(
        vae=_vae(tiny, scaling_factor=0.13025, force_upcast=True), text_encoder=encoders[0],
        text_encoder_2=encoders[1], tokenizer=tokenizer, tokenizer_2=tokenizer,
        unet=unet.eval(), controlnet=controlnet.eval(),
        scheduler=EulerDiscreteScheduler(**{k: v for k, v in SD2_SCHEDULER_CONFIG.items()
                                            if k not in ("set_alpha_to_one", "skip_prk_steps")}),
        add_watermarker=False,
    )  # fmt: skip


def build_flux(tiny: bool):
    try:  # the FLUX backend's own offline builders (its branch)
        from sd_depth_texture.core.diffusion import flux_tiny
    except ImportError:
        raise TextureError("the FLUX backend is not in this checkout") from None
    if tiny:
        return flux_tiny.build_tiny_flux_pipeline()
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        FluxControlPipeline,
        FluxTransformer2DModel,
    )
    from transformers import T5Config, T5EncoderModel

    tokenizer, tokenizer_2 = build_tiny_tokenizer(), flux_tiny.build_tiny_t5_tokenizer()
    transformer = FluxTransformer2DModel(  # black-forest-labs/FLUX.1-Depth-dev
        patch_size=1, in_channels=128, out_channels=64, num_layers=19, num_single_layers=38,
        attention_head_dim=128, num_attention_heads=24, joint_attention_dim=4096,
        pooled_projection_dim=768, guidance_embeds=True, axes_dims_rope=(16, 56, 56),
    )  # fmt: skip
    t5 = T5EncoderModel(
        T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24,
                 num_heads=64, feed_forward_proj="gated-gelu", is_gated_act=True,
                 pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    )  # fmt: skip
    return FluxControlPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**flux_tiny.FLUX_SCHEDULER_CONFIG),
        vae=_vae(False, 16, use_quant_conv=False, use_post_quant_conv=False,
                 shift_factor=0.1159, scaling_factor=0.3611),
        text_encoder=_clip(tokenizer, 768, 12, 12, 3072), tokenizer=tokenizer,
        text_encoder_2=t5.eval(), tokenizer_2=tokenizer_2, transformer=transformer.eval(),
    )  # fmt: skip


FAMILIES = {
    "sd2": Family("SD2-depth", 512, 64, torch.float16, build_sd2, "unet"),
    "sdxl": Family("SDXL + depth ControlNet", 1024, 64, torch.float16, build_sdxl, "unet"),
    "flux": Family("FLUX.1 Depth", 1024, 64, torch.bfloat16, build_flux, "transformer"),
}


# ---- Measuring --------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: torch.device, dtype: torch.dtype) -> float:
    """This device's dense matmul FLOP/s in ``dtype`` (the floor's denominator)."""
    size = 8192 if device.type == "cuda" else 512
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    repeats = 20 if device.type == "cuda" else 3
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def sphere_depth(size: int) -> np.ndarray:
    """A sphere in front of a far background: near = bright, as the depth contract says."""
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    x, y = np.meshgrid(axis, axis)
    inside = np.clip(1.0 - x**2 - y**2, 0.0, None)
    return np.where(inside > 0, 0.3 + 0.7 * np.sqrt(inside), 0.0).astype(np.float32)


def view_request(index: int, size: int, known: np.ndarray | None) -> ViewRequest:
    keep = np.zeros((size, size), np.float32)
    if known is not None:
        keep[:, : size // 2] = 1.0  # half the view painted by earlier views: the kept blend runs
    view = View(np.eye(4), np.diag([1.0, 1.0, -1.0, 1.0]), size, size)
    return ViewRequest(
        index=index, label=f"view {index}", prompt_hint="", view=view, depth=sphere_depth(size),
        known=known if known is not None else np.zeros((size, size, 3), np.float32), keep=keep,
    )  # fmt: skip


def count_flops(pipe, family: Family, size: int, steps: int) -> float:
    """FLOPs of one run: the denoiser's (and ControlNet's) per step times the steps, plus one
    VAE decode, counted on the real modules by tracing one 1-step call."""
    make = diffusion_pictures(
        pipe, GenerationSettings(prompt="oak", steps=1), False, RunRecord.begin("bench", {})
    )
    with FlopCounterMode(display=False) as counter:
        make(view_request(0, size, None))
    per_module = counter.get_flop_counts()
    total = sum(counter.get_flop_counts()["Global"].values())
    vae = sum(per_module.get("AutoencoderKL", {}).values())
    text = sum(
        sum(per_module.get(name, {}).values())
        for name in ("CLIPTextModel", "CLIPTextModelWithProjection", "T5EncoderModel")
    )
    return (total - vae - text) * steps + vae + text


def run_family(name: str, args: argparse.Namespace, device: torch.device) -> None:
    family = FAMILIES[name]
    dtype = torch.float32 if args.tiny else family.dtype
    size = family.tiny_resolution if args.tiny else family.resolution
    started = time.perf_counter()
    try:
        with building_on(device, dtype):
            pipe = family.build(args.tiny)
    except TextureError as error:
        print(f"{family.label}: skipped ({error})")
        return
    pipe = pipe.to(device=device)  # built in its dtype: only what was made elsewhere moves
    pipe.set_progress_bar_config(disable=True)
    built = time.perf_counter() - started
    params = sum(p.numel() for p in getattr(pipe, family.denoiser).parameters())
    settings = GenerationSettings(prompt="weathered oak planks", steps=args.steps, guidance=7.0)
    try:
        flops = count_flops(pipe, family, size, args.steps)
    except TextureError as error:
        print(f"{family.label}: skipped ({error})")
        return
    rate = matmul_rate(device, dtype)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    make = diffusion_pictures(pipe, settings, False, RunRecord.begin("bench", {}))
    sync(device)
    start = time.perf_counter()
    make(view_request(0, size, None))  # warm-up: kernels chosen, caches filled
    sync(device)
    warm_up = time.perf_counter() - start
    start = time.perf_counter()
    picture = make(view_request(0, size, None))
    sync(device)
    one_view = time.perf_counter() - start
    start = time.perf_counter()
    known = None
    for index in range(args.views):
        picture = make(view_request(index, size, known))
        known = picture
    sync(device)
    whole = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    floor = flops / rate
    print(
        f"{family.label} at {size}px, {args.steps} steps, {str(dtype).removeprefix('torch.')}: "
        f"denoiser {params / 1e9:.2f} B params, built in {built:.1f} s\n"
        f"  one view {one_view * 1000:.0f} ms (warm-up {warm_up:.1f} s); {args.views}-view "
        f"object {whole:.2f} s = {whole / args.views * 1000:.0f} ms per view (kept regions)\n"
        f"  compute {flops / 1e12:.3g} TFLOP per view; floor {floor * 1000:.0f} ms at the "
        f"measured matmul rate {rate / 1e12:.3g} TFLOP/s: one view runs at "
        f"{floor / one_view:.0%} of it"
        + (f"; peak GPU memory {peak:.1f} GiB" if device.type == "cuda" else "")
    )
    del pipe, make
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="sd2,sdxl,flux", help="any of sd2, sdxl, flux")
    parser.add_argument("--views", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--tiny", action="store_true", help="tiny configs on the CPU (a check)")
    args = parser.parse_args(argv)
    if args.tiny:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        print("No CUDA GPU here: run with --tiny for a check of the code on the CPU")
        return 1
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        print(f"{name}; torch {torch.__version__}; SD2 floor on an H200: ~{SD2_FLOOR_H200_MS} ms")
    for name in args.families.split(","):
        run_family(name.strip(), args, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
