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


def save_box(path: Path, compress: bool = True) -> Path:
    """A .blend holding one cube asset, ``Box`` (``compress=False``: blocks readable as saved)."""
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.mesh.primitive_cube_add(size=1.0, calc_uvs=True)
    bpy.context.active_object.name = "Box"
    bpy.context.active_object.asset_mark()
    path.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(path), compress=compress)
    return path
