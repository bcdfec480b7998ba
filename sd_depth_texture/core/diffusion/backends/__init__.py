"""The registry of model families (:class:`.base.Backend`), and which one a model needs.

No bpy. A family module registers its backend with :func:`register` when :data:`_MODULES` imports
it; adding a family is one module and one name there (CONTRIBUTING.md, "Adding a backend").
:func:`choose` decides the backend from ``model_index.json``, the UNet's config and the
ControlNet's ``config.json`` alone, so a wrong combination is one clear error before any weights
load; :func:`backend_of` finds the backend of a loaded pipeline.
"""

from __future__ import annotations

import importlib
from typing import Any

from ...errors import SettingError, TextureError
from .base import Backend

#: The family modules, imported in this order (their backends register themselves).
_MODULES = ("sd2_depth", "sd15", "sdxl", "flux")
_REGISTRY: dict[str, Backend] = {}
_imported = False

#: What messages call each ControlNet kind.
# Labels read as letters ("an SDXL model"); every other label takes "a".
_READ_AS_LETTERS = ("SD2", "SDXL")


def a(label: str) -> str:
    """``label`` with its indefinite article, as messages name a family: "an SDXL", "a FLUX"."""
    return f"{'an' if label.startswith(_READ_AS_LETTERS) else 'a'} {label}"


CONTROLNET_LABELS = {
    "sd": "Stable Diffusion 1.5",
    "sdxl": "SDXL",
    "sdxl-union": "SDXL (union)",
    "flux": "FLUX",
    "sd3": "Stable Diffusion 3",
}
_INPAINT_CHANNELS = 9


def register(backend: Backend) -> Backend:
    """Add ``backend`` to the registry (one per name) and return it."""
    _REGISTRY[backend.name] = backend
    return backend


def backends() -> list[Backend]:
    """Every registered backend, in registration order."""
    _import_all()
    return list(_REGISTRY.values())


def backend_named(name: str) -> Backend:
    _import_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise TextureError(f"No model backend called '{name}'") from None


def backend_of(pipe: Any) -> Backend:
    """The backend that drives ``pipe`` (by its class, subclasses included)."""
    for backend in backends():
        if isinstance(pipe, backend.pipeline_class):
            return backend
    raise TextureError(f"{type(pipe).__name__} is not a pipeline this add-on can drive")


def controlnet_kind(config: dict[str, Any]) -> str:
    """Which base a ControlNet belongs to, from its ``config.json`` alone."""
    name = config.get("_class_name", "")
    if name == "ControlNetUnionModel":
        return "sdxl-union"
    if name == "ControlNetModel":
        return "sdxl" if config.get("addition_embed_type") == "text_time" else "sd"
    if name in ("FluxControlNetModel", "FluxMultiControlNetModel"):
        return "flux"
    if name.startswith("SD3"):
        return "sd3"
    raise TextureError(
        f"'{name or 'no _class_name'}' in the ControlNet's config.json is not a "
        "ControlNet this add-on knows"
    )


def choose(
    index: dict[str, Any],
    unet_config: dict[str, Any] | None,
    controlnet_config: dict[str, Any] | None,
    where: str,
) -> Backend:
    """The backend for a saved pipeline (``model_index.json`` of ``where``) and ControlNet.

    Every wrong combination is one :class:`TextureError` (a ControlNet for another base, a
    ControlNet where the family takes none, none where one is needed, an inpainting model)."""
    class_name = str(index.get("_class_name", ""))
    in_channels = (unet_config or {}).get("in_channels")
    if "Inpaint" in class_name or in_channels == _INPAINT_CHANNELS:
        raise TextureError(
            f"{where} is an inpainting model ({class_name}): use the family's base model (the "
            "add-on keeps earlier views itself)"
        )
    candidates = [b for b in backends() if class_name in b.base_classes]
    if not candidates:
        known = ", ".join(b.label for b in backends())
        raise TextureError(
            f"{where} is a {class_name or 'model without a _class_name'}, not a model this "
            f"add-on can texture with ({known})"
        )
    kind = controlnet_kind(controlnet_config) if controlnet_config is not None else None
    for backend in candidates:
        if backend.controlnet_kind == kind:
            if kind == "sd":
                _check_cross_attention(unet_config, controlnet_config, where)
            return backend
    label = candidates[0].label
    if kind is None:
        wanted = " or ".join(CONTROLNET_LABELS[b.controlnet_kind] for b in candidates)
        raise SettingError(
            "controlnet", None, "a depth ControlNet",
            f"{where} is {a(label)} model: it follows depth through {a(wanted)} depth "
            "ControlNet; give one with {name}",
        )  # fmt: skip
    if all(b.controlnet_kind is None for b in candidates):
        raise SettingError(
            "controlnet", kind, "no ControlNet",
            f"{label} takes the depth map itself and no ControlNet: leave {{name}} empty",
        )  # fmt: skip
    wanted = " or ".join(CONTROLNET_LABELS[b.controlnet_kind] for b in candidates)
    raise SettingError(
        "controlnet", kind, wanted,
        f"The ControlNet in {{name}} is for {CONTROLNET_LABELS.get(kind, kind)}, the model "
        f"{where} is {label}: give {a(wanted)} depth ControlNet",
    )  # fmt: skip


def _check_cross_attention(
    unet_config: dict[str, Any] | None, controlnet_config: dict[str, Any] | None, where: str
) -> None:
    """An SD ControlNet is made for one text encoder width (768: SD 1.5, 1024: SD 2.x)."""
    base = (unet_config or {}).get("cross_attention_dim")
    control = (controlnet_config or {}).get("cross_attention_dim")
    if base is not None and control is not None and base != control:
        raise SettingError(
            "controlnet", control, f"cross-attention width {base}",
            f"The ControlNet in {{name}} was made for a base with text width {control}, the "
            f"model {where} has {base} (an SD 2.x ControlNet on SD 1.5, or the reverse)",
        )  # fmt: skip


def _import_all() -> None:
    global _imported
    if not _imported:
        for module in _MODULES:
            importlib.import_module(f"{__name__}.{module}")
        _imported = True


__all__ = ["Backend", "backend_named", "backend_of", "backends", "choose", "register"]
