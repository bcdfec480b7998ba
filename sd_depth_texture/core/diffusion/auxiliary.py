"""Auxiliary models, which work on a view's picture once it is made (no bpy).

The maps model (diffusers' ``MarigoldIntrinsicsPipeline``: albedo, roughness, metallicity)
and the upscalers (``StableDiffusionLatentUpscalePipeline`` x2, ``StableDiffusionUpscalePipeline``
x4). Each kind keeps one cached pipeline of its own beside the generating model's
(:mod:`.cache`), loaded only when a run asks for it, from the same kinds of source and with the
same safety checks as :mod:`.sources`: a Hub id at a pinned revision, found in the caches first
and downloaded only with ``allow_online``; a local diffusers folder with safetensors weights
only; or ``random`` (tiny random weights, for tests). Device and precision are the spec's (the
generating model's), loading reports progress and honours a cancel, and running out of memory
is one line (:func:`.device.out_of_memory`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from diffusers import (
    DiffusionPipeline,
    MarigoldIntrinsicsPipeline,
    StableDiffusionLatentUpscalePipeline,
    StableDiffusionUpscalePipeline,
)
from huggingface_hub.utils import HFValidationError, validate_repo_id

from ...defaults import (
    MAPS_MODEL_ID,
    MAPS_MODEL_LICENCE,
    MAPS_MODEL_REVISION,
    RANDOM_MODEL,
    UPSCALE_MODELS,
)
from ..errors import AuxiliaryUnavailableError, TextureError
from ..progress import Progress
from ..record import ModelRecord
from . import hub
from .device import empty_device_caches, first_line, out_of_memory, resolve_device, resolve_dtype
from .settings import ModelSpec
from .sources import (
    _check_safetensors,
    _choose_variant,
    _component_weights,
    _refuse_special_files,
    _require_regular_files,
    model_licence,
    pickle_refusal,
    read_json,
)
from .tiny_auxiliary import (
    build_tiny_latent_upscaler,
    build_tiny_marigold,
    build_tiny_x4_upscaler,
)

logger = logging.getLogger(__name__)

MAPS = "maps"
UPSCALERS = {2: "upscale-x2", 4: "upscale-x4"}  # upscale factor -> auxiliary kind
_HUB_ID_PARTS = 2


@dataclass(frozen=True)
class Auxiliary:
    """One kind of auxiliary model: its pipeline class, default source and licence."""

    kind: str
    what: str  # how messages name it
    backend: str  # the model family, as the run record names it
    setting: str  # the setting that names its source
    pipeline: type[DiffusionPipeline]
    default_id: str
    revision: str | None  # the default id's pinned revision (None: its cached main)
    licence: str  # the default model's licence, where its card does not say
    weights: tuple[str, ...]  # components with weights
    build_tiny: Callable[[], DiffusionPipeline]


AUXILIARIES: dict[str, Auxiliary] = {
    MAPS: Auxiliary(
        MAPS, "maps model", "marigold-intrinsics", "maps_model", MarigoldIntrinsicsPipeline,
        MAPS_MODEL_ID, MAPS_MODEL_REVISION, MAPS_MODEL_LICENCE, ("unet", "vae", "text_encoder"),
        build_tiny_marigold,
    ),
    UPSCALERS[2]: Auxiliary(
        UPSCALERS[2], "x2 upscaler", "sd-latent-upscaler", "upscale_model",
        StableDiffusionLatentUpscalePipeline,
        *UPSCALE_MODELS[2], ("unet", "vae", "text_encoder"), build_tiny_latent_upscaler,
    ),
    UPSCALERS[4]: Auxiliary(
        UPSCALERS[4], "x4 upscaler", "sd-x4-upscaler", "upscale_model",
        StableDiffusionUpscalePipeline,
        *UPSCALE_MODELS[4], ("unet", "vae", "text_encoder"), build_tiny_x4_upscaler,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class LoadedAuxiliary:
    pipe: DiffusionPipeline
    record: ModelRecord  # ``loaded``: this call loaded it rather than finding it in memory


_lock = threading.RLock()
_loaded: dict[str, tuple[ModelSpec, DiffusionPipeline, ModelRecord]] = {}


def load_auxiliary(kind: str, spec: ModelSpec, progress: Progress | None = None) -> LoadedAuxiliary:
    """The ``kind`` model for ``spec``, loaded once and kept until a different spec or
    :func:`free_auxiliaries`; raises :class:`TextureError` with one line for any bad source."""
    progress = progress or Progress()
    auxiliary = AUXILIARIES[kind]
    with _lock:
        cached = _loaded.get(kind)
        if cached is not None and cached[0] == spec:
            return LoadedAuxiliary(cached[1], replace(cached[2], loaded=False))
        _loaded.pop(kind, None)
        empty_device_caches()
        device = resolve_device(spec.device)
        dtype = resolve_dtype(spec.precision, device)
        progress.update(0.0, f"Loading the {auxiliary.what} {spec.source}")
        pipe, record = _load(auxiliary, spec, dtype, progress)
        progress.check(f"after loading the {auxiliary.what}")
        with out_of_memory(f"moving the {auxiliary.what} to {device}"):
            pipe = pipe.to(device=device)
            if pipe.dtype != dtype:
                pipe = pipe.to(dtype=dtype)
        pipe.set_progress_bar_config(disable=True)
        record = replace(record, device=str(device), precision=str(dtype).removeprefix("torch."))
        _loaded[kind] = (spec, pipe, record)
        progress.update(1.0, f"The {auxiliary.what} is loaded")
        return LoadedAuxiliary(pipe, replace(record, loaded=True))


def free_auxiliaries() -> bool:
    """Drop every cached auxiliary model; True if one was loaded."""
    with _lock:
        was_loaded = bool(_loaded)
        _loaded.clear()
        empty_device_caches()
        return was_loaded


def _load(
    auxiliary: Auxiliary, spec: ModelSpec, dtype: torch.dtype, progress: Progress
) -> tuple[DiffusionPipeline, ModelRecord]:
    source = (spec.source or "").strip()
    kind_name = auxiliary.pipeline.__name__

    def record(kind: str, folder: Path | None = None, **known) -> ModelRecord:
        licence = model_licence(folder) if folder is not None else None
        if licence is None and source == auxiliary.default_id:
            licence = auxiliary.licence
        return ModelRecord(
            backend=auxiliary.backend, pipeline=kind_name, source=source, kind=kind,
            licence=licence, **known,
        )  # fmt: skip

    if source == RANDOM_MODEL:
        logger.warning("Using a random-weight %s: its maps are noise", auxiliary.what)
        return auxiliary.build_tiny(), record("random")
    path = Path(source).expanduser()
    if path.suffix.lower() in hub.PICKLE_SUFFIXES:
        raise pickle_refusal(path)
    if path.is_dir():
        return load_folder(auxiliary, path, dtype), record("folder", path)
    if path.exists():
        raise TextureError(f"The {auxiliary.what} {path} is not a diffusers model folder.")
    looks_like_id = source.count("/") == _HUB_ID_PARTS - 1 and not source.startswith((".", "~"))
    if path.is_absolute() or not looks_like_id or "\\" in source:
        raise TextureError(f"The {auxiliary.what} folder {path} was not found.")
    try:
        validate_repo_id(source)
    except HFValidationError as error:
        raise TextureError(
            f"'{source}' is not a valid Hugging Face id for the {auxiliary.what}: "
            f"{first_line(error)}"
        ) from error
    revision = auxiliary.revision if source == auxiliary.default_id else None
    for cache in hub.search_caches(spec.cache_dir):
        folder = hub.cached_snapshot(source, revision, cache)
        if folder is not None:
            logger.info("Using the cached %s in %s", auxiliary.what, folder)
            return load_folder(auxiliary, folder, dtype), record(
                "hub", folder, revision=folder.name
            )
    if not spec.allow_online:
        where = " or ".join(str(cache) for cache in hub.search_caches(spec.cache_dir))
        raise AuxiliaryUnavailableError(
            f"The {auxiliary.what} {source} is not cached in {where} and online access is off.",
            auxiliary.setting,
        )
    with progress.span(0.0, 0.9):
        folder = hub.download_snapshot(
            source, revision, hub.download_cache(spec.cache_dir),
            want_fp16=dtype == torch.float16, progress=progress,
        )  # fmt: skip
    return load_folder(auxiliary, folder, dtype), record("hub", folder, revision=folder.name)


def load_folder(auxiliary: Auxiliary, folder: Path, dtype: torch.dtype) -> DiffusionPipeline:
    """A diffusers folder of the auxiliary's pipeline class, checked before any weight is read:
    the class its ``model_index.json`` names, regular files only, safetensors weights only."""
    if not (folder / "model_index.json").exists():
        raise TextureError(
            f"The {auxiliary.what} {folder} is not a diffusers model folder (no model_index.json)."
        )
    _require_regular_files(folder, ["model_index.json"])
    index = read_json(folder / "model_index.json")
    expected = auxiliary.pipeline.__name__
    if index.get("_class_name") != expected:
        raise TextureError(
            f"{folder} holds a {index.get('_class_name')} pipeline, not the {expected} a "
            f"{auxiliary.what} needs."
        )
    components = tuple(name for name in index if not name.startswith("_"))
    _refuse_special_files(folder, components)
    weights = {name: _component_weights(folder, name) for name in auxiliary.weights}
    for files in weights.values():
        for path in files:
            _check_safetensors(path)
    variant = _choose_variant(weights, dtype)
    try:
        with out_of_memory(f"loading the {auxiliary.what}"):
            return auxiliary.pipeline.from_pretrained(
                str(folder), use_safetensors=True, local_files_only=True, dtype=dtype,
                variant=variant,
            )  # fmt: skip
    except TextureError:
        raise
    except Exception as error:
        logger.debug("Loading %s failed", folder, exc_info=True)
        raise TextureError(
            f"Could not load the {auxiliary.what} in {folder}: {first_line(error)}"
        ) from error
