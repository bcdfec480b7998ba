"""The add-on's preferences as plain values: which model, where it runs, where it is cached."""

from __future__ import annotations

import logging
import os

import bpy

from ..core.diffusion.settings import ModelSpec
from ..defaults import MODEL_ID

log = logging.getLogger(__name__)

ADDON_ID = __package__.rpartition(".")[0]


def preferences(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


def model_spec(source: str | None = None, context=None) -> ModelSpec:
    """The model to use: ``source``, else the add-on preferences, else the default."""
    prefs = preferences(context)
    source = source or (prefs.model_source if prefs else "") or MODEL_ID
    cache_dir = bpy.path.abspath(prefs.cache_dir) if prefs and prefs.cache_dir else None
    return ModelSpec(
        source=bpy.path.abspath(source) if source.startswith("//") else os.path.expanduser(source),
        config=(bpy.path.abspath(prefs.model_config) or None) if prefs else None,
        device=prefs.device if prefs else "auto",
        precision=prefs.precision if prefs else "auto",
        cache_dir=cache_dir,
        allow_online=bool(bpy.app.online_access),
    )
