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
* a single ``.safetensors`` file in the original Stability AI (LDM) layout of SD2-depth
  (``512-depth-ema``), of an SD 1.5 or of an SDXL base (the latter two with a depth ControlNet),
  together with :attr:`ModelSpec.config`, a diffusers-layout folder of that family that holds the
  component configs and tokenizers (weights there are ignored). The family comes from the file's
  header alone (text encoder under ``cond_stage_model.model.``: SD2, ``cond_stage_model.
  transformer.``: SD 1.5, ``conditioner.embedders.``: SDXL) and must agree with the config
  folder and the ControlNet before any weights are read. Accepted keys:
  ``model.diffusion_model.*`` (UNet, SDXL's ``label_emb`` included; ``model_ema.*`` EMA copies
  are preferred when present), ``first_stage_model.*`` (VAE, attention as 1x1 convolutions or
  linear) and the text encoders: SD2's OpenCLIP tower (fused ``in_proj``; SD2 uses the
  penultimate layer, so one resblock more than the config's ``num_hidden_layers`` is allowed
  and dropped), SD 1.5's CLIP in Hugging Face layout, SDXL's CLIP-L (``conditioner.embedders.0.
  transformer.``) and OpenCLIP-G with its ``text_projection`` (``conditioner.embedders.1.
  model.``). Everything else (``depth_model.*``, schedule buffers) is ignored. Conversion uses
  diffusers' own converters and every component is loaded strictly: any missing, unexpected or
  mis-shaped tensor is an error;
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
from diffusers import AutoencoderKL, UNet2DConditionModel
from huggingface_hub.utils import HFValidationError, validate_repo_id

from ...defaults import MODEL_ID, MODEL_LICENCE, MODEL_REVISION, RANDOM_MODEL
from ..errors import ModelUnavailableError, TextureError
from ..progress import Progress
from ..record import ModelRecord, sha256_of_file
from . import hub
from .backends import Backend, a, backends, choose
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
    safetensors_in,
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
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w.-]+)?")  # ORG/NAME[@REVISION]
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
        backend = check_single_file_family(path, spec.config, controlnet)
        backend.check_depth_lora(path.name, {}, depth_lora)
        pipe = load_single_file(path, spec.config, backend, controlnet, dtype)
        config = Path(spec.config) if spec.config else path.parent
        record = _record(source, "file", backend, config, weights_sha256=sha256_of_file(str(path)))
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


#: What the built-in test model is, for :func:`.backends.choose`.
_SD2_INDEX = {"_class_name": "StableDiffusionDepth2ImgPipeline"}


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
    asked = repo_id  # as given, with its @REVISION: what the messages name
    repo_id, revision = hub.split_revision(repo_id)
    if revision is None and repo_id == MODEL_ID:
        revision = MODEL_REVISION
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise TextureError(
            f"'{repo_id}' is not a valid Hugging Face id: {first_line(error)}"
        ) from error
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
                f"The cached copy of {asked} is unusable ({unusable[0]}) and online access is off."
            )
        where = " or ".join(str(cache) for cache in caches)
        raise ModelUnavailableError(
            f"Model {asked} is not cached in {where} and online access is off."
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
    weights = safetensors_in(directory)
    if not weights:
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

#: Each family's text-encoder key in an original (LDM) checkpoint, the saved pipeline class it
#: stands for (:func:`.backends.choose`), and what messages call it.
_CHECKPOINT_FAMILIES = (
    ("conditioner.embedders.", "StableDiffusionXLPipeline", "SDXL"),
    ("cond_stage_model.transformer.", "StableDiffusionPipeline", "Stable Diffusion 1.5"),
    ("cond_stage_model.model.", "StableDiffusionDepth2ImgPipeline", "SD2-depth"),
)
_LDM_PREFIXES = (
    "model.diffusion_model.",
    "model_ema.",
    "first_stage_model.",
    "vae.",
    "cond_stage_model.",
    "conditioner.embedders.",
)
_OPENCLIP_PREFIX = "cond_stage_model.model."
_CLIP_PREFIX = "cond_stage_model.transformer."
_SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer."
_SDXL_OPENCLIP_PREFIX = "conditioner.embedders.1.model."
_RESBLOCK = re.compile(re.escape(_OPENCLIP_PREFIX) + r"transformer\.resblocks\.(\d+)\.")
_MAX_HEADER = 100 * 2**20


def checkpoint_keys(path: Path) -> list[str]:
    """The tensor names of a ``.safetensors`` file, from its header alone (no weights read)."""
    import struct

    if not os.path.lexists(path):
        raise TextureError(f"Checkpoint file not found: {path}")
    if not path.is_file():
        raise TextureError(f"Checkpoint {path} is not a regular file")
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if not 0 < length <= _MAX_HEADER:
                raise ValueError(f"header length {length}")
            header = json.loads(handle.read(length))
        return [key for key in header if key != "__metadata__"]
    except (OSError, ValueError, struct.error) as error:
        raise TextureError(
            f"Checkpoint {path} is corrupt or truncated ({first_line(error)})"
        ) from error


def check_single_file_family(
    path: Path, config: str | None, controlnet: FoundControlNet | None
) -> Backend:
    """The backend of a single checkpoint, from its header's text-encoder keys (SD 1.5, SDXL or
    SD2), the config folder's ``model_index.json`` and UNet config and the ControlNet's config:
    every wrong combination is one line before any weights are read."""
    keys = checkpoint_keys(path)
    found = next(
        (
            (class_name, label)
            for prefix, class_name, label in _CHECKPOINT_FAMILIES
            if any(key.startswith(prefix) for key in keys)
        ),
        None,
    )
    if found is None:
        raise TextureError(
            f"{path.name} is not a Stable Diffusion checkpoint in the original (LDM) layout (no "
            "cond_stage_model or conditioner text encoder keys)"
        )
    class_name, label = found
    config_dir = Path(config).expanduser() if config else None
    index_path = config_dir / "model_index.json" if config_dir is not None else None
    if index_path is not None and index_path.is_file():
        folder_class = str(read_json(index_path).get("_class_name", ""))
        folder_families = {b.label for b in backends() if folder_class in b.base_classes}
        if not folder_families & {b.label for b in backends() if class_name in b.base_classes}:
            folder_family = min(folder_families, default=folder_class or "no known model")
            raise TextureError(
                f"{path.name} is {a(label)} checkpoint, its config folder {config_dir} is "
                f"{folder_family}: give the configs of {a(label)} model"
            )
    unet_config = None
    if config_dir is not None and (config_dir / "unet" / "config.json").is_file():
        unet_config = read_json(config_dir / "unet" / "config.json")
    backend = choose(
        {"_class_name": class_name},
        unet_config,
        controlnet.config if controlnet else None,
        f"{path.name} ({label})",
    )
    return backend


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


def _config_files(backend: Backend) -> list[str]:
    """The config files a single checkpoint of ``backend``'s family needs from its folder."""
    return [
        *(f"{name}/config.json" for name in backend.weight_components),
        *(f"{name}/tokenizer_config.json" for name in backend.tokenizers),
        "scheduler/scheduler_config.json",
    ]


def _check_config_folder(path: Path, config_dir: Path, backend: Backend) -> dict[str, Any]:
    """The configs a single checkpoint needs, as regular readable files, before any is read;
    returns the UNet's config."""
    if not config_dir.is_dir():
        raise TextureError(f"Config folder {config_dir} for {path.name} is not a folder")
    names = _config_files(backend)
    absent = [name for name in names if not os.path.lexists(config_dir / name)]
    if absent:
        raise TextureError(f"Config folder {config_dir} lacks {', '.join(absent)}")
    _refuse_special_files(
        config_dir, (*backend.weight_components, *backend.tokenizers, "scheduler")
    )
    _require_regular_files(config_dir, names)
    for number, tokenizer in enumerate(backend.tokenizers):
        encoder = "text_encoder" if number == 0 else f"text_encoder_{number + 1}"
        check_tokenizer(config_dir, read_json(config_dir / encoder / "config.json"), tokenizer)
    unet_config = read_json(config_dir / "unet" / "config.json")
    try:
        backend.check_base(config_dir, unet_config)
    except TextureError as error:
        raise TextureError(
            f"{config_dir} is not {a(backend.label)} config folder for {path.name}: {error}"
        ) from error
    return unet_config


def _text_state(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Converted text-encoder keys as ``module`` names them (transformers >= 5.6 flattened
    ``CLIPTextModel``; ``position_ids`` is a buffer older checkpoints saved)."""
    expected = set(module.state_dict())
    fitted: dict[str, Any] = {}
    for key, value in state.items():
        if key not in expected and key.removeprefix("text_model.") in expected:
            key = key.removeprefix("text_model.")
        if key.endswith("position_ids") and key not in expected:
            continue
        fitted[key] = value
    return fitted


def _build_components(config_dir: Path, backend: Backend) -> dict[str, Any]:
    """Random-weight components from the folder's configs (its weights, if any, are not read)."""
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    def text_config(name: str) -> CLIPTextConfig:
        return CLIPTextConfig.from_pretrained(str(config_dir / name), local_files_only=True)

    parts: dict[str, Any] = {
        "unet": UNet2DConditionModel.from_config(
            UNet2DConditionModel.load_config(str(config_dir / "unet"))
        ),
        "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(str(config_dir / "vae"))),
        "text_encoder": CLIPTextModel(text_config("text_encoder")),
        "scheduler": scheduler_from_config_folder(str(config_dir / "scheduler")),
    }
    if "text_encoder_2" in backend.weight_components:
        parts["text_encoder_2"] = CLIPTextModelWithProjection(text_config("text_encoder_2"))
    for name in backend.tokenizers:
        parts[name] = CLIPTokenizer.from_pretrained(str(config_dir / name), local_files_only=True)
    return parts


def _convert_text(
    parts: dict[str, Any], checkpoint: dict[str, torch.Tensor], backend: Backend
) -> dict[str, dict[str, Any]]:
    """Each text encoder's state from the checkpoint, with diffusers' own converters."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_open_clip_checkpoint,
    )

    def clip(prefix: str) -> dict[str, Any]:
        own = {k: v for k, v in checkpoint.items() if k.startswith(prefix)}
        return convert_ldm_clip_checkpoint(own, remove_prefix=prefix)

    first = parts["text_encoder"]
    if backend is SD2_DEPTH:
        _drop_penultimate_extra(checkpoint, first.config.num_hidden_layers)
        return {"text_encoder": convert_open_clip_checkpoint(first, checkpoint, _OPENCLIP_PREFIX)}
    if "text_encoder_2" not in parts:
        return {"text_encoder": clip(_CLIP_PREFIX)}
    second = convert_open_clip_checkpoint(
        parts["text_encoder_2"], checkpoint, prefix=_SDXL_OPENCLIP_PREFIX
    )
    return {"text_encoder": clip(_SDXL_CLIP_PREFIX), "text_encoder_2": second}


def load_single_file(
    path: Path,
    config: str | None,
    backend: Backend = SD2_DEPTH,
    controlnet: FoundControlNet | None = None,
    dtype: torch.dtype = torch.float32,
) -> Any:
    """Build ``backend``'s pipeline from the components in ``config`` (a diffusers folder of
    that family) and fill them strictly from an LDM-layout checkpoint, offline.

    diffusers' ``from_single_file`` would also do this, but it loads what it can match and only
    warns about the rest; here every missing, unexpected or mis-shaped tensor is an error."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    if not os.path.lexists(path):
        raise TextureError(f"Checkpoint file not found: {path}")
    if not path.is_file():
        raise TextureError(f"Checkpoint {path} is not a regular file")
    if not config:
        raise TextureError(
            f"{path.name} is a single checkpoint file: also give a config folder (a diffusers "
            f"layout folder of {a(backend.label)} model with {', '.join(_config_folders(backend))} "
            "configs)"
        )
    config_dir = Path(config).expanduser()
    _check_config_folder(path, config_dir, backend)
    try:
        with out_of_memory("building the model"):
            parts = _build_components(config_dir, backend)
    except TextureError:
        raise
    except Exception as error:
        raise TextureError(
            f"Could not read the configs in {config_dir}: {first_line(error)}"
        ) from error

    checkpoint = _read_ldm_checkpoint(path)
    try:
        states = {
            "UNet": convert_ldm_unet_checkpoint(checkpoint, parts["unet"].config, extract_ema=True),
            "VAE": convert_ldm_vae_checkpoint(checkpoint, parts["vae"].config),
        }
        text_states = _convert_text(parts, checkpoint, backend)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError, RuntimeError) as error:
        raise TextureError(
            f"{path.name} is not {a(backend.label)} checkpoint in the original (LDM) layout: "
            f"{first_line(error)}"
        ) from error
    del checkpoint
    load_strict(parts["unet"], states["UNet"], "UNet", path)
    load_strict(parts["vae"], states["VAE"], "VAE", path)
    for name, state in text_states.items():
        what = "second text encoder" if name == "text_encoder_2" else "text encoder"
        load_strict(parts[name], _text_state(parts[name], state), what, path)
    for name in backend.weight_components:
        parts[name].eval()
    logger.info("Converted %s (%s) with the configs in %s", path, backend.name, config_dir)
    if controlnet is not None:
        with out_of_memory("loading the ControlNet"):
            parts["controlnet"] = load_controlnet(controlnet, dtype)
    return backend.pipeline_class(**parts, **backend.extra_parts())


def _config_folders(backend: Backend) -> list[str]:
    return [f"{name}/" for name in (*backend.weight_components, *backend.tokenizers, "scheduler")]
