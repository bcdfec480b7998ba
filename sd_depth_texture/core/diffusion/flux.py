"""FLUX.1 Depth: load it, turn the depth map into its control image, generate, keep regions.

No bpy. ``FluxControlPipeline`` runs either the full FLUX.1-Depth-dev model or the FLUX.1-dev
base with the depth control LoRA (FLUX.1-Depth-dev-lora, which widens the transformer's input so
it also takes the depth image). What differs from SD2-depth, and why:

* the depth map goes in as an RGB control image (near = white), VAE-encoded by the pipeline;
* the start is pure noise already (the pipeline encodes no init image);
* one scheduler only: flow matching (``FlowMatchEulerDiscreteScheduler``) with FLUX's
  resolution-dependent shift. The SD scheduler setting does not apply and is ignored (the run
  record says what really ran, :data:`FLUX_SCHEDULER`);
* no negative prompt: [dev] is guidance-distilled (the guidance is an input of the
  transformer, not a second pass), so a negative prompt is refused rather than dropped;
* latents are packed 2x2 into tokens: the kept-region blend unpacks, blends, repacks;
* the FLUX.1 [dev] Non-Commercial License covers the model (its outputs may be used
  commercially): ``defaults.FLUX_LICENCE_NOTICE`` is shown where the model is chosen, and
  the licence is recorded.

Every check that a user can fail (another family, the base without its depth LoRA, an
inpainting (Fill) model, pickles, a damaged file) happens before any weights load.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as functional
from diffusers import FluxControlPipeline
from huggingface_hub.utils import HFValidationError, validate_repo_id

from ...defaults import (
    FLUX_BASE_MODEL_ID,
    FLUX_DEPTH_LORA_ID,
    FLUX_DEPTH_MODEL_ID,
    FLUX_LICENCE,
)
from ..errors import ModelUnavailableError, SettingError, TextureError
from ..progress import Progress
from ..record import ModelRecord, sha256_of_file
from . import hub
from .device import first_line, out_of_memory
from .generate import LatentsHook, _step_end, checked_picture, validate_depth
from .settings import GenerationSettings, ModelSpec, validate_settings
from .sources import (
    HUB_ID,
    PICKLE_SUFFIXES,
    IncompleteModelError,
    _check_safetensors,
    _choose_variant,
    _component_weights,
    _refuse_special_files,
    _require_regular_files,
    check_tokenizer,
    model_licence,
    pickle_refusal,
    read_json,
)

logger = logging.getLogger(__name__)

BACKEND = "flux-depth"
#: Recommended settings for FLUX.1-Depth-dev (its model card: 28 to 30 steps, guidance 10).
FLUX_STEPS = 28
FLUX_GUIDANCE = 10.0
FLUX_RESOLUTION = 1024
#: What the run record names as the scheduler of every FLUX view.
FLUX_SCHEDULER = "flow-match-euler"
#: The pipeline's side multiple: the VAE's 8 times the 2x2 packing.
SIZE_MULTIPLE = 16

#: Pipelines whose folders hold FLUX components this backend can load.
FLUX_CLASSES = ("FluxControlPipeline", "FluxPipeline")
WEIGHT_COMPONENTS = ("transformer", "vae", "text_encoder", "text_encoder_2")
COMPONENTS = (*WEIGHT_COMPONENTS, "tokenizer", "tokenizer_2", "scheduler")
CONFIG_FILES = (
    "transformer/config.json",
    "vae/config.json",
    "text_encoder/config.json",
    "text_encoder_2/config.json",
    "scheduler/scheduler_config.json",
)
_DEPTH_LORA_KEYS = ("x_embedder.lora_A.weight", "img_in.lora_A.weight")


def is_flux_folder(folder: Path) -> bool:
    """Whether ``model_index.json`` names a FLUX pipeline (any variant: the checks say which)."""
    index = folder / "model_index.json"
    if not index.is_file():
        return False
    return str(read_json(index).get("_class_name", "")).startswith("Flux")


def check_flux_folder(folder: Path, depth_lora: Path | None) -> str:
    """Check a FLUX diffusers folder without loading weights; returns ``"full"`` (FLUX.1-Depth-dev
    layout) or ``"base"`` (FLUX.1-dev, which the depth LoRA completes).

    The transformer's input width tells them apart: latents and depth image (twice the packed
    latent channels), latents only (the base), or more (Fill: image and mask, an inpainting model).
    """
    _require_regular_files(folder, ["model_index.json"])
    class_name = read_json(folder / "model_index.json").get("_class_name")
    if class_name not in FLUX_CLASSES:
        raise TextureError(
            f"{folder} holds a {class_name}, not FLUX.1 Depth (FluxControlPipeline) or the "
            "FLUX.1-dev base (FluxPipeline)"
        )
    _refuse_special_files(folder, COMPONENTS)
    _require_regular_files(folder, list(CONFIG_FILES))
    packed = int(read_json(folder / "vae" / "config.json").get("latent_channels", 16)) * 4
    inputs = read_json(folder / "transformer" / "config.json").get("in_channels")
    if inputs == 2 * packed:
        layout = "full"
        if depth_lora is not None:
            raise TextureError(
                f"{folder} is already a FLUX depth model: it takes no depth LoRA (give the "
                "LoRA with the FLUX.1-dev base, or drop it)"
            )
    elif inputs == packed:
        layout = "base"
        if depth_lora is None:
            raise TextureError(
                f"{folder} is the FLUX.1-dev base without depth control: give the depth LoRA "
                f"({FLUX_DEPTH_LORA_ID}) with it, or use {FLUX_DEPTH_MODEL_ID}"
            )
    else:
        raise TextureError(
            f"{folder} is a FLUX model whose transformer takes {inputs} input channels: an "
            "inpainting (Fill) or other variant, not FLUX.1 Depth"
        )
    check_tokenizer(folder, read_json(folder / "text_encoder" / "config.json"))
    _check_t5_tokenizer(folder)
    for component in WEIGHT_COMPONENTS:
        for path in _component_weights(folder, component):
            _check_safetensors(path)
    return layout


def _check_t5_tokenizer(folder: Path) -> None:
    tokenizer = folder / "tokenizer_2"
    has_model = (tokenizer / "tokenizer.json").is_file() or (tokenizer / "spiece.model").is_file()
    if not (tokenizer / "tokenizer_config.json").is_file() or not has_model:
        raise IncompleteModelError(
            f"The T5 tokenizer in {folder} is incomplete (tokenizer_2/ needs "
            "tokenizer_config.json and tokenizer.json or spiece.model)"
        )


def check_depth_lora(path: Path, base_inputs: int) -> None:
    """A safetensors file whose input-layer LoRA takes twice the base's inputs (latents plus
    the depth image): the header is read, nothing else. Pickles are refused unopened."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise pickle_refusal(path)
    if not path.is_file():
        raise TextureError(f"Depth LoRA not found: {path}")
    if path.suffix.lower() != ".safetensors":
        raise TextureError(f"The depth LoRA {path.name} must be a .safetensors file")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            shapes = {
                key: handle.get_slice(key).get_shape()
                for key in handle.keys()  # noqa: SIM118 (safe_open is not a mapping)
                if key.endswith(_DEPTH_LORA_KEYS)
            }
    except Exception as error:
        raise TextureError(
            f"The depth LoRA {path} is corrupt or truncated ({first_line(error)})"
        ) from error
    if not any(shape[-1] == 2 * base_inputs for shape in shapes.values()):
        raise TextureError(
            f"{path.name} is not a FLUX depth control LoRA: it does not widen the transformer's "
            "input to take the depth image"
        )


def is_flux_source(spec: ModelSpec) -> bool:
    """Whether ``spec`` names FLUX: a folder whose ``model_index.json`` says so, a Hub id whose
    cached copy says so (or, not cached yet, whose name says FLUX), or any source given a depth
    LoRA (which only FLUX takes; the checks then say what is wrong)."""
    source = (spec.source or "").strip()
    if spec.depth_lora:
        return True
    path = Path(source).expanduser()
    if path.is_dir():
        return is_flux_folder(path)
    if not HUB_ID.fullmatch(source) or path.exists():
        return False
    try:
        validate_repo_id(source)
    except HFValidationError:
        return False  # the SD path words this one
    for cache in hub.search_caches(spec.cache_dir):
        folder = hub.cached_snapshot(source, None, cache)
        if folder is not None:
            return is_flux_folder(folder)
    return "flux" in source.lower()


def load_flux_source(
    spec: ModelSpec, dtype: torch.dtype, progress: Progress
) -> tuple[FluxControlPipeline, ModelRecord]:
    """FLUX from a local folder or a Hub id (the cached copy, else a download when online
    access is on), with the depth LoRA of ``spec`` where it names one."""
    source = (spec.source or "").strip()
    depth_lora = _resolve_depth_lora(spec, progress) if spec.depth_lora else None
    path = Path(source).expanduser()
    if path.is_dir():
        return load_flux_folder(path, dtype, depth_lora, source=source, kind="folder")
    if not HUB_ID.fullmatch(source):
        raise TextureError(
            f"A depth LoRA goes with the FLUX.1-dev base ({FLUX_BASE_MODEL_ID}, a diffusers "
            f"folder or Hub id), not with {source}"
        )
    folder = _hub_folder(spec, source, progress)
    pipe, record = load_flux_folder(folder, dtype, depth_lora, source=source, kind="hub")
    record.revision = folder.name
    return pipe, record


def _hub_folder(spec: ModelSpec, repo_id: str, progress: Progress) -> Path:
    """The cached snapshot of ``repo_id`` (any revision the cache's ``main`` points at), else a
    download of the components FLUX needs into the download cache."""
    for cache in hub.search_caches(spec.cache_dir):
        folder = hub.cached_snapshot(repo_id, None, cache)
        if folder is not None:
            return folder
    if not spec.allow_online:
        where = " or ".join(str(cache) for cache in hub.search_caches(spec.cache_dir))
        raise ModelUnavailableError(
            f"Model {repo_id} is not cached in {where} and online access is off."
        )
    return hub.download_snapshot(
        repo_id, None, hub.download_cache(spec.cache_dir), want_fp16=False, progress=progress
    )


def _resolve_depth_lora(spec: ModelSpec, progress: Progress) -> Path:
    """The depth LoRA as a local file: given as one, or the one ``.safetensors`` of a Hub
    repository (cached, else downloaded when online access is on)."""
    given = (spec.depth_lora or "").strip()
    path = Path(given).expanduser()
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise pickle_refusal(path)
    if path.exists() or not HUB_ID.fullmatch(given):
        return path
    from huggingface_hub import snapshot_download

    progress.update(0.0, f"Looking for the depth LoRA {given}")
    try:
        folder = Path(
            snapshot_download(
                given,
                allow_patterns=["*.safetensors", "README.md"],
                cache_dir=hub.download_cache(spec.cache_dir),
                local_files_only=not spec.allow_online,
            )
        )
    except Exception as error:
        if not spec.allow_online:
            raise ModelUnavailableError(
                f"The depth LoRA {given} is not cached and online access is off."
            ) from error
        raise TextureError(f"Could not download {given}: {first_line(error)}") from error
    files = sorted(folder.glob("*.safetensors"))
    if len(files) != 1:
        raise TextureError(f"{given} holds {len(files)} .safetensors files; give the file itself")
    return files[0]


def load_flux_folder(
    folder: Path, dtype: torch.dtype, depth_lora: Path | None = None, *, source: str, kind: str
) -> tuple[FluxControlPipeline, ModelRecord]:
    """Load FLUX.1 Depth (or FLUX.1-dev plus ``depth_lora``) from a checked local folder, with
    the record of what was loaded (the depth LoRA listed with its hash)."""
    layout = check_flux_folder(folder, depth_lora)
    if depth_lora is not None:
        base_inputs = read_json(folder / "transformer" / "config.json")["in_channels"]
        check_depth_lora(depth_lora, int(base_inputs))
    weights = {name: _component_weights(folder, name) for name in WEIGHT_COMPONENTS}
    variant = _choose_variant(weights, dtype)
    logger.info("Loading FLUX from %s (%s, variant %s, %s)", folder, layout, variant, dtype)
    try:
        with out_of_memory("loading FLUX"):
            pipe = FluxControlPipeline.from_pretrained(
                str(folder),
                use_safetensors=True,
                local_files_only=True,
                dtype=dtype,
                variant=variant,
            )
            if depth_lora is not None:
                pipe.load_lora_weights(str(depth_lora), adapter_name="depth")
    except TextureError:
        raise
    except Exception as error:
        logger.debug("Loading FLUX from %s failed", folder, exc_info=True)
        raise TextureError(
            f"Could not load the FLUX model in {folder}: {first_line(error)}"
        ) from error
    loras = []
    if depth_lora is not None:
        loras.append(
            {
                "path": str(depth_lora),
                "scale": 1.0,
                "sha256": sha256_of_file(str(depth_lora)),
                "role": "depth control",
            }
        )
    card_licence = model_licence(folder)
    record = ModelRecord(
        backend=BACKEND,
        pipeline=FluxControlPipeline.__name__,
        source=source,
        kind=kind,
        licence=FLUX_LICENCE if card_licence in (None, "other") else card_licence,
        loras=loras,
    )
    return pipe, record


def depth_control_image(depth: np.ndarray) -> np.ndarray:
    """The (H, W, 3) RGB control image FLUX.1 Depth takes: the depth map (near = white, in
    [0, 1]) in every channel, as the depth preprocessors it was trained with give it."""
    depth = validate_depth(depth)
    return np.repeat(depth[..., None], 3, axis=2)


@torch.no_grad()
def flux_keep_regions_hook(
    pipe: FluxControlPipeline, known: np.ndarray, keep: np.ndarray, seed: int
) -> LatentsHook:
    """An ``on_latents`` hook that holds ``known`` (H, W, 3 sRGB) where ``keep`` (H, W) is 1.

    FLUX's latents are tokens of 2x2 latent cells, so each step unpacks them, blends them with
    the known picture's latents noised to the step's sigma the flow-matching way
    (x = (1 - sigma) * x0 + sigma * noise), and packs them again. At the last step sigma is 0:
    the kept cells are the known picture's latents themselves.
    """
    vae = pipe.vae
    height, width = known.shape[:2]
    image = torch.from_numpy(np.ascontiguousarray(known[..., :3].transpose(2, 0, 1)))[None]
    image = pipe.image_processor.normalize(image.to(device=vae.device, dtype=vae.dtype))
    with out_of_memory("encoding the parts earlier views painted"):
        encoded = vae.encode(image).latent_dist.mean
    known_latents = (encoded - vae.config.shift_factor) * vae.config.scaling_factor
    batch, channels, latent_height, latent_width = known_latents.shape
    mask = torch.from_numpy(np.ascontiguousarray(keep, dtype=np.float32))[None, None]
    mask = functional.avg_pool2d(mask, pipe.vae_scale_factor)  # kept fraction per latent cell
    noise = torch.randn(known_latents.shape, generator=torch.Generator().manual_seed(seed + 1))

    def hook(steps_done: int, latents: torch.Tensor) -> torch.Tensor:
        unpacked = pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)
        sigma = float(pipe.scheduler.sigmas[steps_done])  # the noise level these latents are at
        target = known_latents.to(unpacked)
        target = (1.0 - sigma) * target + sigma * noise.to(unpacked)
        cell_mask = mask.to(unpacked)
        blended = cell_mask * target + (1.0 - cell_mask) * unpacked
        return pipe._pack_latents(blended, batch, channels, latent_height, latent_width)

    return hook


def validate_flux_settings(settings: GenerationSettings, *, prompt_required: bool = True) -> None:
    """The SD checks, plus what FLUX cannot take: a negative prompt."""
    validate_settings(settings, has_init_image=False, prompt_required=prompt_required)
    if settings.negative_prompt:
        raise SettingError(
            "negative_prompt",
            settings.negative_prompt,
            "empty",
            problem="FLUX.1 Depth takes no negative prompt (it is guidance-distilled): "
            "leave {name} empty",
        )


def generate_flux(
    pipe: FluxControlPipeline,
    depth: np.ndarray,
    settings: GenerationSettings,
    *,
    progress: Progress | None = None,
    on_latents: LatentsHook | None = None,
) -> np.ndarray:
    """Generate one (H, W, 3) float32 sRGB image in [0, 1] (row 0 = top) following ``depth``.

    Args:
        pipe: a loaded ``FluxControlPipeline`` (:func:`load_flux_folder`).
        depth: (H, W) float32 in [0, 1], near = bright, H and W multiples of 16.
        settings: prompt, seed, steps and guidance (the scheduler does not apply to FLUX).
        progress: after every step ``progress.update(done / total, ...)``, then
            ``progress.check()``, which raises ``CancelledError`` once cancelled.
        on_latents: may replace the packed latents after every step
            (:func:`flux_keep_regions_hook`).
    """
    # 1. Check every input before the model runs.
    validate_flux_settings(settings)
    control = depth_control_image(depth)
    height, width = control.shape[:2]
    if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
        raise TextureError(
            f"FLUX needs sides that are multiples of {SIZE_MULTIPLE}, got {width}x{height}"
        )
    if progress is not None:
        progress.check("before the first step")

    # 2. The control image, the seed and the pipeline's arguments.
    pipe.set_progress_bar_config(disable=True)
    control_tensor = torch.from_numpy(np.ascontiguousarray(control.transpose(2, 0, 1)))[None]
    call: dict[str, Any] = {
        "prompt": settings.prompt,
        "control_image": pipe.image_processor.normalize(control_tensor),
        "height": height,
        "width": width,
        "num_inference_steps": int(settings.steps),
        "guidance_scale": float(settings.guidance),
        "generator": torch.Generator(device="cpu").manual_seed(int(settings.seed)),
        "max_sequence_length": min(512, int(pipe.tokenizer_2.model_max_length)),
        "output_type": "np",
        "callback_on_step_end": _step_end(progress, on_latents),
        "callback_on_step_end_tensor_inputs": ["latents"],
    }

    # 3. Denoise from pure noise (the pipeline encodes no init image).
    started = time.perf_counter()
    with out_of_memory(f"generating a {width}x{height} image with FLUX"):
        images = pipe(**call).images

    # 4. Refuse a broken picture rather than baking it.
    result = checked_picture(images)
    logger.info(
        "FLUX generated %dx%d in %.1f s (%d steps, guidance %g, seed %d)",
        width,
        height,
        time.perf_counter() - started,
        settings.steps,
        settings.guidance,
        settings.seed,
    )
    return result
