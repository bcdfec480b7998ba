"""Where a model comes from, and how each kind is read safely, completely and strictly.

No bpy. Every failure a user can cause (a missing, damaged or unsafe file, another model) is a
one-line :class:`~sd_depth_texture.core.errors.TextureError` raised before the weights load.

Model sources (:attr:`ModelSpec.source`):

* a Hugging Face Hub id (default: the community mirror of ``stable-diffusion-2-depth``, pinned
  to :data:`~sd_depth_texture.defaults.MODEL_REVISION`): looked up in the caches first and
  downloaded only when ``allow_online`` is set (:mod:`.hub`);
* a local diffusers folder (``model_index.json`` plus ``unet``/``vae``/``text_encoder``/
  ``tokenizer``/``scheduler``, and ``text_encoder_2``/``tokenizer_2`` for SDXL) with
  ``.safetensors`` weights. Its ``model_index.json`` ``_class_name`` (and the UNet's and the
  ControlNet's configs) decide the backend (:func:`.backends.choose`) before any weights load;
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
* with :attr:`ModelSpec.controlnet`, a depth ControlNet from a Hub id, a folder or a
  ``.safetensors`` file beside its ``config.json`` (:mod:`.controlnets`);
* with :attr:`ModelSpec.depth_lora`, FLUX.1-dev's depth control LoRA (:mod:`.depth_loras`),
  which only that base takes (:meth:`.backends.base.Backend.check_depth_lora`);
* ``random``: a tiny random-weight pipeline (:func:`~.tiny.build_tiny_pipeline`) for testing;
  its textures are noise.

Pickle checkpoints (``.ckpt``, ``.bin``, ``.pt``, ``.pth``, ``.pkl``) are refused, never
unpickled: loading one can run arbitrary code.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, StableDiffusionDepth2ImgPipeline, UNet2DConditionModel
from huggingface_hub.utils import HFValidationError, validate_repo_id

from ...defaults import MODEL_ID, MODEL_LICENCE, MODEL_REVISION, RANDOM_MODEL
from ..errors import ModelUnavailableError, TextureError
from ..progress import Progress
from ..record import ModelRecord, sha256_of_file
from . import hub
from .backends import Backend, choose
from .backends.sd2_depth import SD2_DEPTH
from .controlnets import FoundControlNet, find_controlnet, load_controlnet
from .depth_loras import FoundDepthLora, find_depth_lora
from .device import first_line, out_of_memory
from .safe_files import (
    IncompleteModelError,
    load_strict,
    model_licence,
    pickle_refusal,
    read_json,
)
from .safe_files import check_safetensors as _check_safetensors
from .safe_files import refuse_special_files as _refuse_special_files
from .safe_files import require_regular_files as _require_regular_files
from .schedulers import scheduler_from_config_folder
from .settings import ModelSpec
from .tiny import build_tiny_pipeline

logger = logging.getLogger(__name__)

#: File types that are Python pickles: opening one can execute arbitrary code.
PICKLE_SUFFIXES = hub.PICKLE_SUFFIXES
#: Components whose weights are loaded (depth_estimator / feature_extractor are never needed).
WEIGHT_COMPONENTS = hub.WEIGHT_COMPONENTS
#: Every component folder the pipeline reads files from.
COMPONENTS = (*WEIGHT_COMPONENTS, "tokenizer", "scheduler")
#: Config files a folder (or a single file's config folder) must hold as regular files.
CONFIG_FILES = (
    "unet/config.json",
    "vae/config.json",
    "text_encoder/config.json",
    "scheduler/scheduler_config.json",
    "tokenizer/tokenizer_config.json",
)

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_FP16_NAME = hub.FP16_NAME


def load_source(spec: ModelSpec, dtype: torch.dtype, progress: Progress) -> tuple[Any, ModelRecord]:
    """Dispatch on the kind of source; every path ends in a strict, safetensors-only load.

    Returns the pipeline and the record of what was loaded: its backend, the Hub revision that
    was resolved or the sha256 of a single weights file, the licence its model card names, and
    the ControlNet. The backend is decided from the configs alone, so a wrong combination of
    model and ControlNet is refused before any weights load."""
    source = (spec.source or "").strip()
    if not source:
        raise TextureError("No model given: set a Hub id, a model folder, a file or 'random'")
    controlnet = find_controlnet(spec, dtype, progress) if spec.controlnet else None
    depth_lora = find_depth_lora(spec, progress) if spec.depth_lora else None
    if source == RANDOM_MODEL:
        choose(_SD2_INDEX, None, controlnet.config if controlnet else None, "'random'")
        SD2_DEPTH.check_depth_lora(f"'{source}'", {}, depth_lora)
        logger.warning("Using random weights: generated textures will be noise")
        return build_tiny_pipeline(), _record(source, "random", SD2_DEPTH)
    path = Path(source).expanduser()
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise pickle_refusal(path)
    if suffix == ".safetensors":
        _check_single_file_family(path, spec.config, controlnet)
        SD2_DEPTH.check_depth_lora(path.name, {}, depth_lora)
        pipe = load_single_file(path, spec.config)
        config = Path(spec.config) if spec.config else path.parent
        record = _record(
            source, "file", SD2_DEPTH, config, weights_sha256=sha256_of_file(str(path))
        )
    elif path.is_dir():
        pipe, backend = load_folder(path, dtype, controlnet, depth_lora)
        record = _record(source, "folder", backend, path)
    elif path.exists():
        raise TextureError(f"{path} is neither a diffusers model folder nor a .safetensors file")
    elif path.is_absolute() or source.startswith((".", "~")) or "\\" in source:
        raise TextureError(f"Model folder not found: {path}")
    elif _HUB_ID.fullmatch(source):
        pipe, backend, folder = _load_hub_model(
            spec, source, dtype, progress, controlnet, depth_lora
        )
        record = _record(source, "hub", backend, folder, revision=folder.name)
        if source == MODEL_ID and record.licence is None:
            record.licence = MODEL_LICENCE
    else:
        raise TextureError(
            f"Model '{source}' is not a folder, a .safetensors file or a Hugging Face id "
            "(owner/name)"
        )
    _check_token_length(pipe, source)
    if controlnet is not None:
        record.controlnet = controlnet.record
    if depth_lora is not None:
        record.loras.append(dict(depth_lora.record))
    return pipe, record


#: What the built-in test model and a single SD2 checkpoint are, for :func:`.backends.choose`.
_SD2_INDEX = {"_class_name": "StableDiffusionDepth2ImgPipeline"}


def _check_single_file_family(
    path: Path, config: str | None, controlnet: FoundControlNet | None
) -> None:
    """A single checkpoint file loads for SD2-depth only: say so, before anything is read, for
    a file whose config folder (or ControlNet) says it is of another family."""
    index_path = Path(config).expanduser() / "model_index.json" if config else None
    index = _SD2_INDEX
    if index_path is not None and index_path.is_file():
        index = read_json(index_path)
    elif controlnet is not None:
        index = {}
    backend = None
    if index:
        backend = choose(index, None, controlnet.config if controlnet else None, path.name)
    if backend is not SD2_DEPTH:
        family = backend.label if backend is not None else "a ControlNet model"
        raise TextureError(
            f"{path.name}: single checkpoint files load for SD2-depth only; give {family} as a "
            "diffusers folder or a Hub id (diffusers' from_single_file(...).save_pretrained("
            "folder) converts one)"
        )


def _record(
    source: str, kind: str, backend: Backend, folder: Path | None = None, **known: Any
) -> ModelRecord:
    return ModelRecord(
        backend=backend.name,
        pipeline=backend.pipeline_class.__name__,
        source=source,
        kind=kind,
        licence=backend.record_licence(model_licence(folder) if folder is not None else None),
        **known,
    )


# ---- Hugging Face Hub id ---------------------------------------------------------------------


def _load_hub_model(
    spec: ModelSpec,
    repo_id: str,
    dtype: torch.dtype,
    progress: Progress,
    controlnet: FoundControlNet | None = None,
    depth_lora: FoundDepthLora | None = None,
) -> tuple[Any, Backend, Path]:
    """The first complete cached copy, else a download (when allowed) into the download cache;
    returns the pipeline, its backend and the snapshot folder it came from (named by its
    revision)."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise TextureError(
            f"'{repo_id}' is not a valid Hugging Face id: {first_line(error)}"
        ) from error
    revision = MODEL_REVISION if repo_id == MODEL_ID else None
    caches = hub.search_caches(spec.cache_dir)
    unusable: list[IncompleteModelError] = []
    progress.update(0.0, f"Looking for {repo_id} in the model cache")
    for cache in caches:
        folder = hub.cached_snapshot(repo_id, revision, cache)
        if folder is None:
            continue
        try:
            backend, variant = check_model_folder(folder, dtype, controlnet, depth_lora)
        except IncompleteModelError as error:
            logger.info("The copy of %s in %s is unusable: %s", repo_id, cache, error)
            unusable.append(error)
            continue
        logger.info("Using the cached copy of %s in %s", repo_id, folder)
        pipe = _from_pretrained(folder, dtype, variant, backend, controlnet, depth_lora)
        return pipe, backend, folder
    if not spec.allow_online:
        if unusable:
            raise ModelUnavailableError(
                f"The cached copy of {repo_id} is unusable ({unusable[0]}) and online access "
                "is off."
            )
        where = " or ".join(str(cache) for cache in caches)
        raise ModelUnavailableError(
            f"Model {repo_id} is not cached in {where} and online access is off."
        )
    _check_hub_family(repo_id, revision, caches, controlnet, depth_lora)
    with progress.span(0.0, 0.9):
        folder = hub.download_snapshot(
            repo_id,
            revision,
            hub.download_cache(spec.cache_dir),
            want_fp16=dtype == torch.float16,
            progress=progress,
        )
    progress.update(0.95, f"Loading {repo_id}")
    pipe, backend = load_folder(folder, dtype, controlnet, depth_lora)
    return pipe, backend, folder


def _check_hub_family(
    repo_id: str,
    revision: str | None,
    caches: list[Path],
    controlnet: FoundControlNet | None,
    depth_lora: FoundDepthLora | None = None,
) -> None:
    """Before a download: the family from the repository's model_index.json and UNet config
    alone, and whether the depth LoRA fits it (FLUX's transformer and VAE configs), so a wrong
    combination downloads no weights."""
    configs = _hub_configs(repo_id, revision, ("model_index.json", "unet/config.json"), caches)
    if not isinstance(configs.get("model_index.json"), dict):
        raise TextureError(f"{repo_id} is not a diffusers model (no model_index.json)")
    unet = configs.get("unet/config.json")
    backend = choose(
        configs["model_index.json"],
        unet if isinstance(unet, dict) else None,
        controlnet.config if controlnet else None,
        repo_id,
    )
    names = backend.depth_lora_configs
    found = _hub_configs(repo_id, revision, names, caches) if names else {}
    missing = [name for name in names if not isinstance(found.get(name), dict)]
    if missing:
        raise TextureError(f"{repo_id} has no {missing[0]}: not a complete diffusers model")
    backend.check_depth_lora(repo_id, found, depth_lora)


def _hub_configs(
    repo_id: str, revision: str | None, names: tuple[str, ...], caches: list[Path]
) -> dict[str, Any]:
    """Those of ``names`` the repository has, parsed (:func:`.hub.download_configs`)."""
    configs: dict[str, Any] = {}
    for name, text in hub.download_configs(repo_id, revision, names, caches).items():
        try:
            configs[name] = json.loads(text)
        except ValueError as error:
            raise TextureError(f"{name} of {repo_id} is not JSON ({first_line(error)})") from error
    return configs


# ---- Local diffusers folder ------------------------------------------------------------------


def load_folder(
    folder: Path,
    dtype: torch.dtype,
    controlnet: FoundControlNet | None = None,
    depth_lora: FoundDepthLora | None = None,
) -> tuple[Any, Backend]:
    """Load a diffusers-layout folder from disk only, after checking it is safe, complete and
    of a family that fits ``controlnet`` and ``depth_lora``; returns the pipeline and its
    backend."""
    backend, variant = check_model_folder(folder, dtype, controlnet, depth_lora)
    return _from_pretrained(folder, dtype, variant, backend, controlnet, depth_lora), backend


def check_model_folder(
    folder: Path,
    dtype: torch.dtype,
    controlnet: FoundControlNet | None = None,
    depth_lora: FoundDepthLora | None = None,
) -> tuple[Backend, str | None]:
    """Check a diffusers folder without loading weights; returns its backend (decided from the
    configs and the ControlNet's) and the weight variant to load.

    Reading a pipe (FIFO) or a device blocks forever, and a tokenizer without its config pads
    prompts to ~1e30 tokens: both are refused here, before diffusers opens anything.
    """
    index_path = folder / "model_index.json"
    if not os.path.lexists(index_path):
        raise IncompleteModelError(
            f"{folder} is not a diffusers model folder (no model_index.json)"
        )
    _require_regular_files(folder, ["model_index.json"])
    index = read_json(index_path)
    unet_config = None
    if os.path.lexists(folder / "unet" / "config.json"):
        _require_regular_files(folder, ["unet/config.json"])
        unet_config = read_json(folder / "unet" / "config.json")
    backend = choose(index, unet_config, controlnet.config if controlnet else None, str(folder))
    components = (*backend.weight_components, *backend.tokenizers, "scheduler")
    _refuse_special_files(folder, components)
    configs = [f"{name}/config.json" for name in backend.weight_components]
    _require_regular_files(folder, [*configs, "scheduler/scheduler_config.json"])
    backend.check_base(folder, unet_config or {})
    names = backend.depth_lora_configs
    _require_regular_files(folder, list(names))
    configs = {name: read_json(folder / name) for name in names}
    backend.check_depth_lora(str(folder), configs, depth_lora)
    for number, tokenizer in enumerate(backend.tokenizers):
        encoder = "text_encoder" if number == 0 else f"text_encoder_{number + 1}"
        check_tokenizer(folder, read_json(folder / encoder / "config.json"), tokenizer)
    weights = {name: _component_weights(folder, name) for name in backend.weight_components}
    for files in weights.values():
        for path in files:
            _check_safetensors(path)
    return backend, _choose_variant(weights, dtype)


def check_tokenizer(
    folder: Path, text_encoder_config: dict[str, Any], name: str = "tokenizer"
) -> None:
    """The tokenizer files exist and their context fits the text encoder's positions."""
    tokenizer = folder / name
    what = f"{name}/ with tokenizer_config.json and tokenizer.json, or vocab.json and merges.txt"
    if not tokenizer.is_dir():
        raise IncompleteModelError(f"Model folder {folder} has no tokenizer ({what})")
    has_fast = (tokenizer / "tokenizer.json").is_file()
    has_slow = (tokenizer / "vocab.json").is_file() and (tokenizer / "merges.txt").is_file()
    config_path = tokenizer / "tokenizer_config.json"
    if not config_path.is_file() or not (has_fast or has_slow):
        raise IncompleteModelError(f"The tokenizer in {folder} is incomplete (needs {what})")
    length = read_json(config_path).get("model_max_length")
    # T5 (FLUX's second encoder) has relative positions: no fixed context to exceed.
    relative = text_encoder_config.get("model_type") == "t5"
    positions = text_encoder_config.get("max_position_embeddings", 10**9 if relative else 77)
    if not isinstance(length, int) or not 0 < length <= positions:
        raise IncompleteModelError(
            f"The tokenizer in {folder} has model_max_length {length!r} in "
            f"tokenizer_config.json; the text encoder takes {positions} tokens"
        )


def _check_token_length(pipe: Any, source: str) -> None:
    """Whatever the source, a prompt must pad to what each text encoder can take."""
    pairs = (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2"))
    for tokenizer_name, encoder_name in pairs:
        tokenizer = getattr(pipe, tokenizer_name, None)
        encoder = getattr(pipe, encoder_name, None)
        if tokenizer is None or encoder is None:
            continue
        length = tokenizer.model_max_length
        positions = getattr(encoder.config, "max_position_embeddings", None)
        if positions is not None and length > positions:
            raise TextureError(
                f"The {tokenizer_name} of {source} pads prompts to {length} tokens, the text "
                f"encoder takes {positions}: its tokenizer_config.json lacks model_max_length"
            )


def _component_weights(folder: Path, component: str) -> list[Path]:
    """The component's safetensors files; refuses folders whose weights are only pickles."""
    directory = folder / component
    if not directory.is_dir():
        raise IncompleteModelError(f"Model folder {folder} has no '{component}' folder")
    files = [p for p in directory.iterdir() if p.is_file()]
    weights = sorted(p for p in files if p.name.endswith(".safetensors"))
    if not weights:
        pickles = [p for p in files if p.suffix.lower() in PICKLE_SUFFIXES]
        if pickles:
            raise pickle_refusal(pickles[0])
        raise IncompleteModelError(f"Model folder {folder} has no weights in '{component}'")
    return weights


def _choose_variant(weights: dict[str, list[Path]], dtype: torch.dtype) -> str | None:
    """Use the fp16 files when running in fp16, or when they are the only ones present."""
    has_fp16 = all(any(_FP16_NAME.search(p.name) for p in ps) for ps in weights.values())
    has_full = all(any(not _FP16_NAME.search(p.name) for p in ps) for ps in weights.values())
    if has_fp16 and (dtype == torch.float16 or not has_full):
        return "fp16"
    return None


def _from_pretrained(
    folder: Path,
    dtype: torch.dtype,
    variant: str | None,
    backend: Backend,
    controlnet: FoundControlNet | None = None,
    depth_lora: FoundDepthLora | None = None,
) -> Any:
    logger.info("Loading %s as %s (variant %s, %s)", folder, backend.name, variant or "full", dtype)
    try:
        with out_of_memory("loading the model"):
            parts = {}
            if controlnet is not None:
                parts["controlnet"] = load_controlnet(controlnet, dtype)
            if depth_lora is not None:
                parts["depth_lora"] = depth_lora
            return backend.from_pretrained(folder, dtype, variant, **parts)
    except TextureError:
        raise
    except Exception as error:
        logger.debug("Loading %s failed", folder, exc_info=True)
        raise TextureError(f"Could not load the model in {folder}: {first_line(error)}") from error


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
        with out_of_memory(f"reading {path.name}"), safe_open(str(path), framework="pt") as handle:
            names = [key for key in handle.keys() if key.startswith(_LDM_PREFIXES)]  # noqa: SIM118
            return {key: handle.get_tensor(key) for key in names}
    except TextureError:
        raise
    except Exception as error:
        raise TextureError(
            f"Checkpoint {path} is corrupt or truncated ({first_line(error)})"
        ) from error


def _drop_penultimate_extra(checkpoint: dict[str, torch.Tensor], layers: int) -> None:
    """SD2 conditions on the penultimate OpenCLIP layer: the last resblock is unused."""
    indices = {int(m.group(1)) for key in checkpoint if (m := _RESBLOCK.match(key))}
    if indices and max(indices) == layers:
        for key in [
            k for k in checkpoint if (m := _RESBLOCK.match(k)) and int(m.group(1)) == layers
        ]:
            del checkpoint[key]


def _check_config_folder(path: Path, config_dir: Path) -> None:
    """The configs a single checkpoint needs, as regular readable files, before any is read."""
    if not config_dir.is_dir():
        raise TextureError(f"Config folder {config_dir} for {path.name} is not a folder")
    absent = [name for name in CONFIG_FILES if not os.path.lexists(config_dir / name)]
    if absent:
        raise TextureError(f"Config folder {config_dir} lacks {', '.join(absent)}")
    _refuse_special_files(config_dir, COMPONENTS)
    _require_regular_files(config_dir, list(CONFIG_FILES))
    check_tokenizer(config_dir, read_json(config_dir / "text_encoder" / "config.json"))


def load_single_file(path: Path, config: str | None) -> StableDiffusionDepth2ImgPipeline:
    """Build the components from ``config`` and fill them from an LDM-layout checkpoint."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        convert_open_clip_checkpoint,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    if not os.path.lexists(path):
        raise TextureError(f"Checkpoint file not found: {path}")
    if not path.is_file():
        raise TextureError(f"Checkpoint {path} is not a regular file")
    if not config:
        raise TextureError(
            f"{path.name} is a single checkpoint file: also give a config folder (a diffusers "
            "layout folder of the SD2 depth model with unet/, vae/, text_encoder/, tokenizer/ "
            "and scheduler/ configs)"
        )
    config_dir = Path(config).expanduser()
    _check_config_folder(path, config_dir)
    try:
        with out_of_memory("building the model"):
            unet = UNet2DConditionModel.from_config(
                UNet2DConditionModel.load_config(str(config_dir / "unet"))
            )
            vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(config_dir / "vae")))
            text_encoder = CLIPTextModel(
                CLIPTextConfig.from_pretrained(
                    str(config_dir / "text_encoder"), local_files_only=True
                )
            )
            tokenizer = CLIPTokenizer.from_pretrained(
                str(config_dir / "tokenizer"), local_files_only=True
            )
            scheduler = scheduler_from_config_folder(str(config_dir / "scheduler"))
    except TextureError:
        raise
    except Exception as error:
        raise TextureError(
            f"Could not read the configs in {config_dir}: {first_line(error)}"
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
            f"{first_line(error)}"
        ) from error
    if not hasattr(text_encoder, "text_model"):  # transformers >= 5.6 flattened CLIPTextModel
        text_state = {k.removeprefix("text_model."): v for k, v in text_state.items()}
    load_strict(unet, unet_state, "UNet", path)
    load_strict(vae, vae_state, "VAE", path)
    load_strict(text_encoder, text_state, "text encoder", path)
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
