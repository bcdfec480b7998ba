"""The .blend files a run opens and writes (saved atomically)."""

from __future__ import annotations

import logging
import os

import bpy

from ..core.errors import TextureError

log = logging.getLogger(__name__)


def open_blend(path: str) -> None:
    """Open a .blend; a clear line when it is missing or damaged."""
    if not path.lower().endswith(".blend") or not os.path.isfile(path):
        raise TextureError(f"There is no .blend file at '{path}'.")
    try:
        bpy.ops.wm.open_mainfile(filepath=os.path.abspath(path), load_ui=False)
    except RuntimeError as error:
        raise TextureError(f"Blender cannot open '{path}': it may be damaged.") from error


def fsync(path: str) -> None:
    """Flush a written file to disk before it is renamed into place."""
    with open(path, "rb") as stream:
        os.fsync(stream.fileno())


def save_blend_copy(path: str) -> None:
    """Write the open file to ``path`` atomically: a temporary name, fsync, then rename.

    A crash never leaves a half-written .blend, no ``.blend1`` backup is made, the open file
    keeps its own path, and relative paths are remapped to the new folder.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem = os.path.splitext(os.path.basename(path))[0]
    partial = os.path.join(folder, f".{stem}.partial.blend")
    bpy.ops.wm.save_as_mainfile(
        filepath=partial, copy=True, relative_remap=True, check_existing=False
    )
    fsync(partial)
    os.replace(partial, path)
