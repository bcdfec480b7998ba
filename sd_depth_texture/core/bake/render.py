"""The current texture as a view sees it: what a new view keeps, and how well a run re-renders.

No bpy.
"""

from __future__ import annotations

import numpy as np

from ..geometry.depth import DepthCapture
from .sampling import sample_bilinear


def render_texture(
    capture: DepthCapture,
    vertices: np.ndarray,
    triangles: np.ndarray,
    uv: np.ndarray,
    uv_triangles: np.ndarray,
    first_triangle: int,
    texture: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How the current texture looks from the capture's view (the target's pixels only).

    ``vertices`` and ``triangles`` are the target's own; in the capture its triangles start at
    ``first_triangle`` (the capture holds their vertices' view depths already). Returns the
    (H, W, C) picture, the (H, W) mask of target pixels and each pixel's (H, W) texel index
    into the (size, size) texture (-1 elsewhere). UVs are interpolated perspective-correctly.
    """
    height, width = capture.view_depth.shape
    size = texture.shape[0]
    local = capture.raster.triangle.astype(np.int64) - first_triangle
    mask = (local >= 0) & (local < len(triangles))
    picture = np.zeros((height, width, texture.shape[2]), dtype=np.float32)
    texel = np.full((height, width), -1, dtype=np.int64)
    if not mask.any():
        return picture, mask, texel
    pixels = np.flatnonzero(mask)
    xy = _texture_xy(capture, uv, uv_triangles, first_triangle, local.ravel()[pixels], pixels, size)
    picture[mask] = sample_bilinear(texture, xy)
    col = np.clip(xy[:, 0].astype(np.int64), 0, size - 1)
    row = np.clip(xy[:, 1].astype(np.int64), 0, size - 1)
    texel[mask] = row * size + col
    return picture, mask, texel


def texture_at_pixels(
    capture: DepthCapture,
    uv: np.ndarray,
    uv_triangles: np.ndarray,
    first_triangle: int,
    texture: np.ndarray,
    pixels: np.ndarray,
) -> np.ndarray:
    """(M, C) what :func:`render_texture` shows at the flat view pixels ``pixels`` (which must
    show the target), without rendering the rest of the view."""
    local = np.take(capture.raster.triangle, pixels).astype(np.int64) - first_triangle
    size = texture.shape[0]
    return sample_bilinear(
        texture, _texture_xy(capture, uv, uv_triangles, first_triangle, local, pixels, size)
    )


def _texture_xy(
    capture: DepthCapture,
    uv: np.ndarray,
    uv_triangles: np.ndarray,
    first_triangle: int,
    tri: np.ndarray,
    pixels: np.ndarray,
    size: int,
) -> np.ndarray:
    """(M, 2) texture pixel coordinates seen at the flat view ``pixels``, which show the
    target's triangles ``tri``: UVs interpolated perspective-correctly.

    Each pixel's numbers are its own, so the mesh arrays are read in triangle order and the
    results put back in pixel order: neighbouring pixels of a dense mesh lie far apart in its
    arrays, and reading them in pixel order missed the cache on almost every read (1M
    triangles, 63k pixels: 36 ms of gathers in pixel order, 18 ms in triangle order).
    """
    order = np.argsort(tri, kind="stable")
    tri = tri[order]
    bary = np.take(capture.raster.barycentric.reshape(-1, 3), pixels[order], axis=0)
    bary = bary.astype(np.float64)
    if not capture.view.is_orthographic:
        corners = np.take(capture.triangles, tri + first_triangle, axis=0)
        bary = bary * np.take(capture.vertex_affine_depth, corners)  # 1 / view depth
        bary /= bary.sum(axis=1, keepdims=True)
    pixel_uv = np.einsum("nk,nkc->nc", bary, uv[uv_triangles[tri]])
    xy = np.empty_like(pixel_uv)
    xy[order, 0] = pixel_uv[:, 0] * size
    xy[order, 1] = (1.0 - pixel_uv[:, 1]) * size
    return xy


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two [0, 1] colour arrays."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)
