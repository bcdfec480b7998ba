"""Gather baking: carry a view's image back onto the texels of a UV texture.

The UV layout is rasterised once into per-texel surface points and normals. Each texel is then
projected into the view, depth-tested against the same Z-buffer the depth map came from, weighted
by how squarely its surface faces the view, and coloured by bilinear sampling. Texels the view did
not see are left alone, so nothing is smeared or stretched. Colours stay in sRGB throughout, as
the model produced them and as the texture stores them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .depth import DepthCapture
from .raster import rasterize

log = logging.getLogger(__name__)

# Surfaces seen more obliquely than this are rejected; up to FULL_ANGLE they are fully written.
GRAZING_ANGLE_DEG = 75.0
FULL_ANGLE_DEG = 60.0
# A texel is visible when it is at most this much (relative) behind the Z-buffer's surface.
DEPTH_TOLERANCE = 0.01
DEFAULT_MARGIN = 16


@dataclass
class TexelSurface:
    """The surface under each texel a UV layout covers, for one ``size`` x ``size`` texture."""

    size: int
    texel: np.ndarray  # (N,) flat indices into the (size, size) texture, row 0 at the top (v = 1)
    position: np.ndarray  # (N, 3) float32 world-space points
    normal: np.ndarray  # (N, 3) float32 unit face normals

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
    vertices = np.asarray(vertices, dtype=np.float64)
    triangles = np.asarray(triangles, dtype=np.int64)
    uv = np.asarray(uv, dtype=np.float64)
    pixel_uv = np.empty_like(uv)
    pixel_uv[:, 0] = uv[:, 0] * size
    pixel_uv[:, 1] = (1.0 - uv[:, 1]) * size
    raster = rasterize(pixel_uv, uv_triangles, size, size)
    covered = raster.covered
    texel = np.flatnonzero(covered)
    triangle = raster.triangle[covered]
    position = np.einsum(
        "nk,nkc->nc", raster.barycentric[covered], vertices[triangles[triangle]]
    ).astype(np.float32)
    return TexelSurface(
        size=size,
        texel=texel,
        position=position,
        normal=face_normals(vertices, triangles)[triangle],
    )


def face_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unit normals per triangle (float32); degenerate triangles get a zero normal."""
    corners = vertices[triangles]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return (normals / np.where(length > 0, length, 1.0)).astype(np.float32)


@dataclass
class ViewSamples:
    """The texels one view saw: indices into a :class:`TexelSurface`, colours and facing."""

    index: np.ndarray  # (M,) indices into the surface's arrays
    color: np.ndarray  # (M, C) float32 sampled from the view's image
    facing: np.ndarray  # (M,) float32 cosine between the surface normal and the view ray


def visible_texels(surface: TexelSurface, capture: DepthCapture) -> tuple[np.ndarray, ...]:
    """Texels visible in the view: (indices, pixel xy, facing cosine), grazing ones rejected.

    Sidedness is ignored (|cos|): Blender shows both sides of a face with one texture, and the
    depth test already hides the far side of closed meshes.
    """
    view = capture.view
    projected = view.project(surface.position)
    if view.is_orthographic:
        to_eye = np.broadcast_to(-view.forward, surface.position.shape)
    else:
        to_eye = view.eye - surface.position
        to_eye = to_eye / np.maximum(np.linalg.norm(to_eye, axis=1, keepdims=True), 1e-12)
    facing = np.abs(np.einsum("nc,nc->n", surface.normal, to_eye))

    x, y = projected.xy[:, 0], projected.xy[:, 1]
    inside = (
        projected.in_front
        & (x >= 0)
        & (x < view.width)
        & (y >= 0)
        & (y < view.height)
        & (facing >= np.cos(np.radians(GRAZING_ANGLE_DEG)))
    )
    index = np.flatnonzero(inside)
    col = x[index].astype(np.int64)
    row = y[index].astype(np.int64)
    surface_depth = capture.view_depth[row, col]
    seen = projected.view_depth[index] <= surface_depth * (1.0 + DEPTH_TOLERANCE)
    index = index[seen]
    return index, projected.xy[index], facing[index].astype(np.float32)


def sample_bilinear(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Sample an (H, W, C) image at pixel coordinates (centres at i + 0.5), edges clamped."""
    height, width = image.shape[:2]
    x = np.clip(xy[:, 0] - 0.5, 0, width - 1)
    y = np.clip(xy[:, 1] - 0.5, 0, height - 1)
    x0 = np.minimum(x.astype(np.int64), width - 2) if width > 1 else np.zeros(x.shape, np.int64)
    y0 = np.minimum(y.astype(np.int64), height - 2) if height > 1 else np.zeros(y.shape, np.int64)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx = (x - x0).astype(np.float32)[:, None]
    fy = (y - y0).astype(np.float32)[:, None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def project_view(surface: TexelSurface, capture: DepthCapture, image: np.ndarray) -> ViewSamples:
    """Sample ``image`` (the view's picture, any size with the view's aspect) for visible texels."""
    index, xy, facing = visible_texels(surface, capture)
    scale = np.array([image.shape[1] / capture.view.width, image.shape[0] / capture.view.height])
    color = sample_bilinear(np.asarray(image, dtype=np.float32), xy * scale)
    return ViewSamples(index=index, color=color, facing=facing)


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

    Each ring takes the mean of its already-filled 8-neighbours, so only a ring of frontier
    texels is touched per step.
    """
    if margin <= 0:
        return texture
    height, width = filled.shape
    result = np.array(texture, dtype=np.float32)
    done = np.pad(filled, 1)
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    padded = np.pad(result, ((1, 1), (1, 1), (0, 0)))
    for _ in range(margin):
        grown = np.zeros_like(done)
        for dy, dx in offsets:
            grown[1:-1, 1:-1] |= done[1 + dy : height + 1 + dy, 1 + dx : width + 1 + dx]
        frontier = np.argwhere(grown & ~done)
        if frontier.size == 0:
            break
        total = np.zeros((frontier.shape[0], result.shape[2]), dtype=np.float32)
        count = np.zeros((frontier.shape[0], 1), dtype=np.float32)
        for dy, dx in offsets:
            neighbour_done = done[frontier[:, 0] + dy, frontier[:, 1] + dx][:, None]
            total += padded[frontier[:, 0] + dy, frontier[:, 1] + dx] * neighbour_done
            count += neighbour_done
        padded[frontier[:, 0], frontier[:, 1]] = total / count
        done[frontier[:, 0], frontier[:, 1]] = True
    return padded[1:-1, 1:-1]
