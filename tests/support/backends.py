"""A tiny random-weight model of every registered backend, saved to disk as a user would have it
(diffusers folders, safetensors) and described by the ModelSpec that loads it.

A new backend adds its entry to :data:`TINY_MODELS`; the contract test
(``tests/unit/test_backend_contract.py``) refuses to pass for a backend without one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sd_depth_texture.core.diffusion.flux_tiny import build_tiny_flux_pipeline
from sd_depth_texture.core.diffusion.settings import ModelSpec
from sd_depth_texture.core.diffusion.tiny import build_tiny_pipeline, save_tiny_controlnet_model


def _sd2_depth(folder: Path) -> ModelSpec:
    build_tiny_pipeline(seed=0).save_pretrained(str(folder), safe_serialization=True)
    return ModelSpec(source=str(folder), device="cpu")


def _flux_depth(folder: Path) -> ModelSpec:
    build_tiny_flux_pipeline(seed=0).save_pretrained(str(folder), safe_serialization=True)
    return ModelSpec(source=str(folder), device="cpu")


def _controlnet(family: str) -> Callable[[Path], ModelSpec]:
    def save(folder: Path) -> ModelSpec:
        base, controlnet = save_tiny_controlnet_model(family, folder)
        return ModelSpec(source=str(base), controlnet=str(controlnet), device="cpu")

    return save


#: Backend name -> save a tiny model of it into a folder and return the spec that loads it.
TINY_MODELS: dict[str, Callable[[Path], ModelSpec]] = {
    "sd2-depth": _sd2_depth,
    "sd15-controlnet": _controlnet("sd15"),
    "sdxl-controlnet": _controlnet("sdxl"),
    "sdxl-union": _controlnet("sdxl-union"),
    "flux-depth": _flux_depth,
}


def denoiser(pipe):
    """The network each step runs (a UNet, or FLUX's transformer)."""
    return getattr(pipe, "unet", None) or pipe.transformer
