"""What to load and how to generate, as plain dataclasses: importable without torch.

Requests (:mod:`sd_depth_texture.request`) carry these, so every door can build and check a run
in a Blender that has no torch or diffusers installed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path, PurePath

from ...defaults import (
    CONDITIONING_SCALE,
    CONTROL_END,
    CONTROL_START,
    GUIDANCE,
    LORA_SCALE,
    MODEL_ID,
    SCHEDULER,
    SEED,
    STEPS,
    STRENGTH,
    UPSCALE,
)
from ..errors import SettingError, TextureError
from ..validation import check_prompt, check_settings, check_text


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA to apply on top of the model: a ``.safetensors`` file and its weight."""

    path: str
    scale: float = 1.0


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load and where to run it; equal specs share one cached pipeline.

    A Hub model is looked for in ``cache_dir`` (when set) and in the standard Hugging Face
    cache (``HF_HOME`` / ``HF_HUB_CACHE``); a download (only with ``allow_online``) goes to
    ``cache_dir``, else to the standard cache.
    """

    source: str = MODEL_ID
    config: str | None = None
    controlnet: str | None = None  # a depth ControlNet: Hub id, folder or .safetensors file
    device: str = "auto"
    precision: str = "auto"
    cache_dir: str | None = None
    allow_online: bool = False
    # Applied on top of the loaded base, which is cached without them (:attr:`base`).
    loras: tuple[LoraSpec, ...] = ()
    offload: str = "none"  # defaults.OFFLOADS: accelerate's CPU offload hooks
    vae_tiling: str = "auto"  # defaults.VAE_TILINGS
    #: FLUX.1-dev only: the depth control LoRA (a ``.safetensors`` file, or a Hub id such as
    #: ``black-forest-labs/FLUX.1-Depth-dev-lora``) that makes the base a depth model.
    depth_lora: str | None = None

    def check(self) -> ModelSpec:
        check_settings(
            {
                "device": self.device,
                "precision": self.precision,
                "offload": self.offload,
                "vae_tiling": self.vae_tiling,
            }
        )
        return self

    @property
    def base(self) -> ModelSpec:
        """The spec without its LoRAs: runs that differ only in LoRAs share one loaded base."""
        return replace(self, loras=())

    def pixel_record(self) -> dict:
        """What of the spec decides pixels (where the files are cached does not)."""
        return {
            "source": self.source,
            "config": self.config,
            "controlnet": self.controlnet,
            "depth_lora": self.depth_lora,
            "precision": self.precision,
            "vae_tiling": self.vae_tiling,
            "loras": [{"path": lora.path, "scale": lora.scale} for lora in self.loras],
        }


@dataclass(frozen=True)
class GenerationSettings:
    """Per-view generation settings."""

    prompt: str
    negative_prompt: str = ""
    seed: int = int(SEED.default)
    steps: int = int(STEPS.default)
    guidance: float = GUIDANCE.default
    scheduler: str = SCHEDULER
    strength: float = STRENGTH.default
    conditioning_scale: float = CONDITIONING_SCALE.default  # ControlNet backends only
    control_start: float = CONTROL_START.default
    control_end: float = CONTROL_END.default
    upscale: int = int(UPSCALE.default)  # 1, 2 or 4: each picture upscaled before projection


def validate_settings(
    settings: GenerationSettings, *, has_init_image: bool, prompt_required: bool = True
) -> None:
    """Reject settings the pipeline would fail on (or silently misuse) with a clear message.

    ``prompt_required=False``: a template whose prompt each asset of a batch fills in."""
    if prompt_required or settings.prompt:
        check_prompt(settings.prompt)
    check_text(settings.negative_prompt, "negative_prompt")
    check_settings(
        {
            "steps": settings.steps,
            "guidance": settings.guidance,
            "seed": settings.seed,
            "strength": settings.strength,
            "scheduler": settings.scheduler,
            "conditioning_scale": settings.conditioning_scale,
            "control_start": settings.control_start,
            "control_end": settings.control_end,
            "upscale": settings.upscale,
        }
    )
    if settings.control_start >= settings.control_end:
        raise SettingError(
            "control_start", settings.control_start, "below the ControlNet's end",
            f"{{name}} ({settings.control_start:g}) must be below {{other}} "
            f"({settings.control_end:g}): the ControlNet would never act",
            other_key="control_end",
        )  # fmt: skip
    if has_init_image and int(settings.steps * settings.strength) < 1:
        raise TextureError(
            f"{settings.steps} steps at strength {settings.strength} leave no step to run: "
            "raise the steps or the strength"
        )


def split_lora(text: str) -> tuple[str, str | None]:
    """``FILE[:SCALE]`` as the command line gives it -> (file, scale text or None).

    Only a colon after the file's suffix starts a weight, so ``C:\\loras\\wood.safetensors``
    is a file alone."""
    head, colon, tail = text.rpartition(":")
    if colon and head and PurePath(head).suffix and not any(sep in tail for sep in "/\\"):
        return head, tail
    return text, None


def lora_specs(given: Iterable[str | tuple[str, float] | LoraSpec]) -> tuple[LoraSpec, ...]:
    """The LoRAs a door gives, checked: ``FILE[:SCALE]`` text (the command line) or
    ``(path, scale)`` pairs (the panel's list). Each weight must be in
    :data:`~...defaults.LORA_SCALE`'s range and each file named once; paths become absolute.
    The files themselves are checked before anything loads (:mod:`.lora`), not here."""
    specs: list[LoraSpec] = []
    for item in given:
        if isinstance(item, LoraSpec):
            path, scale = item.path, item.scale
        elif isinstance(item, str):
            path, scale_text = split_lora(item)
            scale = LORA_SCALE.default if scale_text is None else _scale(scale_text)
        else:
            path, scale = item
        accepted = LORA_SCALE.accepted(scale)
        if accepted is None:
            raise SettingError(
                "loras", scale, LORA_SCALE.allowed(),
                f"The weight of the LoRA {path} in {{name}} must be {LORA_SCALE.allowed()}, "
                f"got {scale!r}.",
            )  # fmt: skip
        if not isinstance(path, str) or not path.strip():
            raise SettingError(
                "loras", path, "a .safetensors file", "A LoRA in {name} names no file."
            )
        absolute = os.path.abspath(os.path.expanduser(path.strip()))
        if any(spec.path == absolute for spec in specs):
            raise SettingError(
                "loras", path, "each file once",
                f"The LoRA {path} is named twice in {{name}}: give each file once, with the "
                "weight you want.",
            )  # fmt: skip
        specs.append(LoraSpec(absolute, accepted))
    return tuple(specs)


def _scale(scale_text: str) -> float | str:
    try:
        return float(scale_text)
    except ValueError:
        return scale_text  # refused with the weight's own wording


def looks_like_flux(source: str, depth_lora: str | None = None) -> bool:
    """Whether a model choice names FLUX (a door shows its licence then), cheaply: a depth
    LoRA, a folder whose ``model_index.json`` names a FLUX pipeline, or a name saying FLUX."""
    if depth_lora:
        return True
    source = (source or "").strip()
    index = Path(source).expanduser() / "model_index.json"
    if not index.is_file():
        return "flux" in source.lower()
    try:
        class_name = json.loads(index.read_text(encoding="utf-8")).get("_class_name", "")
    except (OSError, ValueError, AttributeError):
        return False
    return str(class_name).startswith("Flux")
