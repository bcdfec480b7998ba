"""Checks shared by every model file the add-on opens (pipelines and ControlNets alike):
pickles refused unopened, only regular files, safetensors headers read before a load, strict
state-dict loads, and the licence a model card names.

No bpy.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import TextureError
from .device import first_line
from .hub import PICKLE_SUFFIXES

_CARD_HEAD_BYTES = 16 << 10
_LICENCE_LINE = re.compile(r"^license:\s*(.+)$", re.MULTILINE)


class IncompleteModelError(TextureError):
    """A model folder lacks files or holds damaged ones (downloading again would fix it)."""


def model_licence(folder: Path) -> str | None:
    """The ``license`` a model card (``README.md``'s front matter) names, if it names one."""
    card = folder / "README.md"
    if not card.is_file():
        return None
    try:
        with open(card, encoding="utf-8", errors="replace") as stream:
            head = stream.read(_CARD_HEAD_BYTES)
    except OSError:
        return None
    if not head.startswith("---"):
        return None
    front = head[3:].split("\n---", 1)[0]
    found = _LICENCE_LINE.search(front)
    return found.group(1).strip().strip("'\"") if found else None


def pickle_refusal(path: Path) -> TextureError:
    return TextureError(
        f"Refusing to load {path.name}: pickle weights ({', '.join(PICKLE_SUFFIXES)}) can run "
        "arbitrary code when opened; use .safetensors weights instead"
    )


def safetensors_in(directory: Path) -> list[Path]:
    """The ``.safetensors`` files in ``directory``, sorted; refuses one whose weights are only
    pickles. Empty when it holds no weights at all (the caller says what is missing)."""
    files = [path for path in directory.iterdir() if path.is_file()]
    weights = sorted(path for path in files if path.name.endswith(".safetensors"))
    if not weights:
        pickles = [path for path in files if path.suffix.lower() in PICKLE_SUFFIXES]
        if pickles:
            raise pickle_refusal(pickles[0])
    return weights


def refuse_special_files(folder: Path, components: tuple[str, ...]) -> None:
    """Only regular files and folders: a pipe, socket or device would hang or break the load."""
    for component in components:
        directory = folder / component
        if not directory.is_dir():
            continue
        for root, dirs, files in os.walk(directory):
            for name in [*dirs, *files]:
                path = Path(root) / name
                if not (path.is_file() or path.is_dir()):
                    _raise_not_regular(folder, path)


def require_regular_files(folder: Path, names: list[str]) -> None:
    for name in names:
        path = folder / name
        if not path.is_file():
            _raise_not_regular(folder, path)


def _raise_not_regular(folder: Path, path: Path) -> None:
    name = path.relative_to(folder).as_posix()
    if not os.path.lexists(path):
        raise IncompleteModelError(f"Model folder {folder} has no {name}")
    if not path.exists():
        raise IncompleteModelError(f"{name} in {folder} is a broken link (an unfinished copy?)")
    raise IncompleteModelError(
        f"{name} in {folder} is not a regular file (a pipe, socket or device): replace it with "
        "the real file"
    )


def read_json(path: Path) -> dict[str, Any]:
    """A config file as a dict; only called on paths checked to be regular files."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise IncompleteModelError(f"{path} is unreadable ({first_line(error)})") from error
    if not isinstance(config, dict):
        raise IncompleteModelError(f"{path} is not a JSON object")
    return config


def check_safetensors(path: Path) -> None:
    """Read only the header: catches truncated or corrupt files before a multi-GB load."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            handle.keys()
    except Exception as error:
        raise IncompleteModelError(
            f"Weights file {path} is corrupt or truncated ({first_line(error)}); "
            "delete it and download or copy it again"
        ) from error


def load_strict(module: torch.nn.Module, state: dict[str, Any], what: str, source: Path) -> None:
    """Load every tensor exactly: a partial match would silently generate garbage."""
    state = {k: v for k, v in state.items() if v is not None}
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise TextureError(
            f"The {what} weights in {source.name} do not match the config: "
            f"{len(missing)} missing (e.g. {', '.join(missing[:2]) or '-'}), "
            f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:2]) or '-'})"
        )
    wrong = [k for k, v in state.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if wrong:
        key = wrong[0]
        raise TextureError(
            f"The {what} weights in {source.name} do not match the config: {key} has shape "
            f"{tuple(state[key].shape)}, expected {tuple(expected[key].shape)}"
        )
    module.load_state_dict(state, strict=True)
