"""LoRAs on the loaded base model: checked before anything loads, applied with diffusers' own
loader, and taken off again cleanly when they do not fit.

No bpy. The base pipeline is cached without its LoRAs (:attr:`.settings.ModelSpec.base`), so a
run with other LoRAs reuses it: :func:`apply_loras` compares what is on the pipeline with what
the run wants and only changes the difference (new weights: ``set_adapters``; other files:
``delete_adapters`` then ``load_lora_weights``; LoRAs that are part of the model itself, like
FLUX.1 dev's depth LoRA, stay on). Only ``.safetensors`` files are read: a
pickle (``.bin``, ``.pt``, ``.ckpt``) is refused unopened. ``load_lora_weights`` also reads the
Kohya and A1111 key layouts; it needs ``peft``.

A LoRA trained for another base is refused in one line: its layers have other sizes (diffusers
raises), or some of its tensors match no layer of this model (diffusers only warns, and would
run with part of the LoRA silently missing, so every tensor is counted here). After a refusal
the pipeline holds none of the run's LoRAs.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...defaults import LORA_SUFFIX
from ..errors import TextureError
from ..record import sha256_of_file
from .device import first_line, out_of_memory
from .hub import PICKLE_SUFFIXES
from .settings import LoraSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoraFile:
    """A LoRA checked on disk: the spec, and the hash that says which weights it holds."""

    spec: LoraSpec
    sha256: str

    @property
    def name(self) -> str:
        return os.path.basename(self.spec.path)

    def record(self) -> dict[str, Any]:
        """What the run record keeps (the file's name, not the user's folders)."""
        return {"name": self.name, "sha256": self.sha256, "scale": self.spec.scale}


@dataclass(frozen=True)
class AppliedLora:
    """A LoRA loaded onto the pipeline as the adapter ``adapter``."""

    adapter: str
    file: LoraFile


def check_lora_files(loras: tuple[LoraSpec, ...]) -> tuple[LoraFile, ...]:
    """Every LoRA file checked before anything loads: safetensors only (a pickle is refused
    unopened), a readable regular file whose header parses, and ``peft`` installed."""
    if not loras:
        return ()
    if importlib.util.find_spec("peft") is None:
        raise TextureError(
            "LoRAs need the peft package (diffusers loads them through it), not installed in "
            "this Python: see the add-on's preferences or docs/install.md."
        )
    return tuple(_check_file(lora) for lora in loras)


def _check_file(lora: LoraSpec) -> LoraFile:
    from safetensors import safe_open

    from .sources import pickle_refusal

    path = Path(lora.path)
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise pickle_refusal(path)
    if suffix != LORA_SUFFIX:
        raise TextureError(f"The LoRA {path} is not a {LORA_SUFFIX} file")
    if not os.path.lexists(path):
        raise TextureError(f"LoRA file not found: {path}")
    if path.is_dir():
        raise TextureError(f"The LoRA {path} is a folder: give the {LORA_SUFFIX} file in it")
    if not path.is_file():
        raise TextureError(f"The LoRA {path} is not a regular file (a pipe, device or broken link)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            if not list(handle.keys()):
                raise TextureError(f"The LoRA {path} holds no tensors")
        sha256 = sha256_of_file(str(path))
    except TextureError:
        raise
    except Exception as error:
        raise TextureError(
            f"The LoRA {path} is unreadable or not a safetensors file ({first_line(error)})"
        ) from error
    return LoraFile(lora, sha256)


def apply_loras(
    pipe: Any,
    wanted: tuple[LoraFile, ...],
    applied: tuple[AppliedLora, ...],
    base_adapters: tuple[str, ...] = (),
) -> tuple[AppliedLora, ...]:
    """Make ``pipe`` carry exactly ``wanted`` (in order, at their weights); ``applied`` is what
    it carries now. ``base_adapters`` are LoRAs that are part of the loaded model itself (FLUX.1
    dev's depth control LoRA): they stay on, at weight 1. Returns what the pipeline carries
    afterwards. On a refusal the pipeline is left with no LoRA of the run's and the error says
    why."""
    same_files = [lora.file.sha256 for lora in applied] == [lora.sha256 for lora in wanted]
    if same_files:
        now = tuple(AppliedLora(a.adapter, w) for a, w in zip(applied, wanted, strict=True))
        if now and [a.file.spec.scale for a in applied] != [w.spec.scale for w in wanted]:
            _set_weights(pipe, now, base_adapters)
        return now
    if applied:
        _take_off(pipe, [lora.adapter for lora in applied], base_adapters)
        logger.info("Took off %d LoRA(s)", len(applied))
    now: list[AppliedLora] = []
    try:
        for index, lora in enumerate(wanted):
            adapter = f"lora{index}"
            _load_one(pipe, lora, adapter)
            now.append(AppliedLora(adapter, lora))
        if now:
            _set_weights(pipe, tuple(now), base_adapters)
    except BaseException:
        _take_off(pipe, [f"lora{index}" for index in range(len(wanted))], base_adapters)
        raise
    for lora in now:
        logger.info("Applied LoRA %s at %g", lora.file.name, lora.file.spec.scale)
    return tuple(now)


def base_adapters_of(pipe: Any) -> tuple[str, ...]:
    """The LoRA adapters a freshly loaded pipeline already carries (part of the model)."""
    if not hasattr(pipe, "get_list_adapters"):
        return ()
    names: list[str] = []
    for adapters in pipe.get_list_adapters().values():
        names.extend(name for name in adapters if name not in names)
    return tuple(names)


def _take_off(pipe: Any, adapters: list[str], base_adapters: tuple[str, ...]) -> None:
    """Delete the run's adapters (those present), leaving the model's own ones on."""
    if not hasattr(pipe, "get_list_adapters"):
        return
    present = {name for names in pipe.get_list_adapters().values() for name in names}
    ours = [name for name in adapters if name in present]
    if ours:
        pipe.delete_adapters(ours)
    if base_adapters:
        pipe.set_adapters(list(base_adapters), adapter_weights=[1.0] * len(base_adapters))


def _load_one(pipe: Any, lora: LoraFile, adapter: str) -> None:
    if not hasattr(pipe, "load_lora_weights"):
        raise TextureError(f"{type(pipe).__name__} takes no LoRAs")
    path = lora.spec.path
    try:
        with out_of_memory(f"loading the LoRA {lora.name}"):
            expected = _tensor_count(pipe.lora_state_dict(path))
            pipe.load_lora_weights(path, adapter_name=adapter)
    except TextureError:
        raise
    except RuntimeError as error:
        if "size mismatch" in str(error):
            raise TextureError(
                f"The LoRA {lora.name} does not fit this model: its layers have other sizes "
                "(a LoRA for another base model?)"
            ) from error
        raise TextureError(f"Could not apply the LoRA {lora.name}: {first_line(error)}") from error
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise TextureError(f"Could not apply the LoRA {lora.name}: {first_line(error)}") from error
    found = _adapter_tensor_count(pipe, adapter)
    if found != expected:
        raise TextureError(
            f"The LoRA {lora.name} does not fit this model: {expected - found} of its "
            f"{expected} tensors match no layer of it (a LoRA for another base model?)"
        )


def _tensor_count(state: Any) -> int:
    """Tensors of a LoRA as diffusers reads it (its alphas, where it has them, apart)."""
    state_dict = state[0] if isinstance(state, tuple) else state
    return len(state_dict)


def _adapter_tensor_count(pipe: Any, adapter: str) -> int:
    """Tensors the adapter really holds, over every module a LoRA can reach."""
    from peft.utils import get_peft_model_state_dict

    count = 0
    for name in getattr(pipe, "_lora_loadable_modules", ()):
        module = getattr(pipe, name, None)
        if module is not None and adapter in (getattr(module, "peft_config", None) or {}):
            count += len(get_peft_model_state_dict(module, adapter_name=adapter))
    return count


def _set_weights(
    pipe: Any, applied: tuple[AppliedLora, ...], base_adapters: tuple[str, ...]
) -> None:
    pipe.set_adapters(
        [*base_adapters, *(lora.adapter for lora in applied)],
        adapter_weights=[1.0] * len(base_adapters) + [lora.file.spec.scale for lora in applied],
    )
