"""Texel density (no bpy): picture pixels per painted texel, per view and per run, and the
note a low figure gets."""

from __future__ import annotations

import numpy as np
import pytest

from sd_depth_texture.core.bake.paint import (
    LOW_TEXEL_DENSITY,
    PaintTarget,
    overall_texel_density,
    paint_group,
)
from sd_depth_texture.core.bake.surface import texel_surface
from sd_depth_texture.core.geometry.mesh import MeshArrays, scene_geometry
from sd_depth_texture.core.geometry.orbit import NamedView
from sd_depth_texture.core.geometry.views import View
from sd_depth_texture.core.pictures import given_pictures

QUAD = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], dtype=float)
QUAD_TRIANGLES = np.array([[0, 1, 2], [0, 2, 3]])
QUAD_UV = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
# An orthographic camera 5 units up +Z looking down at the quad, with a 2.5 x 2.5 frame: the
# quad covers (64 / 1.25)^2 of its 64^2 pixels.
HALF = 1.25
EYE = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, -5], [0, 0, 0, 1]], dtype=float)
ORTHOGRAPHIC = np.array(
    [[1 / HALF, 0, 0, 0], [0, 1 / HALF, 0, 0], [0, 0, -2 / 99.9, -100.1 / 99.9], [0, 0, 0, 1]]
)


def _report(texture_size: int, picture_size: int):
    """The quad seen square-on in a 64^2 orthographic view, projected from a picture of
    ``picture_size``^2 (an upscaled picture is bigger than the capture) into ``texture_size``."""
    quad = MeshArrays("Quad", QUAD, QUAD_TRIANGLES, QUAD_UV, QUAD_TRIANGLES)
    surface = texel_surface(QUAD, QUAD_TRIANGLES, QUAD_UV, QUAD_TRIANGLES, texture_size)
    view = View(EYE, ORTHOGRAPHIC, 64, 64)
    picture = np.random.default_rng(0).random((picture_size, picture_size, 3), dtype=np.float32)
    painted, _ = paint_group(
        [PaintTarget("Quad", quad, 0, surface)], [NamedView("view", view)],
        scene_geometry([quad]), given_pictures([picture]), fill=False, margin=0,
    )  # fmt: skip
    return painted["Quad"].report


@pytest.mark.parametrize(
    ("texture_size", "picture_size"), [(32, 64), (32, 128), (128, 64), (256, 64)]
)
def test_texel_density_is_picture_pixels_per_painted_texel(texture_size, picture_size):
    report = _report(texture_size, picture_size)
    quad_pixels = (64 / HALF) ** 2 * (picture_size / 64) ** 2
    expected = quad_pixels / texture_size**2
    view = report.views[0]
    assert view["texel_density"] == pytest.approx(expected, rel=0.15)
    assert report.texel_density == pytest.approx(view["texel_density"])
    low = [note for note in report.notes if "low texel density" in note]
    assert bool(low) == (report.texel_density < LOW_TEXEL_DENSITY)
    assert bool(low) == (texture_size >= 128)  # 0.16 and 0.04 pixels per texel are low


def test_overall_density_weights_views_by_the_texels_they_painted():
    views = [{"pixels": 100.0, "texels": 100}, {"pixels": 10.0, "texels": 300}]
    assert overall_texel_density(views) == pytest.approx(110 / 400)
    assert overall_texel_density([]) is None
