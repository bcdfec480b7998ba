"""The add-on's preferences as plain values: which model, where it runs, where it is cached."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import bpy

from ..core.diffusion.settings import ModelSpec
from ..defaults import MAPS_MODEL_ID, MODEL_ID, PROVENANCE

log = logging.getLogger(__name__)

ADDON_ID = __package__.rpartition(".")[0]


def preferences(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


def model_spec(
    source: str | None = None,
    context=None,
    controlnet: str | None = None,
    depth_lora: str | None = None,
) -> ModelSpec:
    """The model to use: ``source``, else the add-on preferences, else the default; the depth
    ControlNet likewise (``controlnet``, else the preferences', else none); the FLUX depth
    LoRA: ``depth_lora``, else the preferences' (with the preferences' model only: it belongs to
    that model)."""
    prefs = preferences(context)
    if not depth_lora and not source and prefs is not None:
        depth_lora = prefs.model_depth_lora
    source = source or (prefs.model_source if prefs else "") or MODEL_ID
    controlnet = (controlnet or (prefs.controlnet_source if prefs else "")).strip()
    cache_dir = bpy.path.abspath(prefs.cache_dir) if prefs and prefs.cache_dir else None
    return ModelSpec(
        source=_path_or_id(source),
        controlnet=_path_or_id(controlnet) if controlnet else None,
        depth_lora=_path_or_id(depth_lora) if depth_lora else None,
        config=(bpy.path.abspath(prefs.model_config) or None) if prefs else None,
        device=prefs.device if prefs else "auto",
        precision=prefs.precision if prefs else "auto",
        offload=prefs.offload if prefs else "none",
        vae_tiling=prefs.vae_tiling if prefs else "auto",
        cache_dir=cache_dir,
        allow_online=bool(bpy.app.online_access),
    )


def _path_or_id(source: str) -> str:
    """A blend-relative (``//``) or ``~`` path made absolute; a Hub id stays as it is."""
    return bpy.path.abspath(source) if source.startswith("//") else os.path.expanduser(source)


def provenance_settings(values: Mapping[str, Any], context=None) -> dict[str, Any]:
    """The provenance level and the studio's C2PA certificate and key: this run's values
    (``provenance``, ``c2pa_cert``, ``c2pa_key``) where given, else the add-on preferences."""
    prefs = preferences(context)

    def path(key: str) -> str | None:
        given = values.get(key)
        if given:
            return os.path.abspath(os.path.expanduser(given))
        chosen = getattr(prefs, key, "") if prefs else ""
        return bpy.path.abspath(chosen) if chosen else None

    level = values.get("provenance") or (prefs.provenance if prefs else "") or PROVENANCE[0]
    return {"provenance": level, "c2pa_cert": path("c2pa_cert"), "c2pa_key": path("c2pa_key")}


def auxiliary_settings(values: Mapping[str, Any], context=None) -> dict[str, Any]:
    """The maps model and the upscaler, and where they run, for a run's settings: this run's
    ``maps_model`` / ``upscale_model``, else the add-on preferences', else the defaults (the
    upscaler's depends on its factor, so it stays empty); a projection (no generating model to
    share them with) also takes the preferences' device, precision, cache and online access."""
    prefs = preferences(context)
    upscaler = values.get("upscale_model") or (getattr(prefs, "upscale_model", "") if prefs else "")
    if upscaler.startswith("//"):
        upscaler = bpy.path.abspath(upscaler)
    source = values.get("maps_model") or (getattr(prefs, "maps_model", "") if prefs else "")
    source = source or MAPS_MODEL_ID
    if source.startswith("//"):
        source = bpy.path.abspath(source)
    cache_dir = bpy.path.abspath(prefs.cache_dir) if prefs and prefs.cache_dir else None
    return {
        "maps_model": os.path.expanduser(source),
        "upscale_model": os.path.expanduser(upscaler) if upscaler else None,
        "device": values.get("device") or (prefs.device if prefs else None),
        "precision": values.get("precision") or (prefs.precision if prefs else None),
        "cache_dir": cache_dir,
        "online": values.get("online") or bool(bpy.app.online_access),
    }
