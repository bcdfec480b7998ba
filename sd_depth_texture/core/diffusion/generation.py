"""Loading the Stable Diffusion 2 depth model and generating one view from a depth map.

Pure torch/diffusers: no ``bpy``. Every failure a user can cause (missing or unsafe weights, no
network, bad settings, out of memory, a broken result) surfaces as a one-line
:class:`~sd_depth_texture.core.errors.TextureError`, raised before anything is changed.

Model sources (:attr:`ModelSpec.source`):

* a Hugging Face Hub id (default: the community mirror of ``stable-diffusion-2-depth``, pinned to
  :data:`DEFAULT_REVISION`); only used from the local cache unless ``allow_online`` is set;
* a local diffusers folder (``model_index.json`` plus ``unet``/``vae``/``text_encoder``/
  ``tokenizer``/``scheduler``) with ``.safetensors`` weights;
* a single ``.safetensors`` file in the original Stability AI (LDM) layout of
  ``512-depth-ema``, together with :attr:`ModelSpec.config`, a diffusers-layout folder that holds
  the component configs (``unet/config.json``, ``vae/config.json``, ``text_encoder/config.json``,
  ``tokenizer/``, ``scheduler/scheduler_config.json``; weights there are ignored). Accepted keys:
  ``model.diffusion_model.*`` (UNet; ``model_ema.*`` EMA copies are preferred when present),
  ``first_stage_model.*`` (VAE, attention as 1x1 convolutions or linear) and
  ``cond_stage_model.model.*`` (OpenCLIP text tower: ``token_embedding``,
  ``positional_embedding``, ``transformer.resblocks.N`` with fused ``in_proj``, ``ln_final``).
  SD2 uses the penultimate text layer, so one resblock more than the config's
  ``num_hidden_layers`` is allowed and dropped. Everything else (``depth_model.*``, schedule
  buffers, ``text_projection``) is ignored. Conversion uses diffusers' own converters and every
  component is loaded strictly: any missing, unexpected or mis-shaped tensor is an error;
* ``random``: a tiny random-weight pipeline (:func:`build_tiny_pipeline`) for testing; its
  textures are noise.

Pickle checkpoints (``.ckpt``, ``.bin``, ``.pt``, ``.pth``, ``.pkl``) are refused, never
unpickled: loading one can run arbitrary code.
"""

from __future__ import annotations

import gc
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionDepth2ImgPipeline,
    UNet2DConditionModel,
)
from diffusers.utils.torch_utils import randn_tensor

from ...defaults import MODEL_ID, MODEL_REVISION, RANDOM_MODEL
from ...defaults import SCHEDULERS as SCHEDULER_CHOICES
from ..errors import CancelledError, TextureError
from .settings import GenerationSettings, ModelSpec, validate_settings
from .tiny import build_tiny_pipeline

logger = logging.getLogger(__name__)

DEFAULT_MODEL = MODEL_ID
DEFAULT_REVISION = MODEL_REVISION
RANDOM_SOURCE = RANDOM_MODEL
SCHEDULERS = tuple(SCHEDULER_CHOICES)

#: File types that are Python pickles: opening one can execute arbitrary code.
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl")
#: Components whose weights are loaded (depth_estimator / feature_extractor are never needed).
WEIGHT_COMPONENTS = ("unet", "vae", "text_encoder")

_SCHEDULER_CLASSES: dict[str, Any] = {
    "dpmpp": DPMSolverMultistepScheduler,
    "euler_a": EulerAncestralDiscreteScheduler,
    "ddim": DDIMScheduler,
    "pndm": PNDMScheduler,
}
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_FP16_NAME = re.compile(r"\.fp16[.-]")
_MIN_DEPTH_RANGE = 1e-3
_MIN_MAX_VALUE = 1.0 / 255.0
_OOM_ADVICE = "lower the resolution, use fp16 precision, or close other programs using GPU memory"
_OFFLINE_FIX = (
    "Allow online access in Blender's Preferences (System > Network) to download it once, "
    "or pass --model PATH to a local diffusers folder, or --model random to test with random "
    "weights"
)
_OFFLINE_FIX_UI = (  # the same advice in the panel's words (no command-line flags)
    "Allow Online Access in Blender's Preferences (System > Network) to download it once, "
    "or set Model in the add-on's preferences to a local diffusers folder, or to 'random' to "
    "test with random weights"
)


def _offline_fix(spec: ModelSpec) -> str:
    return _OFFLINE_FIX_UI if spec.door == "ui" else _OFFLINE_FIX


ProgressCallback = Callable[[str, float], None]


class _IncompleteModelError(TextureError):
    """A model folder lacks files or holds damaged ones (re-downloading would fix it)."""


@dataclass
class _Loaded:
    spec: ModelSpec
    pipe: StableDiffusionDepth2ImgPipeline
    device: torch.device
    dtype: torch.dtype


_lock = threading.RLock()
_loaded: _Loaded | None = None


# --------------------------------------------------------------------------------------------
# Device, precision, memory
# --------------------------------------------------------------------------------------------


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda, then mps, then cpu; an explicit device must exist on this machine."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as error:
        raise TextureError(
            f"Unknown device '{name}' (use auto, cpu, cuda, cuda:N or mps)"
        ) from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TextureError(f"Device '{name}' requested but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise TextureError(
                f"Device '{name}' requested but only {torch.cuda.device_count()} GPU(s) exist"
            )
    elif device.type == "mps" and not _mps_available():
        raise TextureError(f"Device '{name}' requested but Apple MPS is not available here")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise TextureError(f"Unsupported device '{name}' (use auto, cpu, cuda, cuda:N or mps)")
    return device


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """``auto`` -> fp16 on a GPU (half the memory, fast), fp32 on the CPU (fp16 is slow there)."""
    precision = (precision or "auto").strip().lower()
    if precision == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    if precision not in dtypes:
        raise TextureError(f"Unknown precision '{precision}' (use auto, fp16, bf16 or fp32)")
    if device.type == "cpu" and precision == "fp16":
        logger.warning("fp16 on the CPU is slow and may be unsupported; consider fp32 or bf16")
    return dtypes[precision]


def _is_oom(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def _empty_device_caches() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if _mps_available():
        torch.mps.empty_cache()


def _oom_error(doing: str, error: BaseException) -> TextureError:
    _empty_device_caches()
    logger.error("Out of memory while %s: %s", doing, _first_line(error))
    return TextureError(f"Out of memory while {doing}: {_OOM_ADVICE}")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _report(progress: ProgressCallback | None, message: str, fraction: float) -> None:
    if progress is not None:
        progress(message, min(max(float(fraction), 0.0), 1.0))


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_pipeline(
    spec: ModelSpec, progress: ProgressCallback | None = None
) -> StableDiffusionDepth2ImgPipeline:
    """Load (or return the cached) pipeline for ``spec``.

    Only one pipeline is kept: models take GBs of GPU memory, so a different spec releases the
    old one before loading. ``progress(message, fraction)`` may be called from download threads.
    """
    global _loaded
    with _lock:
        if _loaded is not None and _loaded.spec == spec:
            return _loaded.pipe
        free_pipeline()
        device = resolve_device(spec.device)
        dtype = resolve_dtype(spec.precision, device)
        started = time.perf_counter()
        _report(progress, f"Loading {spec.source}", 0.0)
        try:
            pipe = _load_any(spec, device, dtype, progress)
            _report(progress, f"Moving the model to {device}", 0.95)
            pipe = pipe.to(device=device)
            if pipe.dtype != dtype:
                pipe = pipe.to(dtype=dtype)
        except TextureError:
            raise
        except Exception as error:
            if _is_oom(error):
                raise _oom_error(f"loading the model onto {device}", error) from error
            raise
        pipe.set_progress_bar_config(disable=True)
        _loaded = _Loaded(spec=spec, pipe=pipe, device=device, dtype=dtype)
        logger.info(
            "Loaded %s in %.1f s: %s", spec.source, time.perf_counter() - started, pipeline_status()
        )
        _report(progress, "Model loaded", 1.0)
        return pipe


def free_pipeline() -> bool:
    """Drop the cached pipeline and return its GPU memory; True if one was loaded."""
    global _loaded
    with _lock:
        was_loaded = _loaded is not None
        _loaded = None
        _empty_device_caches()
        if was_loaded:
            logger.info("Released the model")
        return was_loaded


def pipeline_status() -> str:
    """One line for a UI panel describing what is loaded."""
    with _lock:
        if _loaded is None:
            return "not loaded"
        dtype = str(_loaded.dtype).removeprefix("torch.")
        where = f"on {_loaded.device} ({dtype})"
        if _loaded.spec.source.strip() == RANDOM_SOURCE:
            return f"random test weights {where}: textures are noise"
        return f"{_loaded.spec.source} {where}"


def _load_any(
    spec: ModelSpec,
    device: torch.device,
    dtype: torch.dtype,
    progress: ProgressCallback | None,
) -> StableDiffusionDepth2ImgPipeline:
    """Dispatch on the kind of source; every path ends in a strict, safetensors-only load."""
    source = (spec.source or "").strip()
    if not source:
        raise TextureError("No model given: set a Hub id, a model folder, a file or 'random'")
    if source == RANDOM_SOURCE:
        logger.warning("Using random weights: generated textures will be noise")
        return build_tiny_pipeline()
    path = Path(source).expanduser()
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise _pickle_refusal(path)
    if suffix == ".safetensors":
        return _load_single_file(path, spec.config)
    if path.is_dir():
        return _load_folder(path, dtype)
    if path.exists():
        raise TextureError(f"{path} is neither a diffusers model folder nor a .safetensors file")
    if path.is_absolute() or source.startswith((".", "~")) or "\\" in source:
        raise TextureError(f"Model folder not found: {path}")
    if _HUB_ID.fullmatch(source):
        folder = _hub_snapshot(spec, source, device, dtype, progress)
        try:
            return _load_folder(folder, dtype)
        except _IncompleteModelError as error:
            if spec.allow_online:
                raise
            raise TextureError(
                f"The cached copy of {source} is unusable ({error}) and online access is off. "
                f"{_offline_fix(spec)}"
            ) from error
    raise TextureError(
        f"Model '{source}' is not a folder, a .safetensors file or a Hugging Face id (owner/name)"
    )


def _pickle_refusal(path: Path) -> TextureError:
    return TextureError(
        f"Refusing to load {path.name}: pickle weights ({', '.join(PICKLE_SUFFIXES)}) can run "
        "arbitrary code when opened; use .safetensors weights instead"
    )


def _check_safetensors(path: Path) -> None:
    """Read only the header: catches truncated or corrupt files before a multi-GB load."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            handle.keys()
    except Exception as error:
        raise _IncompleteModelError(
            f"Weights file {path} is corrupt or truncated ({_first_line(error)}); "
            "delete it and download or copy it again"
        ) from error


def _component_weights(folder: Path, component: str) -> list[Path]:
    """The component's safetensors files; refuses folders whose weights are only pickles."""
    directory = folder / component
    if not directory.is_dir():
        raise _IncompleteModelError(f"Model folder {folder} has no '{component}' folder")
    files = [p for p in directory.iterdir() if p.is_file()]
    weights = sorted(p for p in files if p.name.endswith(".safetensors"))
    if not weights:
        pickles = [p for p in files if p.suffix.lower() in PICKLE_SUFFIXES]
        if pickles:
            raise _pickle_refusal(pickles[0])
        raise _IncompleteModelError(f"Model folder {folder} has no weights in '{component}'")
    return weights


def _choose_variant(weights: dict[str, list[Path]], dtype: torch.dtype) -> str | None:
    """Use the fp16 files when running in fp16, or when they are the only ones present."""
    has_fp16 = all(any(_FP16_NAME.search(p.name) for p in ps) for ps in weights.values())
    has_full = all(any(not _FP16_NAME.search(p.name) for p in ps) for ps in weights.values())
    if has_fp16 and (dtype == torch.float16 or not has_full):
        return "fp16"
    return None


def _load_folder(folder: Path, dtype: torch.dtype) -> StableDiffusionDepth2ImgPipeline:
    """Load a diffusers-layout folder from disk only, after checking it is safe and complete."""
    index = folder / "model_index.json"
    if not index.is_file():
        raise _IncompleteModelError(
            f"{folder} is not a diffusers model folder (no model_index.json)"
        )
    try:
        unet_config = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise _IncompleteModelError(
            f"Model folder {folder} has no readable unet/config.json"
        ) from error
    if unet_config.get("in_channels") != 5:
        raise TextureError(
            f"{folder} is not a Stable Diffusion 2 depth model (its UNet takes "
            f"{unet_config.get('in_channels')} input channels, the depth model takes 5)"
        )
    weights = {name: _component_weights(folder, name) for name in WEIGHT_COMPONENTS}
    for files in weights.values():
        for path in files:
            _check_safetensors(path)
    variant = _choose_variant(weights, dtype)
    logger.info("Loading %s (variant %s, %s)", folder, variant or "full", dtype)
    try:
        pipe = StableDiffusionDepth2ImgPipeline.from_pretrained(
            str(folder),
            depth_estimator=None,
            feature_extractor=None,
            use_safetensors=True,
            local_files_only=True,
            dtype=dtype,
            variant=variant,
        )
    except Exception as error:
        if _is_oom(error):
            raise _oom_error("loading the model", error) from error
        logger.debug("Loading %s failed", folder, exc_info=True)
        raise TextureError(f"Could not load the model in {folder}: {_first_line(error)}") from error
    return pipe


# ---- Hugging Face Hub -----------------------------------------------------------------------


def _progress_tqdm(progress: ProgressCallback | None) -> type:
    """A silent tqdm class that forwards each bar's fraction to ``progress``."""
    import io

    from tqdm.std import tqdm

    class _ForwardingTqdm(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["disable"] = False
            kwargs["file"] = io.StringIO()
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            if progress is not None:
                fraction = self.n / self.total if self.total else 0.0
                progress(f"Downloading the model: {self.desc or 'files'}", 0.9 * fraction)
            return shown

    return _ForwardingTqdm


def _download_patterns(repo_files: list[str], want_fp16: bool) -> list[str]:
    """Only the files the pipeline needs: configs, tokenizer, one safetensors set per model."""
    patterns = ["model_index.json", "scheduler/*.json", "tokenizer/*"]
    for component in WEIGHT_COMPONENTS:
        prefix = f"{component}/"
        names = [f for f in repo_files if f.startswith(prefix) and "/" not in f[len(prefix) :]]
        weights = [f for f in names if f.endswith((".safetensors", ".json")) and "config" not in f]
        fp16 = [f for f in weights if _FP16_NAME.search(f)]
        full = [f for f in weights if not _FP16_NAME.search(f)]
        chosen = fp16 if fp16 and (want_fp16 or not full) else full
        if not any(f.endswith(".safetensors") for f in chosen):
            pickles = [f for f in names if f.lower().endswith(PICKLE_SUFFIXES)]
            if pickles:
                raise _pickle_refusal(Path(pickles[0]))
            raise TextureError(f"The Hub model has no safetensors weights for '{component}'")
        patterns += [f"{prefix}config.json", *chosen]
    return patterns


def _hub_snapshot(
    spec: ModelSpec,
    repo_id: str,
    device: torch.device,
    dtype: torch.dtype,
    progress: ProgressCallback | None,
) -> Path:
    """Resolve a Hub id to a complete local snapshot, downloading only when allowed."""
    from huggingface_hub import HfApi, snapshot_download

    revision = DEFAULT_REVISION if repo_id == DEFAULT_MODEL else None
    ignore = [f"*{suffix}" for suffix in PICKLE_SUFFIXES] + [
        "depth_estimator/*",
        "feature_extractor/*",
    ]
    where = spec.cache_dir or "the default Hugging Face cache"
    if not spec.allow_online:
        # Ask only for model_index.json: a previous download fetched a subset (one weight
        # variant), and the hub would call the snapshot incomplete against the full listing.
        # _load_folder then checks that what the pipeline needs is present and intact.
        try:
            folder = snapshot_download(
                repo_id,
                revision=revision,
                cache_dir=spec.cache_dir,
                local_files_only=True,
                allow_patterns=["model_index.json"],
            )
        except Exception as error:
            logger.info("Cache lookup for %s failed: %s", repo_id, _first_line(error))
            raise TextureError(
                f"Model {repo_id} is not cached in {where} and online access is off. "
                f"{_offline_fix(spec)}"
            ) from error
        return Path(folder)
    try:
        repo_files = HfApi().list_repo_files(repo_id, revision=revision)
        patterns = _download_patterns(repo_files, want_fp16=dtype == torch.float16)
        logger.info("Downloading %s@%s into %s", repo_id, revision or "main", where)
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=spec.cache_dir,
            allow_patterns=patterns,
            ignore_patterns=ignore,
            tqdm_class=_progress_tqdm(progress),
        )
    except TextureError:
        raise
    except Exception as error:
        logger.debug("Downloading %s failed", repo_id, exc_info=True)
        raise TextureError(f"Could not download {repo_id}: {_first_line(error)}") from error
    return Path(folder)


# ---- Single LDM-layout .safetensors file ---------------------------------------------------

_LDM_PREFIXES = (
    "model.diffusion_model.",
    "model_ema.",
    "first_stage_model.",
    "vae.",
    "cond_stage_model.model.",
)
_OPENCLIP_PREFIX = "cond_stage_model.model."
_RESBLOCK = re.compile(re.escape(_OPENCLIP_PREFIX) + r"transformer\.resblocks\.(\d+)\.")


def _read_ldm_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Read only the UNet/VAE/text tensors (skips e.g. the ~500 MB MiDaS ``depth_model``)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            names = [key for key in handle.keys() if key.startswith(_LDM_PREFIXES)]  # noqa: SIM118
            return {key: handle.get_tensor(key) for key in names}
    except Exception as error:
        if _is_oom(error) or isinstance(error, MemoryError):
            raise TextureError(f"Not enough memory to read {path}") from error
        raise TextureError(
            f"Checkpoint {path} is corrupt or truncated ({_first_line(error)})"
        ) from error


def _drop_penultimate_extra(checkpoint: dict[str, torch.Tensor], layers: int) -> None:
    """SD2 conditions on the penultimate OpenCLIP layer: the last resblock is unused."""
    indices = {int(m.group(1)) for key in checkpoint if (m := _RESBLOCK.match(key))}
    if indices and max(indices) == layers:
        for key in [
            k for k in checkpoint if (m := _RESBLOCK.match(k)) and int(m.group(1)) == layers
        ]:
            del checkpoint[key]


def _load_strict(module: torch.nn.Module, state: dict[str, Any], what: str, source: Path) -> None:
    """Load every tensor exactly: a partial match would silently generate garbage."""
    state = {k: v for k, v in state.items() if v is not None}
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise TextureError(
            f"The {what} weights in {source.name} do not match the config: "
            f"{len(missing)} missing (e.g. {', '.join(missing[:2]) or '-'}), "
            f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:2]) or '-'})"
        )
    wrong = [k for k, v in state.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if wrong:
        key = wrong[0]
        raise TextureError(
            f"The {what} weights in {source.name} do not match the config: {key} has shape "
            f"{tuple(state[key].shape)}, expected {tuple(expected[key].shape)}"
        )
    module.load_state_dict(state, strict=True)


def _config_scheduler(folder: Path) -> Any:
    config = PNDMScheduler.load_config(str(folder))
    classes = {cls.__name__: cls for cls in _SCHEDULER_CLASSES.values()}
    return classes.get(config.get("_class_name"), PNDMScheduler).from_config(config)


def _load_single_file(path: Path, config: str | None) -> StableDiffusionDepth2ImgPipeline:
    """Build the components from ``config`` and fill them from an LDM-layout checkpoint."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        convert_open_clip_checkpoint,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    if not path.is_file():
        raise TextureError(f"Checkpoint file not found: {path}")
    if not config:
        raise TextureError(
            f"{path.name} is a single checkpoint file: also give a config folder (a diffusers "
            "layout folder of the SD2 depth model with unet/, vae/, text_encoder/, tokenizer/ "
            "and scheduler/ configs)"
        )
    config_dir = Path(config).expanduser()
    needed = (
        "unet/config.json",
        "vae/config.json",
        "text_encoder/config.json",
        "tokenizer",
        "scheduler/scheduler_config.json",
    )
    absent = [name for name in needed if not (config_dir / name).exists()]
    if absent:
        raise TextureError(f"Config folder {config_dir} lacks {', '.join(absent)}")
    try:
        unet = UNet2DConditionModel.from_config(
            UNet2DConditionModel.load_config(str(config_dir / "unet"))
        )
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(config_dir / "vae")))
        text_encoder = CLIPTextModel(
            CLIPTextConfig.from_pretrained(str(config_dir / "text_encoder"), local_files_only=True)
        )
        tokenizer = CLIPTokenizer.from_pretrained(
            str(config_dir / "tokenizer"), local_files_only=True
        )
        scheduler = _config_scheduler(config_dir / "scheduler")
    except Exception as error:
        if _is_oom(error) or isinstance(error, MemoryError):
            raise TextureError("Not enough memory to build the model") from error
        raise TextureError(
            f"Could not read the configs in {config_dir}: {_first_line(error)}"
        ) from error
    if unet.config.in_channels != 5:
        raise TextureError(f"{config_dir} is not a Stable Diffusion 2 depth config")

    checkpoint = _read_ldm_checkpoint(path)
    _drop_penultimate_extra(checkpoint, text_encoder.config.num_hidden_layers)
    try:
        unet_state = convert_ldm_unet_checkpoint(checkpoint, unet.config, extract_ema=True)
        vae_state = convert_ldm_vae_checkpoint(checkpoint, vae.config)
        text_state = convert_open_clip_checkpoint(text_encoder, checkpoint, prefix=_OPENCLIP_PREFIX)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError, RuntimeError) as error:
        raise TextureError(
            f"{path.name} is not an SD2 depth checkpoint in the original (LDM) layout: "
            f"{_first_line(error)}"
        ) from error
    if not hasattr(text_encoder, "text_model"):  # transformers >= 5.6 flattened CLIPTextModel
        text_state = {k.removeprefix("text_model."): v for k, v in text_state.items()}
    _load_strict(unet, unet_state, "UNet", path)
    _load_strict(vae, vae_state, "VAE", path)
    _load_strict(text_encoder, text_state, "text encoder", path)
    del checkpoint
    logger.info("Converted %s with the configs in %s", path, config_dir)
    return StableDiffusionDepth2ImgPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=scheduler,
        depth_estimator=None,
        feature_extractor=None,
    )


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def validate_depth(depth: np.ndarray) -> np.ndarray:
    """Check the depth map and return it as contiguous float32 (H, W).

    The pipeline min-max normalises depth with no epsilon, so a constant map or one non-finite
    pixel turns the whole image into NaN without an error: refuse those here.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise TextureError(f"The depth map must be a 2D (H, W) array, got shape {depth.shape}")
    height, width = depth.shape
    if height < 8 or width < 8 or height % 8 or width % 8:
        raise TextureError(f"Depth map size {width}x{height} must be a positive multiple of 8")
    if not np.issubdtype(depth.dtype, np.floating):
        raise TextureError(f"The depth map must be floating point, got {depth.dtype}")
    depth = np.ascontiguousarray(depth, dtype=np.float32)
    if not np.isfinite(depth).all():
        raise TextureError("The depth map contains NaN or infinite values")
    low, high = float(depth.min()), float(depth.max())
    if low < 0.0 or high > 1.0:
        raise TextureError(f"Depth values must be in [0, 1], got [{low:.4g}, {high:.4g}]")
    if high - low < _MIN_DEPTH_RANGE:
        raise TextureError("The depth map is (nearly) constant: nothing for the model to follow")
    return depth


def _validate_init_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.shape[:2] != shape:
        raise TextureError(
            f"The init image must be (H, W, 3) matching the depth map {shape}, got {image.shape}"
        )
    image = np.ascontiguousarray(image[..., :3], dtype=np.float32)
    if not np.isfinite(image).all():
        raise TextureError("The init image contains NaN or infinite values")
    if float(image.min()) < 0.0 or float(image.max()) > 1.0:
        raise TextureError("Init image values must be in [0, 1]")
    return image


def _placeholder_image(height: int, width: int) -> torch.Tensor:
    """The pipeline insists on an ``image``; without an init image it only sets the size."""
    return torch.zeros((1, 3, height, width), dtype=torch.float32)


def make_scheduler(pipe: StableDiffusionDepth2ImgPipeline, name: str) -> Any:
    """A fresh scheduler of kind ``name`` built from the model's own noise schedule."""
    config = pipe.scheduler.config
    if name == "dpmpp":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++")
    return _SCHEDULER_CLASSES[name].from_config(config)


@contextmanager
def _pure_noise_start(pipe: StableDiffusionDepth2ImgPipeline) -> Iterator[None]:
    """Start from pure noise for this call: no VAE encode and no placeholder image leaking in.

    The stock ``prepare_latents`` always encodes ``image`` and mixes ~8 % of it into the start
    latent even at strength 1 (sqrt(alpha_bar) of the first timestep).
    """

    def prepare_latents(
        image: torch.Tensor,
        timestep: torch.Tensor,
        batch_size: int,
        num_images_per_prompt: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        scale = pipe.vae_scale_factor
        shape = (
            batch_size * num_images_per_prompt,
            pipe.vae.config.latent_channels,
            image.shape[-2] // scale,
            image.shape[-1] // scale,
        )
        noise = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        return noise * pipe.scheduler.init_noise_sigma

    had_own = "prepare_latents" in vars(pipe)
    previous = vars(pipe).get("prepare_latents")
    object.__setattr__(pipe, "prepare_latents", prepare_latents)
    try:
        yield
    finally:
        if had_own:
            object.__setattr__(pipe, "prepare_latents", previous)
        else:
            object.__delattr__(pipe, "prepare_latents")


def generate(
    pipe: StableDiffusionDepth2ImgPipeline,
    depth: np.ndarray,
    settings: GenerationSettings,
    *,
    init_image: np.ndarray | None = None,
    on_step: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_latents: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
) -> np.ndarray:
    """Generate one (H, W, 3) float32 sRGB image in [0, 1] (row 0 = top) following ``depth``.

    ``depth`` is (H, W) float32 in [0, 1], near = bright, H and W multiples of 8. Without
    ``init_image`` the run starts from pure noise; with one it is img2img at
    ``settings.strength``. After every denoising step ``on_latents(steps_done, latents)`` may
    return replacement latents (same shape), then ``on_step(steps_done, total)`` is called and
    ``should_cancel()`` polled; True raises :class:`CancelledError`.
    """
    validate_settings(settings, has_init_image=init_image is not None)
    depth = validate_depth(depth)
    height, width = depth.shape
    if init_image is not None:
        image = _validate_init_image(init_image, (height, width))
        image_tensor = torch.from_numpy(image.transpose(2, 0, 1)[None].copy())
        strength = float(settings.strength)
    else:
        image_tensor = _placeholder_image(height, width)
        strength = 1.0
    if should_cancel is not None and should_cancel():
        raise CancelledError("Cancelled before the first step")

    def step_end(
        pipeline: StableDiffusionDepth2ImgPipeline, index: int, _t: Any, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        done, total = index + 1, pipeline.num_timesteps
        latents = kwargs["latents"]
        if on_latents is not None:
            replaced = on_latents(done, latents)
            if replaced is not None:
                if replaced.shape != latents.shape:
                    raise TextureError(
                        f"on_latents returned shape {tuple(replaced.shape)}, "
                        f"expected {tuple(latents.shape)}"
                    )
                latents = replaced.to(device=latents.device, dtype=latents.dtype)
        if on_step is not None:
            on_step(done, total)
        if should_cancel is not None and should_cancel():
            raise CancelledError(f"Cancelled after {done} of {total} steps")
        return {"latents": latents}

    pipe.scheduler = make_scheduler(pipe, settings.scheduler)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator(device="cpu").manual_seed(int(settings.seed))
    call = {
        "prompt": settings.prompt,
        "negative_prompt": settings.negative_prompt or None,
        "image": image_tensor,
        "depth_map": torch.from_numpy(depth[None].copy()),
        "strength": strength,
        "num_inference_steps": int(settings.steps),
        "guidance_scale": float(settings.guidance),
        "generator": generator,
        "output_type": "np",
        "callback_on_step_end": step_end,
        "callback_on_step_end_tensor_inputs": ["latents"],
    }
    started = time.perf_counter()
    try:
        if init_image is None:
            with _pure_noise_start(pipe):
                images = pipe(**call).images
        else:
            images = pipe(**call).images
    except TextureError:
        raise
    except Exception as error:
        if _is_oom(error):
            raise _oom_error(f"generating a {width}x{height} image", error) from error
        raise
    result = np.ascontiguousarray(np.asarray(images)[0], dtype=np.float32)
    if not np.isfinite(result).all():
        raise TextureError(
            "The model produced an invalid image (NaN values): try fp32 precision or another "
            "model; the weights may be broken"
        )
    if float(result.max()) < _MIN_MAX_VALUE:
        raise TextureError(
            "The model produced an invalid image (all black): try fp32 precision or another model"
        )
    logger.info(
        "Generated %dx%d in %.1f s (%d steps, %s, seed %d)",
        width,
        height,
        time.perf_counter() - started,
        settings.steps,
        settings.scheduler,
        settings.seed,
    )
    return result
