"""Pure geometry and baking (no bpy): rasteriser, views, depth map, projection, the one
blending rule and margin."""

from __future__ import annotations

import numpy as np
import pytest

from sd_depth_texture.core.bake import visibility
from sd_depth_texture.core.bake.margin import dilate_margin
from sd_depth_texture.core.bake.paint import PaintTarget, paint_group
from sd_depth_texture.core.bake.sampling import sample_bilinear, sample_seen
from sd_depth_texture.core.bake.surface import cached_texel_surface, texel_surface
from sd_depth_texture.core.errors import TextureError
from sd_depth_texture.core.geometry import orbit, raster, views
from sd_depth_texture.core.geometry.depth import (
    FAR_FOREGROUND,
    cached_capture,
    capture_depth,
    depth_for_model,
)
from sd_depth_texture.core.geometry.mesh import MeshArrays, scene_geometry
from sd_depth_texture.core.geometry.orbit import NamedView
from sd_depth_texture.core.geometry.raster import NO_TRIANGLE, rasterize
from sd_depth_texture.core.geometry.views import View, generation_size
from sd_depth_texture.core.pictures import given_pictures


def perspective(fov_deg: float, aspect: float, near: float = 0.1, far: float = 100.0):
    return orbit.perspective(fov_deg, aspect, near, far)


def orthographic(half_height: float, aspect: float, near: float = 0.1, far: float = 100.0):
    return np.array(
        [
            [1 / (half_height * aspect), 0, 0, 0],
            [0, 1 / half_height, 0, 0],
            [0, 0, -2 / (far - near), -(far + near) / (far - near)],
            [0, 0, 0, 1],
        ]
    )


def project(surface, capture, picture):
    """The texels a view sees and their colours from its picture."""
    seen = visibility.seen_texels(surface, capture)
    return seen, sample_seen(picture, seen, capture)


def paint_quad(view: View, picture: np.ndarray, size: int, start=None, occluders=()):
    """One view painted onto the quad by the flow's own pure painting; returns the texture
    and the texels this run painted."""
    quad = MeshArrays("Quad", QUAD, QUAD_TRIANGLES, QUAD_UV, QUAD_TRIANGLES)
    surface = texel_surface(QUAD, QUAD_TRIANGLES, QUAD_UV, QUAD_TRIANGLES, size)
    start_colours = None if start is None else start.reshape(-1, 3)[surface.texel]
    geometry = scene_geometry([quad, *occluders])
    painted, _depth = paint_group(
        [PaintTarget("Quad", quad, 0, surface, start_colours)], [NamedView("view", view)],
        geometry, given_pictures([picture]), fill=False, margin=0,
    )  # fmt: skip
    return painted["Quad"].texture, painted["Quad"].painted


def eye_at(z: float) -> np.ndarray:
    """World-to-view for an eye on +Z looking down -Z at the origin."""
    world_to_view = np.eye(4)
    world_to_view[2, 3] = -z
    return world_to_view


QUAD = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], dtype=float)
QUAD_TRIANGLES = np.array([[0, 1, 2], [0, 2, 3]])
QUAD_UV = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)


def brute_force(xy, triangles, z, width, height):
    """Reference z-buffer: every pixel centre against every triangle."""
    px, py = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    best_z = np.full((height, width), np.inf)
    best = np.full((height, width), NO_TRIANGLE)
    for index, (a, b, c) in enumerate(triangles):
        (ax, ay), (bx, by), (cx, cy) = xy[a], xy[b], xy[c]
        area = (bx - ax) * (cy - ay) - (cx - ax) * (by - ay)
        if area == 0:
            continue
        w0 = ((bx - px) * (cy - py) - (cx - px) * (by - py)) / area
        w1 = ((cx - px) * (ay - py) - (ax - px) * (cy - py)) / area
        w2 = 1 - w0 - w1
        depth = w0 * z[a] + w1 * z[b] + w2 * z[c]
        closer = (w0 >= 0) & (w1 >= 0) & (w2 >= 0) & (depth < best_z)
        best_z[closer], best[closer] = depth[closer], index
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rasterizer_matches_a_brute_force_z_buffer(seed):
    rng = np.random.default_rng(seed)
    xy = rng.random((200, 2)) * [48, 40] - 4  # some triangles stick out of the image
    triangles = rng.integers(0, 200, (150, 3))
    depth = rng.random(200)
    raster = rasterize(xy, triangles, 40, 32, depth)
    expected = brute_force(xy, triangles, depth, 40, 32)
    assert (raster.triangle != NO_TRIANGLE).sum() > 300
    assert np.mean(raster.triangle != expected) < 0.002  # ties on shared edges may differ
    covered = raster.covered
    bary = raster.barycentric[covered]
    assert np.all(bary > -1e-4) and np.allclose(bary.sum(axis=1), 1.0, atol=1e-5)


def test_rasterizer_barycentrics_place_each_pixel_centre_exactly():
    """Barycentrics, taken about a corner in float32, rebuild the pixel centre to 1e-3 px."""
    rng = np.random.default_rng(7)
    size = 2048
    anchors = rng.random((4000, 1, 2)) * size
    xy = (anchors + rng.normal(0.0, 6.0, (4000, 3, 2))).reshape(-1, 2)  # small, far from 0
    triangles = np.arange(xy.shape[0]).reshape(-1, 3)
    result = rasterize(xy, triangles, size, size)
    corners = xy[triangles[result.pixel_triangle]]  # (N, 3, 2)
    rebuilt = np.einsum("nk,nkc->nc", result.pixel_barycentric.astype(np.float64), corners)
    centres = np.stack([result.pixel % size + 0.5, result.pixel // size + 0.5], axis=1)
    assert result.pixel.size > 50_000
    assert np.abs(rebuilt - centres).max() < 1e-3


def test_blocks_bands_and_chunks_do_not_change_any_result(monkeypatch):
    """The rasteriser's row chunks and pixel bands, and the projection's texel blocks, only
    bound memory, and its threads only share the work: tiny chunks on two threads give
    rasters and projections bit-identical to one chunk on one thread (the random triangles
    overlap, so the order in which chunks are written matters)."""
    rng = np.random.default_rng(3)
    xy = rng.random((400, 2)) * [96, 80] - 4
    triangles = rng.integers(0, 400, (300, 3))
    depth = rng.random(400)
    view = View(eye_at(5.0), perspective(40, 1.0), 64, 64)
    capture = capture_depth(view, QUAD, QUAD_TRIANGLES)
    picture = rng.random((64, 64, 3)).astype(np.float32)

    def run():
        rasters = [rasterize(xy, triangles, 96, 80, key) for key in (depth, None)]
        surface = texel_surface(QUAD, QUAD_TRIANGLES, QUAD_UV, QUAD_TRIANGLES, 48)
        return rasters, project(surface, capture, picture)

    monkeypatch.setattr(raster, "_WORKERS", 1)
    (whole_rasters, (whole_seen, whole_colour)) = run()
    monkeypatch.setattr(raster, "_WORKERS", 2)
    monkeypatch.setattr(raster, "_ROWS_PER_CHUNK", 7)
    monkeypatch.setattr(raster, "_PIXELS_PER_BAND", 100)
    monkeypatch.setattr(visibility, "_TEXELS_PER_BLOCK", 333)
    (split_rasters, (split_seen, split_colour)) = run()
    for whole, split in zip(whole_rasters, split_rasters, strict=True):
        np.testing.assert_array_equal(whole.pixel, split.pixel)
        np.testing.assert_array_equal(whole.pixel_triangle, split.pixel_triangle)
        np.testing.assert_array_equal(whole.pixel_barycentric, split.pixel_barycentric)
    assert whole_seen.index.size > 1000
    np.testing.assert_array_equal(whole_colour, split_colour)
    for field in ("index", "facing"):
        np.testing.assert_array_equal(getattr(whole_seen, field), getattr(split_seen, field))


@pytest.mark.parametrize("near, far", [(0.1, 100.0), (1e-4, 1e5)])
def test_the_depth_test_holds_for_any_clip_range(near, far):
    """The Z-buffer and the texels' test against it work in inverse depth, so an extreme clip
    range (a tiny near, a huge far) neither hides visible texels nor lets hidden ones through."""
    view = View(eye_at(50.0), perspective(3, 1.0, near, far), 64, 64)
    blocker = np.array([[-0.5, -0.5, 0.5], [0.5, -0.5, 0.5], [0.5, 0.5, 0.5], [-0.5, 0.5, 0.5]])
    scene_vertices = np.concatenate([QUAD, blocker])
    scene_triangles = np.concatenate([QUAD_TRIANGLES, QUAD_TRIANGLES + 4])
    capture = capture_depth(view, scene_vertices, scene_triangles)
    surface = texel_surface(QUAD, QUAD_TRIANGLES, QUAD_UV, QUAD_TRIANGLES, 64)
    seen = np.zeros(surface.texel.size, dtype=bool)
    seen[visibility.seen_texels(surface, capture).index] = True
    reach = np.abs(surface.position[:, :2]).max(axis=1)
    assert not seen[reach < 0.45].any()  # 0.5 behind the blocker, 50 units away
    assert seen[(reach > 0.55) & (reach < 0.9)].all()  # texels on the outline may fall outside


def test_rasterizer_covers_a_shared_edge_without_cracks():
    xy = QUAD[:, :2] * 10 + 16
    raster = rasterize(xy, QUAD_TRIANGLES, 32, 32)
    assert raster.covered.sum() == 20 * 20  # a 20x20-pixel square, every centre covered once


def test_generation_size_keeps_the_aspect_in_multiples_of_8():
    assert generation_size(1.5) == (768, 512)
    assert generation_size(9 / 16) == (512, 912)
    width, height = generation_size(1.777)
    assert width % 8 == 0 and height == 512
    with pytest.raises(TextureError):
        generation_size(0.0)


def test_a_view_too_large_for_memory_is_refused_with_the_size_it_would_need():
    assert generation_size(100.0) == (51200, 512)  # 26 megapixels: allowed
    assert generation_size(1 / 128) == (512, 65536)  # the longest strip at 512
    for aspect, size in ((1000.0, "512000 x 512"), (1 / 1000, "512 x 512000")):
        with pytest.raises(TextureError, match=f"needs a {size} depth map") as refused:
            generation_size(aspect)
        assert "short side of at most 176 pixels" in str(refused.value)
        width, height = generation_size(aspect, 176)
        assert width * height <= views.MAX_VIEW_PIXELS
        with pytest.raises(TextureError):
            generation_size(aspect, 184)
    with pytest.raises(TextureError, match=r"less extreme aspect ratio\.$"):
        generation_size(1e7)  # nothing fits, whatever the short side


def test_a_camera_pose_ignores_scale_and_refuses_a_collapsed_one():
    """Renders ignore a camera's scale (but keep a mirrored axis); a zero scale has no view."""
    angle = np.radians(30)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                         [0, 0, 1.0]])  # fmt: skip
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, [1.0, -2.0, 3.0]
    expected = np.linalg.inv(pose)
    scaled = pose.copy()
    scaled[:3, :3] = rotation * [2.0, 0.5, 3.0]  # column k scaled by axis k's scale
    np.testing.assert_allclose(views.camera_world_to_view(scaled, "Cam"), expected, atol=1e-12)
    mirrored = pose.copy()
    mirrored[:3, 0] *= -1.0
    assert np.linalg.det(views.camera_world_to_view(mirrored, "Cam")[:3, :3]) < 0
    for collapse in ([1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1e-12, 1.0, 1.0]):
        flat = pose.copy()
        flat[:3, :3] = rotation * collapse
        with pytest.raises(TextureError, match="The camera 'Cam' is scaled to zero"):
            views.camera_world_to_view(flat, "Cam")


def test_depth_of_a_plane_is_planar_view_distance_and_near_is_bright():
    view = View(eye_at(5.0), perspective(40, 1.5), 96, 64)
    tilted = QUAD.copy()
    tilted[:, 2] = [0.0, 0.0, 1.0, 1.0]  # top edge (y = 1) leans towards the eye
    capture = capture_depth(view, tilted, QUAD_TRIANGLES)
    foreground = capture.foreground
    assert foreground.any() and not foreground.all()
    # Exact planar depth: each foreground pixel's view ray hits the plane at this distance.
    rows, cols = np.nonzero(foreground)
    ray_y = (1 - (rows + 0.5) / 64 * 2) / view.projection[1, 1]
    # Plane z = (y + 1) / 2; the ray's point at view depth d is (., ray_y d, 5 - d).
    distance = 9.0 / (2.0 + ray_y)
    np.testing.assert_allclose(capture.view_depth[foreground], distance, rtol=1e-4)

    depth = depth_for_model(capture)
    assert depth.dtype == np.float32 and np.isfinite(depth).all()
    assert depth[~foreground].max() == 0.0
    assert depth[foreground].min() == pytest.approx(FAR_FOREGROUND)
    assert depth[foreground].max() == pytest.approx(1.0)
    top, bottom = rows.min(), rows.max()
    column = int(np.median(cols))
    assert depth[top, column] > depth[bottom, column]  # the top leans nearer: brighter
    # Inverse depth (affine in 1/z), as MiDaS gives: 1/distance maps linearly onto the map.
    inverse = 1.0 / capture.view_depth[foreground]
    fit = np.polyfit(inverse, depth[foreground], 1)
    assert np.abs(np.polyval(fit, inverse) - depth[foreground]).max() < 1e-4


def test_orthographic_depth_is_linear_in_distance():
    view = View(eye_at(5.0), orthographic(1.5, 1.0), 64, 64)
    tilted = QUAD.copy()
    tilted[:, 2] = [0.0, 0.0, 1.0, 1.0]
    capture = capture_depth(view, tilted, QUAD_TRIANGLES)
    depth = depth_for_model(capture)
    foreground = capture.foreground
    fit = np.polyfit(capture.view_depth[foreground], depth[foreground], 1)
    assert fit[0] < 0  # farther is darker
    residual = np.polyval(fit, capture.view_depth[foreground]) - depth[foreground]
    assert np.abs(residual).max() < 1e-4


def test_an_empty_view_or_a_constant_depth_is_an_error():
    view = View(eye_at(5.0), perspective(40, 1.0), 32, 32)
    behind = QUAD + np.array([0.0, 0.0, 10.0])  # behind the eye
    with pytest.raises(TextureError, match="Nothing is visible"):
        depth_for_model(capture_depth(view, behind, QUAD_TRIANGLES))
    wall = View(eye_at(5.0), orthographic(0.5, 1.0), 32, 32)  # the quad fills the whole view
    with pytest.raises(TextureError, match="constant"):
        depth_for_model(capture_depth(wall, QUAD, QUAD_TRIANGLES))


def test_projection_round_trip_reproduces_the_texture_on_a_facing_quad():
    """An orthographic view of a UV-mapped quad is the texture itself, resampled."""
    size = 64
    u = (np.arange(size) + 0.5) / size
    texture = np.zeros((size, size, 3), dtype=np.float32)
    texture[..., 0] = u[None, :]  # red grows with u
    texture[..., 1] = u[::-1, None]  # green grows with v (row 0 is v = 1)
    view = View(eye_at(5.0), orthographic(1.25, 1.0), 80, 80)
    capture = capture_depth(view, QUAD, QUAD_TRIANGLES)
    # What the view shows: the quad spans pixels 8..72, texels map 1.25 pixels each.
    picture = np.zeros((80, 80, 3), dtype=np.float32)
    x = (np.arange(80) + 0.5 - 8) / 64  # u at each pixel centre
    picture[..., 0] = np.clip(x, 0, 1)[None, :]
    picture[..., 1] = np.clip(x, 0, 1)[::-1][:, None]

    surface = texel_surface(QUAD, QUAD_TRIANGLES, QUAD_UV, QUAD_TRIANGLES, size)
    assert surface.texel.size == size * size
    assert visibility.seen_texels(surface, capture).index.size == size * size
    result, written = paint_quad(view, picture, size)
    assert written.all()
    np.testing.assert_allclose(result, texture, atol=1e-4)


def test_hidden_and_grazing_texels_are_not_written():
    view = View(eye_at(5.0), perspective(40, 1.0), 64, 64)
    blocker = np.array([[-0.5, -0.5, 1], [0.5, -0.5, 1], [0.5, 0.5, 1], [-0.5, 0.5, 1.0]])
    scene_vertices = np.concatenate([QUAD, blocker])
    scene_triangles = np.concatenate([QUAD_TRIANGLES, QUAD_TRIANGLES + 4])
    capture = capture_depth(view, scene_vertices, scene_triangles)
    surface = texel_surface(QUAD, QUAD_TRIANGLES, QUAD_UV, QUAD_TRIANGLES, 32)
    seen = np.zeros(surface.texel.size, dtype=bool)
    seen[visibility.seen_texels(surface, capture).index] = True
    centre = np.abs(surface.position[:, :2]).max(axis=1) < 0.4
    assert not seen[centre].any()  # behind the blocker
    assert seen[np.abs(surface.position[:, :2]).max(axis=1) > 0.9].all()  # rim in plain view

    edge_on = View(np.array([[0, 0, -1, 0], [0, 1, 0, 0], [1, 0, 0, -5], [0, 0, 0, 1.0]]),
                   perspective(40, 1.0), 64, 64)  # fmt: skip
    grazing = capture_depth(edge_on, QUAD, QUAD_TRIANGLES)
    assert visibility.seen_texels(surface, grazing).index.size == 0


def test_texels_outside_the_view_keep_the_old_texture():
    view = View(eye_at(5.0), perspective(15, 1.0), 64, 64)  # sees only the quad's middle
    old = np.full((32, 32, 3), 0.25, dtype=np.float32)
    new, written = paint_quad(view, np.ones((64, 64, 3), dtype=np.float32), 32, start=old)
    assert 0 < written.mean() < 1
    np.testing.assert_array_equal(new[~written], old[~written])
    assert np.all(new[written] > 0.25)


def test_one_view_over_an_old_texture_replaces_square_texels_and_fades_at_grazing_ones():
    """The texture a one-view run paints over counts as an earlier view seen at 60 degrees:
    a square view nearly replaces it, a steeply tilted one blends into it."""
    old = np.zeros((32, 32, 3), dtype=np.float32)
    white = np.ones((64, 64, 3), dtype=np.float32)
    square, _ = paint_quad(View(eye_at(5.0), perspective(40, 1.0), 64, 64), white, 32, start=old)
    tilt = np.radians(70)
    eye = np.array([0.0, -np.sin(tilt), np.cos(tilt)]) * 5.0
    tilted_view = View(orbit.look_at(eye, np.zeros(3), np.array([0, 0, 1.0])),
                       perspective(40, 1.0), 64, 64)  # fmt: skip
    tilted, painted = paint_quad(tilted_view, white, 32, start=old)
    assert square[8:24, 8:24].min() > 0.9  # cos^4(0) = 1 against cos^4(60) = 1/16
    assert 0.1 < tilted[painted].mean() < 0.4  # cos^4(70) = 0.014 against 1/16


def test_bilinear_sampling_interpolates_between_pixel_centres():
    image = np.array([[[0.0], [1.0]], [[2.0], [3.0]]], dtype=np.float32)
    xy = np.array([[0.5, 0.5], [1.5, 1.5], [1.0, 1.0], [1.0, 0.5]])
    np.testing.assert_allclose(sample_bilinear(image, xy)[:, 0], [0, 3, 1.5, 0.5])


def test_margin_pads_islands_with_their_edge_colours_only_so_far():
    texture = np.zeros((16, 16, 4), dtype=np.float32)
    filled = np.zeros((16, 16), dtype=bool)
    filled[4:8, 4:8] = True
    texture[4:8, 4:8] = [1, 0.5, 0.25, 1]
    padded = dilate_margin(texture, filled, 2)
    np.testing.assert_allclose(padded[2:10, 2:10], np.broadcast_to([1, 0.5, 0.25, 1], (8, 8, 4)))
    assert np.all(padded[:1] == 0) and np.all(padded[11:] == 0)  # beyond the margin: unchanged
    np.testing.assert_array_equal(dilate_margin(texture, filled, 0), texture)


def _margin_ring_by_ring(texture: np.ndarray, filled: np.ndarray, margin: int) -> np.ndarray:
    """The margin's definition, spelled out: each ring found over the whole texture, each ring
    texel the mean of its filled 8-neighbours, summed in the fixed neighbour order."""
    done = np.pad(filled, 1)
    colour = np.pad(texture.astype(np.float32), ((1, 1), (1, 1), (0, 0)))
    steps = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    for _ in range(margin):
        grown = np.zeros_like(done)
        for dy, dx in steps:
            grown[1:-1, 1:-1] |= done[
                1 + dy : done.shape[0] - 1 + dy, 1 + dx : done.shape[1] - 1 + dx
            ]
        rows, cols = np.nonzero(grown & ~done)
        total = np.zeros((rows.size, colour.shape[2]), dtype=np.float32)
        count = np.zeros((rows.size, 1), dtype=np.float32)
        for dy, dx in steps:
            near = done[rows + dy, cols + dx][:, None]
            total += colour[rows + dy, cols + dx] * near
            count += near
        colour[rows, cols] = total / count
        done[rows, cols] = True
    return colour[1:-1, 1:-1]


@pytest.mark.parametrize("seed", range(6))
def test_margin_is_bit_for_bit_the_ring_by_ring_definition(seed):
    rng = np.random.default_rng(seed)
    height, width = rng.integers(1, 48, 2)
    texture = rng.random((height, width, rng.choice([1, 3, 4])), dtype=np.float32)
    filled = rng.random((height, width)) < rng.uniform(0.0, 0.2)
    margin = int(rng.integers(1, 20))
    expected = _margin_ring_by_ring(texture, filled, margin)
    padded = dilate_margin(texture, filled, margin)
    np.testing.assert_array_equal(padded.view(np.uint32), expected.view(np.uint32))
    own = texture.copy()
    assert dilate_margin(own, filled, margin, in_place=True) is own
    np.testing.assert_array_equal(own, expected)


def test_texel_surfaces_are_reused_only_while_mesh_uvs_and_size_are_unchanged():
    first = cached_texel_surface(QUAD, QUAD_TRIANGLES, QUAD_UV, QUAD_TRIANGLES, 16)
    assert cached_texel_surface(QUAD.copy(), QUAD_TRIANGLES, QUAD_UV, QUAD_TRIANGLES, 16) is first
    moved_uv = QUAD_UV * 0.5
    other = cached_texel_surface(QUAD, QUAD_TRIANGLES, moved_uv, QUAD_TRIANGLES, 16)
    assert other is not first and other.texel.size < first.texel.size
    assert cached_texel_surface(QUAD, QUAD_TRIANGLES, QUAD_UV, QUAD_TRIANGLES, 32) is not first
    np.testing.assert_array_equal(
        first.texel, texel_surface(QUAD, QUAD_TRIANGLES, QUAD_UV, QUAD_TRIANGLES, 16).texel
    )


# --------------------------------------------------------------------------------------------
# Clipping against the clip start and end


def looking_along_y(height: float) -> np.ndarray:
    """World-to-view for an eye at (0, 0, height) looking along +Y, +Z up (a street-level view)."""
    return np.array([[1.0, 0, 0, 0], [0, 0, 1.0, -height], [0, -1.0, 0, 0], [0, 0, 0, 1.0]])


def ground(half: float, turned: bool = False) -> np.ndarray:
    """A square ground quad (two triangles, QUAD_TRIANGLES) at z = 0, centred on the origin;
    ``turned`` by 45 degrees, its diagonal runs along the Y axis."""
    square = QUAD * [half, half, 0.0]
    if turned:
        square = np.array([[0, -1, 0], [1, 0, 0], [0, 1, 0], [-1, 0, 0]]) * [half, half, 0.0]
    return square


def ray_depth_on_plane(view: View, axis: int, offset: float) -> np.ndarray:
    """(H, W) planar view depth where each pixel centre's ray meets the plane view[axis] = offset
    (view-space x = offset for axis 0, y for axis 1); NaN where it meets it behind the eye."""
    rows, cols = np.mgrid[0 : view.height, 0 : view.width]
    ndc = [(cols + 0.5) / view.width * 2 - 1, 1 - (rows + 0.5) / view.height * 2]
    slope = ndc[axis] / view.projection[axis, axis]  # view-space axis per unit of depth
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = offset / slope
    return np.where(depth > 0, depth, np.nan)


def test_a_ground_plane_reaching_behind_the_camera_is_seen_up_to_the_clip_range():
    """Both of the ground's triangles have corners behind the eye; clipped, every pixel whose
    ray meets the ground between the clip start and end (and on the quad) shows it, at the
    exact planar depth, and each names one of the two original triangles."""
    near, far = 0.1, 40.0
    view = View(looking_along_y(1.5), perspective(60, 1.5, near, far), 96, 64)
    capture = capture_depth(view, ground(100.0, turned=True), QUAD_TRIANGLES)
    expected = ray_depth_on_plane(view, 1, -1.5)  # the ground is 1.5 below the eye
    within = np.isfinite(expected) & (expected >= near) & (expected <= far)
    assert within.sum() > 1000 and (~within).sum() > 1000
    # Pixels whose hit lies within float rounding of the clip end may go either way.
    doubtful = np.isfinite(expected) & (np.abs(expected - far) < 0.05 * far)
    assert np.array_equal(capture.foreground & ~doubtful, within & ~doubtful)
    seen = capture.foreground
    np.testing.assert_allclose(capture.view_depth[seen], expected[seen], rtol=1e-5)
    assert set(np.unique(capture.raster.triangle[seen])) == {0, 1}
    assert capture.drawn.pieces.count > 0
    depth = depth_for_model(capture)
    assert depth[seen].min() == pytest.approx(FAR_FOREGROUND) and depth[seen].max() == 1.0


def test_clipped_pixels_keep_barycentrics_in_the_original_triangle():
    """Per pixel, the surface barycentrics rebuild the exact ground point the ray hits, and the
    raster's screen-space barycentrics interpolate the original corners' NDC depth, corners
    behind the eye included, to the depth that was drawn."""
    view = View(looking_along_y(1.0), perspective(50, 1.0, 0.05, 100.0), 48, 48)
    vertices = ground(20.0)
    capture = capture_depth(view, vertices, QUAD_TRIANGLES)
    raster = capture.raster
    corners = vertices[QUAD_TRIANGLES[raster.pixel_triangle]]  # (N, 3, 3)
    point = np.einsum("nk,nkc->nc", capture.surface_barycentric(), corners)
    assert np.abs(point[:, 2]).max() < 1e-9  # on the ground
    along_view = point[:, 1]  # view depth is world y for this eye
    np.testing.assert_allclose(along_view, capture.view_depth.ravel()[raster.pixel], rtol=1e-5)
    assert capture.surface_barycentric().min() > -1e-9
    clip = view.clip_coordinates(vertices)
    with np.errstate(divide="ignore"):
        corner_ndc = clip[:, 2] / clip[:, 3]
    interpolated = raster.interpolate(corner_ndc[:, None], QUAD_TRIANGLES)[:, 0]
    np.testing.assert_allclose(interpolated, capture.ndc_z.ravel()[raster.pixel], atol=1e-4)
    assert raster.pixel_barycentric.min() < -0.5  # corners behind the eye weigh negatively


def test_a_wall_beside_the_camera_and_a_room_around_it_are_seen():
    """A wall that runs from behind the camera to far ahead, and a box around the eye whose
    faces all cross the camera plane: every pixel shows one of them, at its planar depth."""
    view = View(looking_along_y(0.0), perspective(70, 1.0, 0.1, 100.0), 64, 64)
    wall = np.array([[1.0, -5, -2], [1.0, 30, -2], [1.0, 30, 2], [1.0, -5, 2]])
    capture = capture_depth(view, wall, QUAD_TRIANGLES)
    expected = ray_depth_on_plane(view, 0, 1.0)
    on_wall = np.isfinite(expected) & (expected <= 30.0)
    rows = np.arange(64)[:, None]
    ndc_y = 1 - (rows + 0.5) / 64 * 2
    on_wall &= np.abs(ndc_y / view.projection[1, 1] * expected) < 2.0
    assert on_wall.sum() > 500
    assert np.array_equal(capture.foreground, on_wall)
    np.testing.assert_allclose(capture.view_depth[on_wall], expected[on_wall], rtol=1e-5)

    # A 4 x 4 x 4 box centred on the eye: its back face is behind the eye, its floor, ceiling
    # and side walls cross the camera plane, and a 120 degree view sees all but the back.
    wide = View(looking_along_y(0.0), perspective(120, 1.0, 0.1, 100.0), 64, 64)
    corners = np.array([[x, y, z] for z in (-2, 2) for y in (-2, 2) for x in (-2, 2)], float)
    faces = np.array([[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4],
                      [1, 5, 7, 3]])  # fmt: skip  # floor, ceiling, back, front, left, right
    box = np.concatenate([faces[:, [0, 1, 2]], faces[:, [0, 2, 3]]])
    room = capture_depth(wide, corners, box)
    assert room.foreground.all()
    assert set(np.unique(room.raster.triangle % 6)) == {0, 1, 3, 4, 5}
    # Each pixel's ray leaves the box through the face it meets first: depth 2 / max|slope|.
    rows, cols = np.mgrid[0:64, 0:64]
    slope_x = ((cols + 0.5) / 32 - 1) / wide.projection[0, 0]
    slope_y = (1 - (rows + 0.5) / 32) / wide.projection[1, 1]
    expected = 2.0 / np.maximum(np.maximum(np.abs(slope_x), np.abs(slope_y)), 1.0)
    np.testing.assert_allclose(room.view_depth, expected, rtol=1e-5)


def test_triangles_beyond_the_clip_end_are_cut_there_and_pieces_only_when_needed():
    """A long floor is drawn up to the clip end and no farther; a scene wholly inside the clip
    volume is drawn as it is (no pieces, the capture's raster is the drawn one)."""
    near, far = 0.5, 10.0
    view = View(looking_along_y(1.0), perspective(60, 1.0, near, far), 64, 64)
    floor = np.array([[-30.0, 2, 0], [30.0, 2, 0], [30.0, 60, 0], [-30.0, 60, 0]])
    capture = capture_depth(view, floor, QUAD_TRIANGLES)
    expected = ray_depth_on_plane(view, 1, -1.0)
    assert np.array_equal(capture.foreground, (expected >= 2.0) & (expected <= far))
    seen = capture.foreground
    np.testing.assert_allclose(capture.view_depth[seen], expected[seen], rtol=1e-5)
    assert np.isfinite(expected[~seen]).sum() > 500  # the floor beyond the clip end is cut

    inside = capture_depth(View(eye_at(5.0), perspective(40, 1.0), 32, 32), QUAD, QUAD_TRIANGLES)
    assert inside.drawn.pieces.count == 0 and inside.drawn_raster is inside.raster


@pytest.mark.parametrize("reach", [1e2, 1e4, 1e6])
def test_a_huge_triangle_keeps_its_on_screen_edge_exact(reach):
    """A wall reaching far out of the picture, with one slanted edge across it: the guard band
    keeps the rasteriser's float32 set-up small, so the edge lands where the ray test puts it.
    (Drawn whole, the set-up at ~1e5 pixels misplaces it: thousands of pixels at ``reach``
    1e4, all of them at 1e6.)"""
    view = View(eye_at(1.0), perspective(60, 1.0, 0.01, 1e12), 128, 128)
    rng = np.random.default_rng(int(np.log10(reach)))
    wrong = []
    for _ in range(5):
        at, slope = rng.uniform(-0.5, 0.5), rng.uniform(-0.7, 0.7)  # x = at + slope y, z = -10
        low, high = at - slope * reach, at + slope * reach
        wall = np.array([[low, -reach, -10], [3 * reach, -reach, -10], [3 * reach, reach, -10],
                         [high, reach, -10]], dtype=float)  # fmt: skip
        capture = capture_depth(view, wall, QUAD_TRIANGLES)
        centre = ((np.arange(128) + 0.5) / 64 - 1) / view.projection[0, 0] * 11.0  # at z = -10
        x, y = np.meshgrid(centre, -centre)
        beyond = x - (at + slope * y)  # signed distance along x, in world units
        pixel = 2 * 11.0 / view.projection[0, 0] / 128  # world size of a pixel there
        clear = np.abs(beyond) > 0.02 * pixel
        wrong.append(int((capture.foreground != (beyond > 0))[clear].sum()))
    assert wrong == [0] * 5


def test_texels_nearer_than_the_clip_start_are_not_written():
    """The ground under the camera is cut away by the clip start: its texels there show
    whatever lies behind them in the picture, so they must not take its colour."""
    near = 1.5
    eye = np.array([0.0, 0.0, 1.0])
    world_to_view = orbit.look_at(eye, np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0]))
    view = View(world_to_view, perspective(90, 1.0, near, 50.0), 64, 64)
    vertices = ground(3.0)
    capture = capture_depth(view, vertices, QUAD_TRIANGLES)
    surface = texel_surface(vertices, QUAD_TRIANGLES, QUAD_UV, QUAD_TRIANGLES, 256)
    samples = visibility.seen_texels(surface, capture)
    depth = view.project(surface.position).view_depth
    in_frame = view.project(surface.position).xy
    framed = (np.abs(in_frame - 32).max(axis=1) < 28) & (depth > 0)
    assert (framed & (depth < near * 0.8)).sum() > 100  # in the picture, nearer than the start
    assert samples.index.size > 1000
    assert depth[samples.index].min() >= near * (1 - 1e-6)
    ahead = framed & (depth > near * 1.2) & (depth < 2.5)
    seen = np.zeros(surface.texel.size, dtype=bool)
    seen[samples.index] = True
    assert ahead.sum() > 100 and seen[ahead].all()


def test_rendering_a_clipped_texture_samples_the_surface_point_of_each_pixel():
    """``render_texture`` on a ground that reaches behind the camera shows, at each pixel, the
    texture at the UV of the ground point the pixel's ray hits."""
    from sd_depth_texture.core.bake.render import render_texture

    view = View(looking_along_y(1.0), perspective(60, 1.0, 0.1, 100.0), 48, 48)
    half = 20.0
    vertices = ground(half)
    capture = capture_depth(view, vertices, QUAD_TRIANGLES)
    size = 256
    u = (np.arange(size) + 0.5) / size
    texture = np.zeros((size, size, 3), dtype=np.float32)
    texture[..., 0] = u[None, :]  # red is u
    texture[..., 1] = u[::-1, None]  # green is v
    picture, mask, _ = render_texture(
        capture, vertices, QUAD_TRIANGLES, QUAD_UV, QUAD_TRIANGLES, 0, texture
    )
    assert np.array_equal(mask, capture.foreground) and mask.sum() > 300
    depth = capture.view_depth[mask]
    cols = np.nonzero(mask)[1]
    x = ((cols + 0.5) / 48 * 2 - 1) / view.projection[0, 0] * depth
    np.testing.assert_allclose(picture[mask][:, 0], (x / half + 1) / 2, atol=2e-3)
    np.testing.assert_allclose(picture[mask][:, 1], (depth / half + 1) / 2, atol=2e-3)


def test_captures_are_reused_only_for_the_same_view_of_a_scene_that_reads_the_same():
    """A scene whose meshes carry the digest of what they were read from is captured once per
    view; another view, another scene digest, or no digest at all captures again, and a
    capture that is shared cannot be written to."""
    view = View(eye_at(5.0), perspective(40, 1.0), 32, 32)
    read = MeshArrays("Quad", QUAD, QUAD_TRIANGLES, QUAD_UV, QUAD_TRIANGLES, digest=b"quad")
    first = cached_capture(view, scene_geometry([read]))
    assert cached_capture(view, scene_geometry([read])) is first
    assert not first.view_depth.flags.writeable and not first.raster.pixel.flags.writeable
    np.testing.assert_array_equal(
        first.view_depth, capture_depth(view, QUAD, QUAD_TRIANGLES).view_depth
    )
    moved = View(eye_at(6.0), perspective(40, 1.0), 32, 32)
    assert cached_capture(moved, scene_geometry([read])) is not first
    smaller = View(eye_at(5.0), perspective(40, 1.0), 16, 16)
    assert cached_capture(smaller, scene_geometry([read])) is not first
    changed = MeshArrays("Quad", QUAD * 0.5, QUAD_TRIANGLES, QUAD_UV, QUAD_TRIANGLES, digest=b"x")
    assert cached_capture(view, scene_geometry([changed])) is not first
    unknown = MeshArrays("Quad", QUAD, QUAD_TRIANGLES, QUAD_UV, QUAD_TRIANGLES)
    assert scene_geometry([unknown]).digest is None
    assert cached_capture(view, scene_geometry([unknown])) is not first
