"""Sampling an upscaled picture (no bpy): depth-aware at the picture's own scale, so a texel
next to an occluder's outline never takes the occluder's colour."""

from __future__ import annotations

import numpy as np
import pytest

from sd_depth_texture.core.bake import visibility
from sd_depth_texture.core.bake.sampling import sample_seen
from sd_depth_texture.core.bake.surface import texel_surface
from sd_depth_texture.core.geometry import orbit
from sd_depth_texture.core.geometry.depth import capture_depth
from sd_depth_texture.core.geometry.views import View

QUAD = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], dtype=float)
QUAD_TRIANGLES = np.array([[0, 1, 2], [0, 2, 3]])
QUAD_UV = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
# A smaller square 0.4 in front of the quad: its outline is a depth edge across the quad.
BLOCKER = np.array([[-0.4, -0.4, 0.4], [0.4, -0.4, 0.4], [0.4, 0.4, 0.4], [-0.4, 0.4, 0.4]])


@pytest.mark.parametrize("factor", [1, 2, 4])
def test_an_upscaled_picture_never_mixes_the_occluders_colour_into_the_surface(factor):
    eye = np.eye(4)
    eye[2, 3] = -5.0
    view = View(eye, orbit.perspective(30, 1.0, 0.1, 100.0), 48, 48)
    vertices = np.concatenate([QUAD, BLOCKER])
    capture = capture_depth(view, vertices, np.concatenate([QUAD_TRIANGLES, QUAD_TRIANGLES + 4]))
    on_blocker = capture.raster.triangle >= 2
    # Red where the blocker is, blue on the quad; upscaled by repeating pixels (as an upscaler
    # keeps the layout) so every picture pixel has its capture pixel's colour.
    picture = np.where(on_blocker[..., None], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]).astype(np.float32)
    picture = picture.repeat(factor, axis=0).repeat(factor, axis=1)

    surface = texel_surface(QUAD, QUAD_TRIANGLES, QUAD_UV, QUAD_TRIANGLES, 96)
    seen = visibility.seen_texels(surface, capture)
    colours = sample_seen(picture, seen, capture)

    assert seen.index.size > 2000
    assert colours[:, 0].max() < 1e-6  # no red on the quad, right up to the blocker's outline
    np.testing.assert_allclose(colours[:, 2], 1.0, atol=1e-6)
