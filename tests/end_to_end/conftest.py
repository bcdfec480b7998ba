"""Fixtures of the whole-run tests."""

from __future__ import annotations

from pathlib import Path

import bpy
import pytest

from sd_depth_texture.blender import sample


@pytest.fixture
def sample_blend(tmp_path, addon) -> Path:
    """The sample scene saved as ``scene/sample.blend`` in the test's folder."""
    sample.build_sample_scene()
    path = tmp_path / "scene" / "sample.blend"
    path.parent.mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return path
