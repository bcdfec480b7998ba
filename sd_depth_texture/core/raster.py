"""A vectorised triangle rasteriser: which triangle covers each pixel centre, and where.

It serves two jobs with one code path: the view's Z-buffer (screen-space triangles with a depth
key, nearest wins) and the UV layout of a mesh (texture-space triangles, no depth). Pixel centres
sit at ``i + 0.5``; row 0 is the top of the image. Triangles are expanded to the pixels of their
bounding boxes in chunks and resolved with one scatter-min, so the cost grows with triangles plus
covered pixels and there is no Python loop per triangle or pixel.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

import numpy as np

log = logging.getLogger(__name__)

NO_TRIANGLE = -1
_ROWS_PER_CHUNK = 2_000_000
_EDGE_EPS = 1e-5
_EMPTY_KEY = np.iinfo(np.int64).max


@dataclass
class Raster:
    """Which triangle covers each pixel centre, and where within it.

    Kept sparse (the covered pixels only, in ascending pixel order), which is what texture-size
    work needs; the dense per-pixel images are built on first use.
    """

    width: int
    height: int
    pixel: np.ndarray  # (N,) flat indices of the covered pixels, ascending
    pixel_triangle: np.ndarray  # (N,) int32 covering triangle
    pixel_barycentric: np.ndarray  # (N, 3) float32 screen-space barycentrics

    @cached_property
    def triangle(self) -> np.ndarray:
        """(H, W) int32 covering triangle, ``NO_TRIANGLE`` where none."""
        dense = np.full(self.width * self.height, NO_TRIANGLE, dtype=np.int32)
        dense[self.pixel] = self.pixel_triangle
        return dense.reshape(self.height, self.width)

    @cached_property
    def barycentric(self) -> np.ndarray:
        """(H, W, 3) float32 barycentrics, zero where uncovered."""
        dense = np.zeros((self.width * self.height, 3), dtype=np.float32)
        dense[self.pixel] = self.pixel_barycentric
        return dense.reshape(self.height, self.width, 3)

    @property
    def covered(self) -> np.ndarray:
        return self.triangle != NO_TRIANGLE

    def interpolate(self, vertex_values: np.ndarray, triangles: np.ndarray) -> np.ndarray:
        """Screen-linear interpolation of per-vertex values at the covered pixels, (N, C)."""
        corners = triangles[self.pixel_triangle]
        values = np.asarray(vertex_values)
        result = self.pixel_barycentric[:, 0:1] * np.take(values, corners[:, 0], axis=0)
        result += self.pixel_barycentric[:, 1:2] * np.take(values, corners[:, 1], axis=0)
        result += self.pixel_barycentric[:, 2:3] * np.take(values, corners[:, 2], axis=0)
        return result


def _order_key(values: np.ndarray) -> np.ndarray:
    """Map float32 to a 31-bit int64 whose order is the float order (negatives included).

    31 bits leave room for the triangle index in the low 32 bits of one int64 sort key; the
    dropped bit is the last of the mantissa.
    """
    bits = values.astype(np.float32, copy=False).view(np.int32).astype(np.int64)
    return (np.where(bits < 0, -(bits & 0x7FFFFFFF) - 1, bits) + (1 << 31)) >> 1


def _planes(
    corners_x: list[np.ndarray], corners_y: list[np.ndarray], key: list[np.ndarray] | None
) -> tuple[np.ndarray, ...]:
    """Per-triangle planes a*x + b*y + c of b0, b1 and (with a key) the depth key, float32."""
    x0, x1, x2 = corners_x
    y0, y1, y2 = corners_y
    inv_area = 1.0 / ((x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0))
    b0 = ((y1 - y2) * inv_area, (x2 - x1) * inv_area, (x1 * y2 - x2 * y1) * inv_area)
    b1 = ((y2 - y0) * inv_area, (x0 - x2) * inv_area, (x2 * y0 - x0 * y2) * inv_area)
    depth: tuple[np.ndarray, ...] = ()
    if key is not None:
        k0, k1, k2 = key
        depth = tuple(
            u * (k0 - k2) + v * (k1 - k2) + (k2 if i == 2 else 0.0)
            for i, (u, v) in enumerate(zip(b0, b1, strict=True))
        )
    return tuple(c.astype(np.float32) for c in (*b0, *b1, *depth))


def rasterize(
    xy: np.ndarray,
    triangles: np.ndarray,
    width: int,
    height: int,
    depth_key: np.ndarray | None = None,
) -> Raster:
    """Rasterise triangles given in pixel coordinates (x right, y down).

    ``depth_key`` (per vertex, interpolated linearly in screen space, smaller = nearer) makes
    the nearest triangle win; without it any covering triangle wins, which suits a UV layout.
    """
    xy = np.asarray(xy, dtype=np.float64)
    triangles = np.asarray(triangles, dtype=np.intp).reshape(-1, 3)
    corner = [np.ascontiguousarray(triangles[:, k]) for k in range(3)]
    x_of, y_of = np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1])
    xs = [np.take(x_of, c) for c in corner]
    ys = [np.take(y_of, c) for c in corner]
    x_min = np.ceil(np.minimum(np.minimum(xs[0], xs[1]), xs[2]) - 0.5).clip(0, width)
    x_max = np.floor(np.maximum(np.maximum(xs[0], xs[1]), xs[2]) - 0.5).clip(-1, width - 1)
    y_min = np.ceil(np.minimum(np.minimum(ys[0], ys[1]), ys[2]) - 0.5).clip(0, height)
    y_max = np.floor(np.maximum(np.maximum(ys[0], ys[1]), ys[2]) - 0.5).clip(-1, height - 1)
    area = (xs[1] - xs[0]) * (ys[2] - ys[0]) - (xs[2] - xs[0]) * (ys[1] - ys[0])
    live_ids = np.flatnonzero((x_max >= x_min) & (y_max >= y_min) & (area != 0) & np.isfinite(area))
    keys = None
    if depth_key is not None:
        vertex_key = np.asarray(depth_key, dtype=np.float64)
        keys = [np.take(vertex_key, np.take(c, live_ids)) for c in corner]
    planes = _planes([np.take(c, live_ids) for c in xs], [np.take(c, live_ids) for c in ys], keys)

    heights = (np.take(y_max, live_ids) - np.take(y_min, live_ids) + 1).astype(np.intp)
    spans = (
        np.take(y_min, live_ids).astype(np.intp),
        np.take(x_min, live_ids).astype(np.float32) + 0.5,
        np.take(x_max, live_ids).astype(np.float32) + 0.5,
    )
    nearest_wins = depth_key is not None
    # Nearest wins: a depth-and-triangle key per pixel, min-reduced. Otherwise: the triangle.
    best = np.full(width * height, _EMPTY_KEY if nearest_wins else NO_TRIANGLE, dtype=np.int64)
    if not nearest_wins:
        best = best.astype(np.int32)
    bounds = np.searchsorted(
        np.cumsum(heights), np.arange(_ROWS_PER_CHUNK, heights.sum(), _ROWS_PER_CHUNK)
    )
    for chunk in np.split(np.arange(live_ids.size), bounds):
        if chunk.size:
            _rasterize_rows(chunk, heights[chunk], spans, planes, nearest_wins, width, best)

    rows, cols = np.nonzero(
        (best != (_EMPTY_KEY if nearest_wins else NO_TRIANGLE)).reshape(height, width)
    )
    covered = rows * width + cols
    live_index = np.take(best, covered)
    if nearest_wins:
        live_index &= 0xFFFFFFFF
    live_index = live_index.astype(np.intp, copy=False)
    px = cols.astype(np.float32) + 0.5
    py = rows.astype(np.float32) + 0.5
    barycentric = np.empty((covered.size, 3), dtype=np.float32)
    barycentric[:, 0] = _plane_at(planes[0:3], live_index, px, py)
    barycentric[:, 1] = _plane_at(planes[3:6], live_index, px, py)
    barycentric[:, 2] = 1.0 - barycentric[:, 0] - barycentric[:, 1]
    return Raster(
        width=width,
        height=height,
        pixel=covered,
        pixel_triangle=np.take(live_ids, live_index).astype(np.int32),
        pixel_barycentric=barycentric,
    )


def _plane_at(
    plane: tuple[np.ndarray, ...], ids: np.ndarray, x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """Evaluate triangles' planes (a, b, c) at points; with (b, c) only, evaluate b*x + c."""
    columns = [np.take(column, ids) for column in plane]
    if len(columns) == 2:
        return columns[0] * x + columns[1]
    return columns[0] * x + columns[1] * y + columns[2]


def _rasterize_rows(
    chunk: np.ndarray,
    heights: np.ndarray,
    spans: tuple[np.ndarray, np.ndarray, np.ndarray],
    planes: tuple[np.ndarray, ...],
    nearest_wins: bool,
    width: int,
    best: np.ndarray,
) -> None:
    """Scanline step: triangles to rows, rows to exactly their covered pixels, then resolve.

    On each row every barycentric is linear in x, so the covered span is the intersection of
    three half-lines; only pixels inside it are ever generated.
    """
    top_row, box_lo, box_hi = spans
    row_start = np.cumsum(heights) - heights
    tri = np.repeat(chunk, heights)
    row = np.repeat(np.take(top_row, chunk) - row_start, heights)
    row += np.arange(tri.size, dtype=np.intp)
    py = row.astype(np.float32) + 0.5
    lo, hi = np.take(box_lo, tri), np.take(box_hi, tri)
    slope0, slope1 = np.take(planes[0], tri), np.take(planes[3], tri)
    offset0 = _plane_at((planes[1], planes[2]), tri, py, py)
    offset1 = _plane_at((planes[4], planes[5]), tri, py, py)
    edges = ((slope0, offset0), (slope1, offset1), (-slope0 - slope1, 1.0 - offset0 - offset1))
    with np.errstate(divide="ignore", invalid="ignore"):
        for slope, offset in edges:
            # slope * x + offset >= -eps; the tolerance closes cracks along shared edges.
            edge = (-_EDGE_EPS - offset) / slope
            np.maximum(lo, edge, out=lo, where=slope > 0)
            np.minimum(hi, edge, out=hi, where=slope < 0)
            hi[(slope == 0) & (offset < -_EDGE_EPS)] = -1.0
    first = np.ceil(lo - 0.5).astype(np.intp)
    counts = np.floor(hi - 0.5).astype(np.intp)
    counts -= first
    counts += 1
    np.maximum(counts, 0, out=counts)

    # Each row's pixels are consecutive: repeat the row's first pixel and add 0, 1, 2, ...
    run_start = np.cumsum(counts) - counts
    pixel = np.repeat(row * width + first - run_start, counts)
    pixel += np.arange(pixel.size, dtype=np.intp)
    if not nearest_wins:
        best[pixel] = np.repeat(tri.astype(np.int32), counts)
        return
    col = pixel % width
    depth_row = _plane_at((planes[7], planes[8]), tri, py, py)
    depth = np.repeat(np.take(planes[6], tri), counts) * (col.astype(np.float32) + 0.5)
    depth += np.repeat(depth_row, counts)
    np.minimum.at(best, pixel, (_order_key(depth) << 32) | np.repeat(tri, counts))
