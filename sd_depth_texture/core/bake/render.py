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
    into the (size, size) texture (-1 elsewhere). UVs are interpolated perspective-correctly
    with the capture's surface barycentrics, exact for triangles the clip start cuts; the
    target's ``vertices`` are not needed for that (the argument stays for the callers).
    """
    height, width = capture.view_depth.shape
    size = texture.shape[0]
    raster = capture.raster
    local = raster.pixel_triangle.astype(np.int64) - first_triangle
    on_target = np.flatnonzero((local >= 0) & (local < len(triangles)))
    mask = np.zeros(height * width, dtype=bool)
    mask[raster.pixel[on_target]] = True
    mask = mask.reshape(height, width)
    picture = np.zeros((height, width, texture.shape[2]), dtype=np.float32)
    texel = np.full((height, width), -1, dtype=np.int64)
    if not on_target.size:
        return picture, mask, texel
    # Covered pixels are in ascending pixel order, which is the order of ``mask``'s pixels.
    tri = local[on_target]
    # Perspective-correct weights in the target's own triangles, exact for clipped ones too.
    bary = capture.surface_barycentric()[on_target]
    pixel_uv = np.einsum("nk,nkc->nc", bary, uv[uv_triangles[tri]])
    xy = np.stack([pixel_uv[:, 0] * size, (1.0 - pixel_uv[:, 1]) * size], axis=1)
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
    raster = capture.raster
    at = np.searchsorted(raster.pixel, pixels)  # covered pixels are in ascending order
    tri = np.take(raster.pixel_triangle, at).astype(np.int64) - first_triangle
    bary = np.take(capture.surface_barycentric(), at, axis=0)
    pixel_uv = np.einsum("nk,nkc->nc", bary, uv[uv_triangles[tri]])
    size = texture.shape[0]
    xy = np.stack([pixel_uv[:, 0] * size, (1.0 - pixel_uv[:, 1]) * size], axis=1)
    return sample_bilinear(texture, xy)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two [0, 1] colour arrays."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)
