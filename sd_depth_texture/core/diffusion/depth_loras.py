"""The FLUX depth control LoRA (FLUX.1-Depth-dev-lora): found and checked on disk, not loaded.

No bpy. It turns the FLUX.1-dev base into a depth model by widening the transformer's input to
take the depth image as well, so it is part of the model (:attr:`ModelSpec.depth_lora`), not a
style LoRA. Given as a ``.safetensors`` file or as a Hub id (the one ``.safetensors`` of that
repository, from the cache or downloaded when online access is on). Pickles are refused
unopened; of a safetensors file only the header is read here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub.utils import HFValidationError, validate_repo_id

from ..errors import ModelUnavailableError, TextureError
from ..progress import Progress
from ..record import sha256_of_file
from . import hub
from .device import first_line
from .safe_files import PICKLE_SUFFIXES, pickle_refusal
from .settings import ModelSpec

logger = logging.getLogger(__name__)

#: The input layer's LoRA in diffusers' and in Black Forest Labs' own key layout.
_INPUT_LORA_KEYS = ("x_embedder.lora_A.weight", "img_in.lora_A.weight")


@dataclass(frozen=True)
class FoundDepthLora:
    """A depth LoRA file on disk, the widest input its input-layer LoRA takes, and its record."""

    path: Path
    input_width: int
    record: dict[str, Any] = field(repr=False)


def find_depth_lora(spec: ModelSpec, progress: Progress) -> FoundDepthLora:
    """Find ``spec.depth_lora`` and read its header: it must widen the transformer's input."""
    source = (spec.depth_lora or "").strip()
    path = Path(source).expanduser()
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise pickle_refusal(path)
    kind = "file"
    if not path.exists() and _is_hub_id(source):
        path, kind = _hub_file(spec, source, progress), "hub"
    if not path.is_file():
        raise TextureError(f"Depth LoRA not found: {path}")
    if path.suffix.lower() != ".safetensors":
        raise TextureError(f"The depth LoRA {path.name} must be a .safetensors file")
    width = _input_width(path)
    # As the run's own LoRAs are recorded (the file's name, never its folder), plus its role.
    record = {
        "name": path.name,
        "sha256": sha256_of_file(str(path)),
        "scale": 1.0,
        "role": "depth control",
        "kind": kind,
    }
    if kind == "hub":
        record["source"] = source
    return FoundDepthLora(path, width, record)


def _is_hub_id(source: str) -> bool:
    if source.count("/") != 1:
        return False
    try:
        validate_repo_id(source)
    except HFValidationError:
        return False
    return True


def _input_width(path: Path) -> int:
    """The input width of the LoRA's input layer (0: it has none), from the header alone."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            widths = [
                handle.get_slice(key).get_shape()[-1]
                for key in handle.keys()  # noqa: SIM118 (safe_open is not a mapping)
                if key.endswith(_INPUT_LORA_KEYS)
            ]
    except Exception as error:
        raise TextureError(
            f"The depth LoRA {path} is corrupt or truncated ({first_line(error)})"
        ) from error
    return max(widths, default=0)


def _hub_file(spec: ModelSpec, repo_id: str, progress: Progress) -> Path:
    from huggingface_hub import snapshot_download

    progress.update(0.0, f"Looking for the depth LoRA {repo_id}")
    try:
        folder = Path(
            snapshot_download(
                repo_id,
                allow_patterns=["*.safetensors", "README.md"],
                cache_dir=hub.download_cache(spec.cache_dir),
                local_files_only=not spec.allow_online,
            )
        )
    except Exception as error:
        if not spec.allow_online:
            raise ModelUnavailableError(
                f"The depth LoRA {repo_id} is not cached and online access is off."
            ) from error
        raise TextureError(f"Could not download {repo_id}: {first_line(error)}") from error
    files = sorted(folder.glob("*.safetensors"))
    if len(files) != 1:
        raise TextureError(f"{repo_id} holds {len(files)} .safetensors files; give the file itself")
    return files[0]
