"""Depth ControlNets: where one comes from, checked without loading its weights, then loaded.

No bpy. A ControlNet (:attr:`ModelSpec.controlnet`) is a Hugging Face Hub id (looked up in the
caches, downloaded only with ``allow_online``), a folder with ``config.json`` and ``.safetensors``
weights, or a single ``.safetensors`` file (diffusers or original ``control_model.*`` layout,
converted by diffusers' own converter) beside its ``config.json``. Its ``config.json`` alone tells
which base it belongs to (:func:`.backends.controlnet_kind`), so :func:`.backends.choose` refuses
a wrong combination before any weights load. Pickles are refused unopened.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from huggingface_hub.utils import HFValidationError, validate_repo_id

from ..errors import ModelUnavailableError, TextureError
from ..progress import Progress
from ..record import sha256_of_file
from . import hub
from .backends import controlnet_kind
from .device import first_line, out_of_memory
from .hub import PICKLE_SUFFIXES
from .safe_files import (
    IncompleteModelError,
    check_safetensors,
    load_strict,
    model_licence,
    pickle_refusal,
    read_json,
    require_regular_files,
    safetensors_in,
)
from .settings import ModelSpec

logger = logging.getLogger(__name__)

_CONFIG = "config.json"


@dataclass(frozen=True)
class FoundControlNet:
    """A ControlNet checked on disk: its weights file(s), config and record (nothing loaded)."""

    source: str
    weights: tuple[Path, ...]
    config_folder: Path
    config: dict[str, Any] = field(repr=False)
    record: dict[str, Any] = field(repr=False)


def find_controlnet(spec: ModelSpec, dtype: torch.dtype, progress: Progress) -> FoundControlNet:
    """Find and check ``spec.controlnet`` (its config read, its weights' headers read)."""
    source = (spec.controlnet or "").strip()
    path = Path(source).expanduser()
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise pickle_refusal(path)
    record: dict[str, Any] = {"source": source}
    if path.suffix.lower() == ".safetensors":
        if not os.path.lexists(path):
            raise TextureError(f"ControlNet file not found: {path}")
        if not path.is_file():
            raise TextureError(f"ControlNet {path} is not a regular file")
        folder, weights = path.parent, [path]
        if not (folder / _CONFIG).is_file():
            raise TextureError(
                f"The ControlNet {path.name} needs its {_CONFIG} beside it (from the same "
                "repository) to say what it is"
            )
        record.update(kind="file", weights_sha256=sha256_of_file(str(path)))
    elif path.is_dir():
        folder, weights = path, _folder_weights(path, dtype)
        record["kind"] = "folder"
    elif path.exists():
        raise TextureError(f"ControlNet {path} is neither a folder nor a .safetensors file")
    elif path.is_absolute() or source.startswith((".", "~")) or "\\" in source:
        raise TextureError(f"ControlNet folder not found: {path}")
    else:
        folder = _hub_controlnet(spec, source, dtype, progress)
        weights = _folder_weights(folder, dtype)
        record.update(kind="hub", revision=folder.name)
    try:
        require_regular_files(folder, [_CONFIG])
        config = read_json(folder / _CONFIG)
    except IncompleteModelError as error:
        raise TextureError(f"The ControlNet {source} is unusable: {error}") from error
    for weight in weights:
        check_safetensors(weight)
    record.update(
        model=config.get("_class_name"),
        family=controlnet_kind(config),
        licence=model_licence(folder),
    )
    return FoundControlNet(source, tuple(weights), folder, config, record)


def load_controlnet(found: FoundControlNet, dtype: torch.dtype) -> Any:
    """The ControlNet model of ``found``, every tensor loaded strictly, in ``dtype``."""
    import diffusers
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint
    from safetensors.torch import load_file

    model_class = getattr(diffusers, found.config["_class_name"])
    with out_of_memory("loading the ControlNet"):
        model = model_class.from_config(model_class.load_config(str(found.config_folder)))
        state: dict[str, torch.Tensor] = {}
        for weight in found.weights:
            state.update(load_file(str(weight)))
        try:
            state = convert_controlnet_checkpoint(state, model.config)
        except (KeyError, IndexError, ValueError, TypeError, AttributeError) as error:
            raise TextureError(
                f"The ControlNet {found.source} is in a layout diffusers cannot convert: "
                f"{first_line(error)}"
            ) from error
        load_strict(model, state, "ControlNet", found.weights[0])
    return (model if model.dtype == dtype else model.to(dtype=dtype)).eval()


def _folder_weights(folder: Path, dtype: torch.dtype) -> list[Path]:
    """One set of ``.safetensors`` weights (fp16 when running fp16 and present); pickles never."""
    if not (folder / _CONFIG).exists():
        raise TextureError(f"{folder} is not a ControlNet folder (no {_CONFIG})")
    weights = safetensors_in(folder)
    if not weights:
        raise TextureError(f"The ControlNet folder {folder} has no .safetensors weights")
    fp16 = [p for p in weights if hub.FP16_NAME.search(p.name)]
    full = [p for p in weights if not hub.FP16_NAME.search(p.name)]
    return fp16 if fp16 and (dtype == torch.float16 or not full) else full


def _hub_controlnet(spec: ModelSpec, repo_id: str, dtype: torch.dtype, progress: Progress) -> Path:
    """The cached snapshot of a Hub ControlNet (``ORG/NAME[@REVISION]``), else a download when
    online access is on."""
    asked = repo_id  # as given, with its @REVISION: what the messages name
    repo_id, revision = hub.split_revision(repo_id)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise TextureError(
            f"ControlNet '{repo_id}' is not a folder, a .safetensors file or a Hugging Face id: "
            f"{first_line(error)}"
        ) from error
    caches = hub.search_caches(spec.cache_dir)
    for cache in caches:
        folder = hub.cached_snapshot(repo_id, revision, cache, hub.MODEL_INDEX)
        if folder is not None:
            return folder
    if not spec.allow_online:
        where = " or ".join(str(cache) for cache in caches)
        raise ModelUnavailableError(
            f"ControlNet {asked} is not cached in {where} and online access is off."
        )
    with progress.span(0.0, 0.3):
        return hub.download_snapshot(
            repo_id,
            revision,
            hub.download_cache(spec.cache_dir),
            want_fp16=dtype == torch.float16,
            progress=progress,
            index=hub.MODEL_INDEX,
        )
