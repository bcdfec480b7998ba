"""Reading a view's picture at sub-pixel points: plain bilinear, and depth-aware for seen texels.

No bpy. Depth-aware sampling leaves out neighbour pixels of another surface, so colours never
mix across a depth edge.
"""

from __future__ import annotations

import numpy as np

from ..geometry.depth import DepthCapture
from .visibility import SeenTexels, pixel_footprint


def _bilinear_corners(
    width: int, height: int, xy: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Flat indices and bilinear weights of the four pixels around points (edges clamped).

    In the order top-left, top-right, bottom-left, bottom-right; pixel centres at i + 0.5.
    """
    # In place where the result is the same: this runs on every texel a view paints.
    x, y = xy[:, 0] - 0.5, xy[:, 1] - 0.5
    np.clip(x, 0, width - 1, out=x)
    np.clip(y, 0, height - 1, out=y)
    x, y = x.astype(np.float32, copy=False), y.astype(np.float32, copy=False)
    x0 = x.astype(np.intp)
    np.minimum(x0, max(width - 2, 0), out=x0)
    top_left = y.astype(np.intp)
    np.minimum(top_left, max(height - 2, 0), out=top_left)
    fx, fy = x - x0.astype(np.float32), y - top_left.astype(np.float32)
    gx, gy = 1.0 - fx, 1.0 - fy
    top_left *= width
    top_left += x0
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
        picked = pick(at)
        if picked.dtype == result.dtype:  # weighted in place, the same products
            picked *= scale[:, None]
            result += picked
        else:
            result += picked * scale[:, None]
    return result.astype(np.float32, copy=False).reshape((-1, *image.shape[2:]))


def sample_bilinear(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Sample an (H, W, C) image at pixel coordinates (centres at i + 0.5), edges clamped."""
    height, width = image.shape[:2]
    index, weight = _bilinear_corners(width, height, xy)
    return _gather(image, index, weight)


def sample_seen(image: np.ndarray, seen: SeenTexels, capture: DepthCapture) -> np.ndarray:
    """Colours of seen texels from the view's picture, never mixing in another surface.

    Neighbour pixels whose depth is not the texel's surface are left out of the bilinear
    weights. A picture larger than the capture (an upscaled one) is sampled at its own scale,
    each of its pixels judged by the depth of the capture pixel it lies in; a smaller one is
    sampled plainly, scaled.
    """
    view = capture.view
    image = np.asarray(image, dtype=np.float32)
    height, width = image.shape[:2]
    ratio = np.array([width / view.width, height / view.height], dtype=np.float32)
    if ratio.min() < 1.0:
        return sample_bilinear(image, seen.xy * ratio)
    same_size = (height, width) == (view.height, view.width)
    index, weight = _bilinear_corners(width, height, seen.xy if same_size else seen.xy * ratio)
    depth_at = index if same_size else [_capture_pixel(at, width, ratio, view) for at in index]
    # Neighbour centres lie up to ~1.5 pixels away: allow what the slanted surface spans there.
    cosine = np.maximum(seen.facing, 1e-6)
    slope = np.sqrt(np.maximum(1.0 - cosine**2, 0.0)) / cosine
    allowance = seen.tolerance + 1.5 * slope * pixel_footprint(view, seen.depth)
    flat_depth = capture.view_depth.ravel()
    masked = [
        plain * (np.abs(np.take(flat_depth, at) - seen.depth) <= allowance)
        for at, plain in zip(depth_at, weight, strict=True)
    ]
    total = masked[0] + masked[1] + masked[2] + masked[3]
    # Where no neighbour is of the same surface, fall back to the plain weights.
    some = total > 1e-6
    scale = np.where(some, 1.0 / np.maximum(total, 1e-6), 0.0).astype(np.float32)
    weights = [np.where(some, m * scale, plain) for m, plain in zip(masked, weight, strict=True)]
    return _gather(image, index, weights)


def _capture_pixel(at: np.ndarray, width: int, ratio: np.ndarray, view) -> np.ndarray:
    """Flat capture pixels holding the centres of flat pixels ``at`` of a picture ``width``
    wide, ``ratio`` times the capture's size."""
    col = np.minimum(((at % width) + 0.5) / ratio[0], view.width - 1).astype(np.intp)
    row = np.minimum(((at // width) + 0.5) / ratio[1], view.height - 1).astype(np.intp)
    return row * view.width + col
