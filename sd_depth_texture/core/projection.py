"""Gather baking: carry a view's image back onto the texels of a UV texture.

The UV layout is rasterised once into per-texel surface points and normals. Each texel is then
projected into the view, depth-tested against the same Z-buffer the depth map came from, weighted
by how squarely its surface faces the view, and coloured by bilinear sampling. Texels the view did
not see are left alone, so nothing is smeared or stretched. Colours stay in sRGB throughout, as
the model produced them and as the texture stores them.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .depth import DepthCapture
from .raster import barycentric_columns, rasterize

log = logging.getLogger(__name__)

# Surfaces seen more obliquely than this are rejected; up to FULL_ANGLE they are fully written.
GRAZING_ANGLE_DEG = 75.0
FULL_ANGLE_DEG = 60.0
# A texel is visible when it lies at most this far (relative to its distance) behind the
# Z-buffer's surface, plus the depth a slanted surface spans across one pixel.
DEPTH_TOLERANCE = 0.001
# ...and this many pixels' worth of depth, for the neighbouring triangles of a curved surface.
SURFACE_SLACK = 0.5
DEFAULT_MARGIN = 16
# Texels projected at a time: big enough to vectorise well, small enough to reuse memory.
_TEXELS_PER_BLOCK = 1 << 20


@dataclass
class TexelSurface:
    """The surface under each texel a UV layout covers, for one ``size`` x ``size`` texture."""

    size: int
    texel: np.ndarray  # (N,) flat indices into the (size, size) texture, row 0 at the top (v = 1)
    position: np.ndarray  # (N, 3) float32 world-space points
    triangle: np.ndarray  # (N,) int32 the mesh triangle under each texel
    weights: tuple[np.ndarray, np.ndarray]  # (N,) float32 barycentrics b0, b1 in that triangle
    triangle_normal: np.ndarray  # (F, 3) float64 unit normal of every mesh triangle
    triangle_offset: np.ndarray  # (F,) float64 normal . point for every point of the triangle

    @cached_property
    def barycentric(self) -> np.ndarray:
        """(N, 3) float32 position of each texel within its triangle."""
        return barycentric_columns(*self.weights)

    @property
    def mask(self) -> np.ndarray:
        """(size, size) bool: which texels lie on a UV island."""
        covered = np.zeros(self.size * self.size, dtype=bool)
        covered[self.texel] = True
        return covered.reshape(self.size, self.size)


def texel_surface(
    vertices: np.ndarray,
    triangles: np.ndarray,
    uv: np.ndarray,
    uv_triangles: np.ndarray,
    size: int,
) -> TexelSurface:
    """Rasterise a mesh's UV layout into world positions and normals per covered texel.

    ``triangles`` index ``vertices`` (V, 3, world space); ``uv_triangles`` index ``uv`` (L, 2),
    Blender's per-corner UVs, with the same triangle order.
    """
    uv = np.asarray(uv, dtype=np.float64)
    pixel_uv = np.empty_like(uv)
    pixel_uv[:, 0] = uv[:, 0] * size
    pixel_uv[:, 1] = (1.0 - uv[:, 1]) * size
    raster = rasterize(pixel_uv, uv_triangles, size, size)
    triangle = raster.pixel_triangle
    # Per triangle: corner 2 and the edges to corners 0 and 1, one flat column per axis, so
    # each texel is corner 2 + b0 * edge 0 + b1 * edge 1, gathered with cheap 1-D takes.
    corner, edge0, edge1 = _triangle_frames(vertices, triangles)
    texel_triangle = triangle.astype(np.intp)
    b0, b1 = raster.pixel_weights
    position = np.empty((triangle.size, 3), dtype=np.float32)
    for axis in range(3):
        value = np.take(edge0[axis].astype(np.float32), texel_triangle)
        value *= b0
        along = np.take(edge1[axis].astype(np.float32), texel_triangle)
        along *= b1
        value += along
        value += np.take(corner[axis].astype(np.float32), texel_triangle)
        position[:, axis] = value
    normal = _unit_normals(edge0, edge1)
    offset = normal[:, 0] * corner[0] + normal[:, 1] * corner[1] + normal[:, 2] * corner[2]
    return TexelSurface(
        size=size,
        texel=raster.pixel,
        position=position,
        triangle=triangle,
        weights=raster.pixel_weights,
        triangle_normal=normal,
        triangle_offset=offset,
    )


def _triangle_frames(
    vertices: np.ndarray, triangles: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Per triangle, as float64 columns per axis: corner 2 and the edges 2->0 and 2->1."""
    vertices = np.asarray(vertices, dtype=np.float64)
    triangles = np.asarray(triangles, dtype=np.intp).reshape(-1, 3)
    index = [np.ascontiguousarray(triangles[:, k]) for k in range(3)]
    corner, edge0, edge1 = [], [], []
    for axis in range(3):
        coordinate = np.ascontiguousarray(vertices[:, axis])
        at = [np.take(coordinate, k) for k in index]
        corner.append(at[2])
        edge0.append(at[0] - at[2])
        edge1.append(at[1] - at[2])
    return corner, edge0, edge1


def _unit_normals(edge0: list[np.ndarray], edge1: list[np.ndarray]) -> np.ndarray:
    """(F, 3) float64 unit normals edge0 x edge1; degenerate triangles get a zero normal.

    With the edges from corner 2, (c0 - c2) x (c1 - c2) = (c1 - c0) x (c2 - c0): the normal of
    Blender's winding.
    """
    cross = np.stack(
        [
            edge0[1] * edge1[2] - edge0[2] * edge1[1],
            edge0[2] * edge1[0] - edge0[0] * edge1[2],
            edge0[0] * edge1[1] - edge0[1] * edge1[0],
        ],
        axis=1,
    )
    length = np.sqrt(np.einsum("fc,fc->f", cross, cross))
    return cross / np.where(length > 0, length, 1.0)[:, None]


_SURFACE_CACHE: OrderedDict[str, TexelSurface] = OrderedDict()
_SURFACE_CACHE_SIZE = 2  # a 2048^2 surface of a dense mesh holds ~200 MB


def cached_texel_surface(
    vertices: np.ndarray,
    triangles: np.ndarray,
    uv: np.ndarray,
    uv_triangles: np.ndarray,
    size: int,
) -> TexelSurface:
    """:func:`texel_surface`, reused while the mesh, its UVs and the size are unchanged.

    Keyed by the arrays' content (hashing is ~100x cheaper than rasterising the layout), so
    running again on the same object skips the UV rasterisation.
    """
    digest = hashlib.sha1(str(size).encode())
    for array in (vertices, triangles, uv, uv_triangles):
        contiguous = np.ascontiguousarray(array)
        digest.update(str((contiguous.dtype, contiguous.shape)).encode())
        digest.update(contiguous.view(np.uint8))
    key = digest.hexdigest()
    if key in _SURFACE_CACHE:
        _SURFACE_CACHE.move_to_end(key)
        return _SURFACE_CACHE[key]
    surface = texel_surface(vertices, triangles, uv, uv_triangles, size)
    _SURFACE_CACHE[key] = surface
    while len(_SURFACE_CACHE) > _SURFACE_CACHE_SIZE:
        _SURFACE_CACHE.popitem(last=False)
    return surface


def face_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unit normals per triangle (float32); degenerate triangles get a zero normal."""
    _, edge0, edge1 = _triangle_frames(vertices, triangles)
    return _unit_normals(edge0, edge1).astype(np.float32)


@dataclass
class ViewSamples:
    """The texels one view saw: indices into a :class:`TexelSurface`, colours and facing."""

    index: np.ndarray  # (M,) indices into the surface's arrays
    color: np.ndarray  # (M, C) float32 sampled from the view's image
    facing: np.ndarray  # (M,) float32 cosine between the surface normal and the view ray


@dataclass
class SeenTexels:
    """Texels a view sees: surface indices, where they land, how squarely, and their depth."""

    index: np.ndarray  # (M,) indices into the surface's arrays
    xy: np.ndarray  # (M, 2) pixel coordinates in the view
    facing: np.ndarray  # (M,) float32 |cosine| between surface normal and view ray
    depth: np.ndarray  # (M,) view depth of the texel's surface point
    tolerance: np.ndarray  # (M,) how far behind the Z-buffer it may lie and still be seen

    def subset(self, keep: np.ndarray) -> SeenTexels:
        return SeenTexels(*(getattr(self, f)[keep] for f in self.__dataclass_fields__))


def pixel_footprint(view, depth: np.ndarray) -> np.ndarray:
    """World size of one pixel at a view depth (vertically; square pixels)."""
    size = 2.0 / (view.projection[1, 1] * view.height)
    return np.full(depth.shape, size) if view.is_orthographic else depth * size


def triangle_facing(view, surface: TexelSurface) -> np.ndarray:
    """Per mesh triangle, float32: |cosine| with the view direction (orthographic views), or
    the eye's distance from the triangle's plane (perspective), the part of each texel's
    facing that is the same over the whole triangle."""
    if view.is_orthographic:
        return np.abs(surface.triangle_normal @ view.forward).astype(np.float32)
    eye_side = surface.triangle_normal @ view.eye - surface.triangle_offset
    return np.abs(eye_side).astype(np.float32)


def texel_facing(
    view, surface: TexelSurface, index: np.ndarray, per_triangle: np.ndarray
) -> np.ndarray:
    """|cosine| between the surface normal and the view ray at the texels ``index``, from
    :func:`triangle_facing`: per texel only its distance from the eye remains to be found."""
    along = np.take(per_triangle, np.take(surface.triangle, index))
    if view.is_orthographic:
        return along
    eye = view.eye
    squared = np.zeros(index.size, dtype=np.float32)
    for axis in range(3):
        offset = np.take(surface.position[:, axis], index)
        offset -= np.float32(eye[axis])
        squared += offset * offset
    distance = np.sqrt(squared)
    np.maximum(distance, 1e-12, out=distance)
    return along / distance


def seen_texels(surface: TexelSurface, capture: DepthCapture) -> SeenTexels:
    """Texels the view sees: inside the image, not behind the Z-buffer, and not grazing.

    Sidedness is ignored (|cos|): Blender shows both sides of a face with one texture, and the
    depth test already hides the far side of closed meshes. The Z-buffer's surface is evaluated at
    each texel's exact sub-pixel position, so the test needs only a tight tolerance. Texels go
    through in blocks, which keeps the temporaries small enough to be reused, not re-faulted.
    """
    count = surface.texel.size
    per_triangle = triangle_facing(capture.view, surface)
    blocks = [
        _seen_block(surface, capture, per_triangle, start, min(start + _TEXELS_PER_BLOCK, count))
        for start in range(0, count, _TEXELS_PER_BLOCK)
    ] or [_seen_block(surface, capture, per_triangle, 0, 0)]
    if len(blocks) == 1:
        return blocks[0]
    return SeenTexels(
        *(
            np.concatenate([getattr(b, name) for b in blocks])
            for name in SeenTexels.__dataclass_fields__
        )
    )


def _seen_block(
    surface: TexelSurface, capture: DepthCapture, per_triangle: np.ndarray, start: int, stop: int
) -> SeenTexels:
    """:func:`seen_texels` for the surface texels ``start`` to ``stop``."""
    view = capture.view
    projected = view.project(surface.position[start:stop])
    x, y = projected.xy[:, 0], projected.xy[:, 1]
    inside = projected.in_front & (x >= 0) & (x < view.width) & (y >= 0) & (y < view.height)
    index = np.flatnonzero(inside)
    xy = np.take(projected.xy, index, axis=0)
    depth = np.take(projected.view_depth, index)
    tolerance = DEPTH_TOLERANCE * depth + pixel_footprint(view, depth) * SURFACE_SLACK
    surface_depth = capture.surface_depth_at(xy)
    visible = np.flatnonzero(np.isfinite(surface_depth) & (depth <= surface_depth + tolerance))
    index = np.take(index, visible) + start
    facing = texel_facing(view, surface, index, per_triangle)
    squarely = np.flatnonzero(facing >= np.cos(np.radians(GRAZING_ANGLE_DEG)))
    visible = np.take(visible, squarely)
    return SeenTexels(
        index=np.take(index, squarely),
        xy=np.take(xy, visible, axis=0),
        facing=np.take(facing, squarely),
        depth=np.take(depth, visible),
        tolerance=np.take(tolerance, visible),
    )


def _bilinear_corners(
    width: int, height: int, xy: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Flat indices and bilinear weights of the four pixels around points (edges clamped).

    In the order top-left, top-right, bottom-left, bottom-right; pixel centres at i + 0.5.
    """
    x = np.clip(xy[:, 0] - 0.5, 0, width - 1).astype(np.float32)
    y = np.clip(xy[:, 1] - 0.5, 0, height - 1).astype(np.float32)
    x0 = np.minimum(x.astype(np.intp), max(width - 2, 0))
    y0 = np.minimum(y.astype(np.intp), max(height - 2, 0))
    fx, fy = x - x0.astype(np.float32), y - y0.astype(np.float32)
    gx, gy = 1.0 - fx, 1.0 - fy
    top_left = y0 * width + x0
    step_x, step_y = (1 if width > 1 else 0), (width if height > 1 else 0)
    index = [top_left, top_left + step_x, top_left + step_y, top_left + (step_x + step_y)]
    return index, [gx * gy, fx * gy, gx * fy, fx * fy]


def _gather(image: np.ndarray, index: list[np.ndarray], weight: list[np.ndarray]) -> np.ndarray:
    """Sum of weighted pixels of an (H, W, ...) image at flat indices, as float32 (M, ...).

    A strided view (say the RGB of an RGBA texture) is read in place, never copied whole.
    """
    height, width = image.shape[:2]
    if image.flags.c_contiguous:
        flat = image.reshape(height * width, -1)

        def pick(at: np.ndarray) -> np.ndarray:
            return np.take(flat, at, axis=0)
    else:

        def pick(at: np.ndarray) -> np.ndarray:
            return image[at // width, at % width].reshape(at.size, -1)

    result = pick(index[0]) * weight[0][:, None]
    for at, scale in zip(index[1:], weight[1:], strict=True):
        result += pick(at) * scale[:, None]
    return result.astype(np.float32, copy=False).reshape((-1, *image.shape[2:]))


def sample_bilinear(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Sample an (H, W, C) image at pixel coordinates (centres at i + 0.5), edges clamped."""
    height, width = image.shape[:2]
    index, weight = _bilinear_corners(width, height, xy)
    return _gather(image, index, weight)


def sample_seen(image: np.ndarray, seen: SeenTexels, capture: DepthCapture) -> np.ndarray:
    """Colours of seen texels from the view's picture, never mixing in another surface.

    At the capture's own size, neighbour pixels whose depth is not the texel's surface are left
    out of the bilinear weights; a picture of another size is sampled plainly, scaled.
    """
    view = capture.view
    image = np.asarray(image, dtype=np.float32)
    if image.shape[:2] != (view.height, view.width):
        scale = np.array([image.shape[1] / view.width, image.shape[0] / view.height])
        return sample_bilinear(image, seen.xy * scale)
    index, weight = _bilinear_corners(view.width, view.height, seen.xy)
    # Neighbour centres lie up to ~1.5 pixels away: allow what the slanted surface spans there.
    cosine = np.maximum(seen.facing, 1e-6)
    slope = np.sqrt(np.maximum(1.0 - cosine**2, 0.0)) / cosine
    allowance = seen.tolerance + 1.5 * slope * pixel_footprint(view, seen.depth)
    flat_depth = capture.view_depth.ravel()
    masked = [
        plain * (np.abs(np.take(flat_depth, at) - seen.depth) <= allowance)
        for at, plain in zip(index, weight, strict=True)
    ]
    total = masked[0] + masked[1] + masked[2] + masked[3]
    # Where no neighbour is of the same surface, fall back to the plain weights.
    some = total > 1e-6
    scale = np.where(some, 1.0 / np.maximum(total, 1e-6), 0.0).astype(np.float32)
    weights = [np.where(some, m * scale, plain) for m, plain in zip(masked, weight, strict=True)]
    return _gather(image, index, weights)


def project_view(surface: TexelSurface, capture: DepthCapture, image: np.ndarray) -> ViewSamples:
    """Sample ``image`` (the view's picture, any size with the view's aspect) for visible texels."""
    seen = seen_texels(surface, capture)
    return ViewSamples(
        index=seen.index, color=sample_seen(image, seen, capture), facing=seen.facing
    )


def facing_weight(facing: np.ndarray) -> np.ndarray:
    """1 for surfaces within FULL_ANGLE of the view, easing to 0 at GRAZING_ANGLE (smoothstep)."""
    low = np.cos(np.radians(GRAZING_ANGLE_DEG))
    high = np.cos(np.radians(FULL_ANGLE_DEG))
    t = np.clip((facing - low) / (high - low), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def blend_into_texture(
    texture: np.ndarray, surface: TexelSurface, samples: ViewSamples
) -> tuple[np.ndarray, np.ndarray]:
    """Write a view's RGB samples over a (size, size, 4) texture, easing out towards grazing angles.

    Alpha accumulates coverage (1 where a view painted squarely, 0 where none did). Returns the
    new texture and a (size, size) mask of the texels that received colour.
    """
    flat = np.array(texture, dtype=np.float32).reshape(-1, 4)
    texel = surface.texel[samples.index]
    alpha = facing_weight(samples.facing)[:, None]
    flat[texel, :3] = alpha * samples.color[:, :3] + (1.0 - alpha) * flat[texel, :3]
    flat[texel, 3:] = alpha + (1.0 - alpha) * flat[texel, 3:]
    written = np.zeros(flat.shape[0], dtype=bool)
    written[texel[alpha[:, 0] > 0]] = True
    return flat.reshape(texture.shape), written.reshape(texture.shape[:2])


def dilate_margin(texture: np.ndarray, filled: np.ndarray, margin: int) -> np.ndarray:
    """Pad UV islands outward by ``margin`` texels with their edge colours (Blender's bake margin).

    Each ring takes the mean of its already-filled 8-neighbours. The ring is found with a
    separable 3x3 dilation (four shifted ORs), and only its texels are gathered and written.
    """
    if margin <= 0:
        return texture
    channels = texture.shape[2]
    done = np.pad(filled, 1)  # a border that never fills keeps neighbours in range
    padded = np.pad(np.asarray(texture, dtype=np.float32), ((1, 1), (1, 1), (0, 0)))
    stride = done.shape[1]
    flat_done, flat_colour = done.reshape(-1), padded.reshape(-1, channels)
    offsets = [dy * stride + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    for _ in range(margin):
        vertical = done.copy()
        vertical[1:] |= done[:-1]
        vertical[:-1] |= done[1:]
        grown = vertical.copy()
        grown[:, 1:] |= vertical[:, :-1]
        grown[:, :-1] |= vertical[:, 1:]
        grown[[0, -1], :] = False
        grown[:, [0, -1]] = False
        ring = np.flatnonzero(grown & ~done)
        if ring.size == 0:
            break
        total = np.zeros((ring.size, channels), dtype=np.float32)
        count = np.zeros((ring.size, 1), dtype=np.float32)
        for offset in offsets:
            neighbour = ring + offset
            known = flat_done[neighbour][:, None]
            total += np.take(flat_colour, neighbour, axis=0) * known
            count += known
        flat_colour[ring] = total / count
        flat_done[ring] = True
    return padded[1:-1, 1:-1]
