"""Scenes the tests save to disk."""

from __future__ import annotations

from pathlib import Path

import bpy

from sd_depth_texture.blender import sample


def save_sample(path: Path) -> Path:
    """The sample scene built afresh and saved at ``path`` (its folder is made)."""
    sample.build_sample_scene()
    path.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return path
