"""The blending rule (no bpy): order independence, the edge fall-off, colour matching."""

from __future__ import annotations

import numpy as np
import pytest

from sd_depth_texture.core.bake.blending import (
    TextureState,
    edge_falloff,
    falloff_pixels,
    fold,
)
from sd_depth_texture.core.bake.color_match import MATCH_MIN_TEXELS, match_view
from sd_depth_texture.core.bake.paint import PaintTarget, paint_group
from sd_depth_texture.core.bake.render import render_texture
from sd_depth_texture.core.bake.surface import texel_surface
from sd_depth_texture.core.bake.visibility import SeenTexels
from sd_depth_texture.core.geometry.depth import capture_depth
from sd_depth_texture.core.geometry.mesh import MeshArrays, scene_geometry
from sd_depth_texture.core.geometry.orbit import NamedView, object_bounds, orbit_views
from sd_depth_texture.core.pictures import given_pictures

# A unit cube: 8 shared vertices, each face its own UV island in a 3 x 2 grid (UV seams on
# every edge of the cube).
CUBE = np.array(
    [[x, y, z] for z in (-1.0, 1.0) for y in (-1.0, 1.0) for x in (-1.0, 1.0)]
)  # vertex i: x = bit 0, y = bit 1, z = bit 2
CUBE_FACES = [  # corners counter-clockwise seen from outside
    (0, 2, 3, 1), (4, 5, 7, 6), (0, 1, 5, 4), (2, 6, 7, 3), (0, 4, 6, 2), (1, 3, 7, 5),
]  # fmt: skip


def cube_mesh(name: str = "Cube") -> MeshArrays:
    triangles, uv, uv_triangles = [], [], []
    for number, (a, b, c, d) in enumerate(CUBE_FACES):
        column, row = number % 3, number // 3
        low = np.array([column / 3 + 0.02, row / 2 + 0.02])
        span = np.array([1 / 3 - 0.04, 1 / 2 - 0.04])
        corners = low + span * np.array([[0, 0], [1, 0], [1, 1], [0, 1]])
        first = len(uv)
        uv.extend(corners)
        triangles += [(a, b, c), (a, c, d)]
        uv_triangles += [(first, first + 1, first + 2), (first, first + 2, first + 3)]
    return MeshArrays(name, CUBE, np.array(triangles), np.array(uv), np.array(uv_triangles))


def cube_views(count: int = 10, size: int = 64) -> list[NamedView]:
    center, radius = object_bounds(CUBE)
    views = orbit_views(center, radius, count, size=size, include_bottom=False)
    return [NamedView(f"view {number}", named.view) for number, named in enumerate(views)]


def paint_cube(views, pictures, *, size=96, match_colors=False, fill=False, margin=0):
    mesh = cube_mesh()
    surface = texel_surface(mesh.vertices, mesh.triangles, mesh.uv, mesh.uv_triangles, size)
    painted, _ = paint_group(
        [PaintTarget("Cube", mesh, 0, surface)], views, scene_geometry([mesh]),
        given_pictures(pictures), fill=fill, margin=margin, match_colors=match_colors,
    )  # fmt: skip
    return painted["Cube"]


def smooth_pictures(count: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Different, smoothly varying pictures (what diffusion views of one object look like)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    pictures = []
    for _ in range(count):
        phase = rng.random(3) * 6.28
        picture = 0.5 + 0.3 * np.sin(3 * x[..., None] + 2 * y[..., None] + phase)
        pictures.append(picture.astype(np.float32))
    return pictures


def test_permuting_the_views_gives_the_same_texture():
    views = cube_views()
    pictures = smooth_pictures(len(views), 64)
    first = paint_cube(views, pictures, fill=True, margin=2)
    order = [3, 0, 8, 4, 7, 1, 6, 2, 5]
    second = paint_cube([views[i] for i in order], [pictures[i] for i in order], fill=True,
                        margin=2)  # fmt: skip
    assert first.painted.mean() > 0.5
    np.testing.assert_array_equal(first.painted, second.painted)
    np.testing.assert_allclose(first.texture, second.texture, atol=2e-6)
    # Where several views overlap, the result is a mix, not the first or the last view alone.
    views_seen = [view["coverage"] for view in first.report.views]
    assert sum(views_seen) > 1.2 * first.report.coverage_before_fill


def seen(index, facing) -> SeenTexels:
    index = np.asarray(index)
    return SeenTexels(
        index=index, xy=np.zeros((index.size, 2)), facing=np.asarray(facing, np.float32),
        depth=np.ones(index.size), tolerance=np.full(index.size, 0.01),
    )  # fmt: skip


def test_every_view_counts_by_its_weight_and_the_keep_decision_is_reported_apart():
    state = TextureState.empty(3, channels=5)  # colour plus two more channels (maps)
    ones, zeros = np.ones((2, 5), np.float32), np.zeros((3, 5), np.float32)
    first = fold(state, seen([0, 1], [0.9, 0.5]), ones, np.array([0.9, 0.5]) ** 4, view=0)
    assert (first.new, first.refined, first.kept) == (1.0, 0.0, 0.0)
    second = fold(state, seen([0, 1, 2], [0.6, 0.95, 0.8]), zeros,
                  np.array([0.6, 0.95, 0.8]) ** 4, view=1)  # fmt: skip
    assert second.new == pytest.approx(1 / 3)  # texel 2
    assert second.refined == pytest.approx(1 / 3)  # texel 1: 0.95 beats 0.5 by the margin
    assert second.kept == pytest.approx(1 / 3)  # texel 0: kept during denoising...
    w0, w1 = 0.9**4, 0.6**4  # ...but the worse view still counts in the final colour
    np.testing.assert_allclose(state.color[0], w0 / (w0 + w1), rtol=1e-6)
    w0, w1 = 0.5**4, 0.95**4
    np.testing.assert_allclose(state.color[1], w0 / (w0 + w1), rtol=1e-6)
    np.testing.assert_allclose(state.color[2], 0.0)
    np.testing.assert_allclose(state.best_facing, [0.9, 0.95, 0.8])
    assert list(state.dominant) == [0, 1, 1]
    assert second.overlap_difference == pytest.approx(1.0)


def test_the_edge_falloff_is_the_distance_to_the_nearest_edge_or_the_frame():
    rng = np.random.default_rng(1)
    edges = rng.random((40, 50)) < 0.004
    edges[20, 5:30] = True
    pixels = 6
    falloff = edge_falloff(edges, pixels)
    # Chessboard distance to the nearest edge pixel or to the frame (one pixel outside).
    rows, cols = np.mgrid[0:40, 0:50]
    er, ec = np.nonzero(edges)
    to_edge = np.max(np.abs(np.stack([rows[..., None] - er, cols[..., None] - ec])), 0).min(-1)
    to_frame = np.minimum.reduce([rows + 1, cols + 1, 40 - rows, 50 - cols])
    expected = np.minimum(np.minimum(to_edge, to_frame), pixels) / pixels
    np.testing.assert_allclose(falloff, expected, atol=1e-6)
    assert falloff[edges].max() == 0 and falloff.max() == 1
    assert falloff_pixels(512, 768) == 10 and falloff_pixels(16, 16) == 1


def test_a_view_fades_out_towards_its_silhouette_instead_of_ending_abruptly():
    """One view over an old black texture: in the middle of the cube's face it replaces the old
    colour, towards the face's silhouette its weight falls and the old colour shows through."""
    views = cube_views()[:1]
    mesh = cube_mesh()
    surface = texel_surface(mesh.vertices, mesh.triangles, mesh.uv, mesh.uv_triangles, 64)
    old = np.zeros((surface.texel.size, 3), np.float32)
    painted, _ = paint_group(
        [PaintTarget("Cube", mesh, 0, surface, old)], views, scene_geometry([mesh]),
        given_pictures([np.ones((64, 64, 3), np.float32)]), fill=False, margin=0,
    )  # fmt: skip
    result = painted["Cube"]
    colour = result.texture[..., 0][result.painted]
    assert colour.max() > 0.9  # squarely seen, far from the edges: replaced
    assert colour.min() < 0.5  # next to a silhouette: faded into the old texture
    assert 0.2 < np.mean(colour < 0.85) < 0.8


def test_colour_matching_recovers_a_known_gain_and_offset_despite_outliers():
    rng = np.random.default_rng(3)
    painted = rng.random((4000, 3)).astype(np.float32) * 0.8 + 0.1
    gain, offset = np.array([1.2, 0.9, 1.05]), np.array([-0.05, 0.04, 0.0])
    new = ((painted - offset) / gain).astype(np.float32)
    wrong = rng.random(4000) < 0.15  # other detail in the new view: not an exposure change
    new[wrong] = rng.random((wrong.sum(), 3))
    correction = match_view(new, painted)
    assert correction.applied and correction.overlap == 4000
    np.testing.assert_allclose(correction.gain, gain, atol=0.02)
    np.testing.assert_allclose(correction.offset, offset, atol=0.01)
    fixed = correction.apply(new)
    assert np.median(np.abs(fixed - painted)[~wrong]) < 0.005

    small = match_view(new[: MATCH_MIN_TEXELS - 1], painted[: MATCH_MIN_TEXELS - 1])
    assert not small.applied
    np.testing.assert_array_equal(small.apply(new), new)
    assert small.as_record()["overlap_texels"] == MATCH_MIN_TEXELS - 1


def test_matched_views_meet_without_a_jump_and_the_report_says_the_correction():
    """Renders of one true texture at three exposures: matching brings views 2 and 3 back to
    the first one's exposure (gain 1 / exposure, offset 0); without it they stay apart."""
    views = cube_views()[:3]  # front, then front right and front left: each overlaps the first
    mesh = cube_mesh()
    v, u = np.mgrid[0:96, 0:96] / 96
    truth = np.stack([0.2 + 0.6 * u, 0.3 + 0.4 * v, 0.5 + 0.2 * np.sin(6 * u)], -1)
    exposure = [1.0, 1.25, 0.8]
    pictures = []
    for named, gain in zip(views, exposure, strict=True):
        capture = capture_depth(named.view, mesh.vertices, mesh.triangles)
        rendered, _, _ = render_texture(capture, mesh.vertices, mesh.triangles, mesh.uv,
                                        mesh.uv_triangles, 0, truth.astype(np.float32))  # fmt: skip
        pictures.append(np.clip(rendered * gain, 0, 1).astype(np.float32))
    matched = paint_cube(views, pictures, match_colors=True)
    plain = paint_cube(views, pictures)
    records = [view["color_match"] for view in matched.report.views]
    assert not records[0]["applied"]  # nothing painted before the first view
    for record, gain in zip(records[1:], exposure[1:], strict=True):
        assert record["applied"] and record["overlap_texels"] >= MATCH_MIN_TEXELS
        np.testing.assert_allclose(record["gain"], 1 / gain, rtol=0.05)
        np.testing.assert_allclose(record["offset"], 0, atol=0.03)
    assert all(view["color_match"] is None for view in plain.report.views)
    inside = matched.painted
    error_matched = np.abs(matched.texture - truth)[inside].mean()
    error_plain = np.abs(plain.texture - truth)[inside].mean()
    assert error_matched < 0.02 < error_plain
