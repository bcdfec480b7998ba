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

    ``triangles`` are the target's own; in the capture they start at ``first_triangle``. Returns
    the (H, W, C) picture, the (H, W) mask of target pixels and each pixel's (H, W) texel index
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
    xy = _texture_xy(capture, vertices, triangles, uv, uv_triangles, local[mask], mask, size)
    picture[mask] = sample_bilinear(texture, xy)
    col = np.clip(xy[:, 0].astype(np.int64), 0, size - 1)
    row = np.clip(xy[:, 1].astype(np.int64), 0, size - 1)
    texel[mask] = row * size + col
    return picture, mask, texel


def texture_at_pixels(
    capture: DepthCapture,
    vertices: np.ndarray,
    triangles: np.ndarray,
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
        texture, _texture_xy(capture, vertices, triangles, uv, uv_triangles, local, pixels, size)
    )


def _texture_xy(
    capture: DepthCapture,
    vertices: np.ndarray,
    triangles: np.ndarray,
    uv: np.ndarray,
    uv_triangles: np.ndarray,
    tri: np.ndarray,
    pixels: np.ndarray,
    size: int,
) -> np.ndarray:
    """(M, 2) texture pixel coordinates seen at view pixels (a mask, or flat indices) whose
    target triangles are ``tri``: UVs interpolated perspective-correctly."""
    barycentric = capture.raster.barycentric
    if pixels.dtype == bool:
        bary = barycentric[pixels].astype(np.float64)
    else:
        bary = np.take(barycentric.reshape(-1, 3), pixels, axis=0).astype(np.float64)
    if not capture.view.is_orthographic:
        inverse_w = 1.0 / np.maximum(
            capture.view.project(vertices[triangles[tri].ravel()]).view_depth.reshape(-1, 3),
            1e-12,
        )
        bary = bary * inverse_w
        bary /= bary.sum(axis=1, keepdims=True)
    pixel_uv = np.einsum("nk,nkc->nc", bary, uv[uv_triangles[tri]])
    return np.stack([pixel_uv[:, 0] * size, (1.0 - pixel_uv[:, 1]) * size], axis=1)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two [0, 1] colour arrays."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)
