"""Seam figures on constructed cases whose answer is known (no bpy)."""

from __future__ import annotations

import numpy as np
import pytest
from test_blending import cube_mesh

from sd_depth_texture.core.bake.margin import dilate_margin
from sd_depth_texture.core.bake.seams import edge_pairs, uv_seam_figure, view_border_figure
from sd_depth_texture.core.bake.surface import texel_surface

SIZE = 96


def cube_texture(colour_of_point) -> tuple[np.ndarray, np.ndarray]:
    """A texture of the cube whose texels hold ``colour_of_point`` of their surface points,
    padded past the islands as a run pads them; and each texel's face (-1 off the islands)."""
    mesh = cube_mesh()
    surface = texel_surface(mesh.vertices, mesh.triangles, mesh.uv, mesh.uv_triangles, SIZE)
    texture = np.zeros((SIZE, SIZE, 3), np.float32)
    texture.reshape(-1, 3)[surface.texel] = colour_of_point(surface.position)
    face = np.full(SIZE * SIZE, -1)
    face[surface.texel] = surface.triangle // 2
    return dilate_margin(texture, surface.mask, 4), face.reshape(SIZE, SIZE)


def smooth(points: np.ndarray) -> np.ndarray:
    return np.stack(
        [0.5 + 0.2 * points[:, 0], 0.5 + 0.1 * points[:, 1], 0.4 + 0.1 * points[:, 2]], 1
    )


def figure(texture, painted=None):
    mesh = cube_mesh()
    return uv_seam_figure(texture, mesh.vertices, mesh.triangles, mesh.uv, mesh.uv_triangles,
                          painted)  # fmt: skip


def test_the_cube_has_twelve_seam_edges_and_six_inner_ones():
    mesh = cube_mesh()
    pairs = edge_pairs(mesh.triangles)
    assert pairs.shape == (18, 2)  # 12 cube edges (UV seams) + 6 face diagonals
    assert figure(cube_texture(smooth)[0]).pairs == 12  # the seams only


def test_a_texture_continuous_over_the_surface_has_invisible_seams():
    texture, _ = cube_texture(smooth)
    result = figure(texture)
    assert result.seam > 0 and result.reference > 0
    # Across a seam the two points lie on two faces at right angles (a shorter step in 3D than
    # the same step within a face): a little under 1.
    assert 0.6 < result.ratio < 1.1


def test_an_offset_face_shows_as_a_seam_of_known_height():
    """Face 0 is 0.1 brighter: 4 of the 12 seam edges (equal lengths) border it, so the seam
    figure of a constant texture is 0.1 * 4 / 12; within the islands nothing changes."""

    def constant_but_face_0(points):
        return np.full((points.shape[0], 3), 0.5)

    texture, face = cube_texture(constant_but_face_0)
    texture[face == 0] += 0.1
    texture = dilate_margin(texture, face >= 0, 4)
    result = figure(texture)
    assert result.seam == pytest.approx(0.1 * 4 / 12, rel=1e-3)
    assert result.reference == pytest.approx(0.0, abs=1e-6)
    painted = face != 0  # looking only where the run painted: face 0 is left out
    assert figure(texture, painted).seam == pytest.approx(0.0, abs=1e-6)


def test_view_borders_of_a_continuous_texture_do_not_show_and_a_step_does():
    rows, cols = np.mgrid[0:64, 0:64]
    texture = np.repeat((0.3 + 0.004 * (cols + rows))[..., None], 3, axis=2).astype(np.float32)
    dominant = (cols >= 32).astype(np.int16)  # view 0 on the left, view 1 on the right
    smooth_border = view_border_figure(texture, dominant)
    assert smooth_border.ratio == pytest.approx(1.0, rel=1e-4)
    assert smooth_border.pairs == 63  # one crossing per row that has a row below
    texture[:, 32:] += 0.1  # view 1 is brighter
    step = view_border_figure(texture, dominant)
    assert step.seam == pytest.approx(0.104, rel=1e-4)
    assert step.reference == pytest.approx(0.004, rel=1e-3)
    dominant[:, :8] = -1  # texels no view painted well are left out
    assert view_border_figure(texture, dominant).pairs == 63


def test_big_meshes_are_sampled_without_missing_seams_along_runs_of_vertex_ids():
    """A 160 x 160 grid (51,200 triangles: only a subset of edges is searched) cut by a UV seam
    down its middle, vertices numbered down the columns as a subdivided seam's are: the seam's
    edges join consecutive ids, and the search must still find its share of them."""
    n = 160
    column, row = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    vertices = np.stack([column.ravel(), row.ravel(), np.zeros(column.size)], 1) / n
    corner = (column[:-1, :-1] * (n + 1) + row[:-1, :-1]).ravel()  # id = column * (n + 1) + row
    triangles = np.concatenate([
        np.stack([corner, corner + n + 1, corner + n + 2], 1),
        np.stack([corner, corner + n + 2, corner + 1], 1),
    ])  # fmt: skip
    uv = np.concatenate([vertices[:, :2] * [0.45, 0.9], vertices[:, :2] * [0.45, 0.9] + [0.5, 0]])
    right = vertices[triangles].mean(axis=1)[:, 0] > 0.5
    uv_triangles = np.where(right[:, None], triangles + vertices.shape[0], triangles)
    texture = np.random.default_rng(0).random((256, 256, 3)).astype(np.float32)
    result = uv_seam_figure(texture, vertices, triangles, uv, uv_triangles)
    assert 3 * triangles.shape[0] > 32_768  # the search looks at a subset
    assert n // 8 <= result.pairs < n  # a fair share of the seam's n edges
