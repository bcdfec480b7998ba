"""The one loaded pipeline: load it once, reuse it for equal specs, free it on request.

No bpy. Models take GBs of GPU memory, so only one pipeline is kept and a different spec
releases the old one before loading. The cache is keyed on the spec without its LoRAs and its
VAE tiling (:attr:`.settings.ModelSpec.base`): both are applied to the cached base on every
call (:mod:`.lora`), so a run with other LoRAs never reloads the base. A load can take
minutes (a download) while a panel keeps asking what is loaded, so :func:`pipeline_status`
and :func:`loading` read a small snapshot under their own short lock and never wait for a load.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import torch

from ...defaults import RANDOM_MODEL
from ..progress import Progress
from ..record import ModelRecord
from .backends import Backend, backend_named
from .device import (
    check_offload,
    empty_device_caches,
    out_of_memory,
    place_pipeline,
    resolve_device,
    resolve_dtype,
    set_vae_tiling,
    vae_tiling_wanted,
)
from .lora import AppliedLora, apply_loras, base_adapters_of, check_lora_files
from .settings import ModelSpec, looks_like_flux
from .sources import load_source

logger = logging.getLogger(__name__)

NOT_LOADED = "not loaded"


@dataclass
class _Loaded:
    spec: ModelSpec
    pipe: Any
    device: torch.device
    dtype: torch.dtype
    record: ModelRecord
    loras: tuple[AppliedLora, ...] = ()  # the run's LoRAs the pipeline carries now
    base_adapters: tuple[str, ...] = ()  # LoRAs that are part of the model (FLUX depth LoRA)


@dataclass(frozen=True)
class LoadedModel:
    """The pipeline to generate with, and the record of what it is (``record.loaded``: this
    call loaded it rather than finding it in memory)."""

    pipe: Any
    record: ModelRecord

    @property
    def backend(self) -> Backend:
        """The model family that drives :attr:`pipe` (:mod:`.backends`)."""
        return backend_named(self.record.backend)


_load_lock = threading.RLock()  # held for a whole load or free
_status_lock = threading.Lock()  # held only to read or replace the two values below
_loaded: _Loaded | None = None
_status = NOT_LOADED
_loading_source: str | None = None


def load_pipeline(spec: ModelSpec, progress: Progress | None = None) -> Any:
    """The pipeline alone, for scripts that need no record (see :func:`load_model`)."""
    return load_model(spec, progress).pipe


def load_model(spec: ModelSpec, progress: Progress | None = None) -> LoadedModel:
    """Load (or return the cached) pipeline for ``spec``, with the record of what it is.

    ``progress`` hears of the download (when one is needed) and the load; a cancelled download
    raises ``CancelledError`` and keeps nothing of it.
    """
    global _loaded
    progress = progress or Progress()
    loras = check_lora_files(spec.loras)  # before anything loads
    base = _cache_key(spec)
    with _load_lock:
        loaded_now = _loaded is None or _loaded.spec != base
        if loaded_now:
            _load_base(base, progress)
        assert _loaded is not None
        try:
            _loaded.loras = apply_loras(_loaded.pipe, loras, _loaded.loras, _loaded.base_adapters)
        except BaseException:
            _loaded.loras = ()  # apply_loras took every LoRA off
            raise
        tiled = vae_tiling_wanted(spec.vae_tiling, _loaded.device, spec.offload)
        set_vae_tiling(_loaded.pipe, tiled)
        record = replace(
            _loaded.record,
            loaded=loaded_now,
            loras=[*_loaded.record.loras, *(lora.file.record() for lora in _loaded.loras)],
            vae_tiling=tiled,
        )
        if loaded_now:
            progress.update(1.0, "Model loaded")
        return LoadedModel(_loaded.pipe, record)


def _cache_key(spec: ModelSpec) -> ModelSpec:
    """What decides the loaded base: not the LoRAs, not the VAE tiling (both applied per run)."""
    return replace(spec.base, vae_tiling="auto")


def _load_base(spec: ModelSpec, progress: Progress) -> None:
    """Load ``spec`` (a base: no LoRAs) as the one cached pipeline, releasing the old one."""
    global _loaded
    device = resolve_device(spec.device)
    dtype = resolve_dtype(
        spec.precision, device, prefer_bf16=looks_like_flux(spec.source, spec.depth_lora)
    )
    check_offload(spec.offload, device)  # before the old pipeline is released
    free_pipeline()
    started = time.perf_counter()
    _set_status(NOT_LOADED, loading_source=spec.source)
    try:
        progress.update(0.0, f"Loading {spec.source}")
        with progress.span(0.0, 0.9):
            pipe, record = load_source(spec, dtype, progress)
        progress.update(0.95, f"Moving the model to {device}")
        with out_of_memory(f"converting the model to {dtype}"):
            if pipe.dtype != dtype:
                pipe = pipe.to(dtype=dtype)
        pipe = place_pipeline(pipe, device, spec.offload)
        pipe.set_progress_bar_config(disable=True)
        record = replace(
            record,
            device=str(device),
            precision=str(dtype).removeprefix("torch."),
            offload=spec.offload,
        )
        _loaded = _Loaded(
            spec=spec,
            pipe=pipe,
            device=device,
            dtype=dtype,
            record=record,
            base_adapters=base_adapters_of(pipe),
        )
    finally:
        _set_status(_describe(_loaded), loading_source=None)
    logger.info("Loaded %s in %.1f s: %s", spec.source, time.perf_counter() - started, _status)


def free_pipeline() -> bool:
    """Drop the cached pipeline and return its GPU memory; True if one was loaded.

    Waits for a load in progress to end first (the load's memory is what there is to free).
    """
    global _loaded
    with _load_lock:
        was_loaded = _loaded is not None
        _loaded = None
        _set_status(NOT_LOADED, loading_source=_loading_source)
        empty_device_caches()
        if was_loaded:
            logger.info("Released the model")
        return was_loaded


def pipeline_status() -> str:
    """One line for a UI panel describing what is loaded (or loading); never waits for a load."""
    with _status_lock:
        if _loading_source is not None:
            return f"loading {_loading_source}"
        return _status


def loading() -> bool:
    """Whether a load is running now (in any thread); never waits for it."""
    with _status_lock:
        return _loading_source is not None


def _set_status(status: str, *, loading_source: str | None) -> None:
    global _status, _loading_source
    with _status_lock:
        _status, _loading_source = status, loading_source


def _describe(loaded: _Loaded | None) -> str:
    if loaded is None:
        return NOT_LOADED
    dtype = str(loaded.dtype).removeprefix("torch.")
    offload = f", {loaded.spec.offload} offload" if loaded.spec.offload != "none" else ""
    where = f"on {loaded.device} ({dtype}{offload})"
    if loaded.spec.source.strip() == RANDOM_MODEL:
        return f"random test weights {where}: textures are noise"
    with_controlnet = f" with {loaded.spec.controlnet}" if loaded.spec.controlnet else ""
    notice = backend_named(loaded.record.backend).licence_notice
    return f"{loaded.spec.source}{with_controlnet} {where}" + (f". {notice}" if notice else "")
