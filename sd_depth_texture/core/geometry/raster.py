"""A vectorised triangle rasteriser: which triangle covers each pixel centre, and where.

It serves two jobs with one code path: the view's Z-buffer (screen-space triangles with a depth
key, nearest wins) and the UV layout of a mesh (texture-space triangles, no depth). Pixel centres
sit at ``i + 0.5``; row 0 is the top of the image. Triangles are expanded to the pixels of their
bounding boxes in chunks and resolved with one scatter-min, so the cost grows with triangles plus
covered pixels and there is no Python loop per triangle or pixel.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import numpy as np

log = logging.getLogger(__name__)

NO_TRIANGLE = -1
_ROWS_PER_CHUNK = 262_144
_PIXELS_PER_BAND = 1 << 19
_EDGE_EPS = 1e-5
_EMPTY_KEY = np.iinfo(np.int64).max
# Threads for the UV layout's independent parts (numpy's takes, repeats and arithmetic release
# the GIL); results are used in the order of the parts, so they are the same as on one thread.
_WORKERS = min(os.cpu_count() or 1, 2)


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
    pixel_weights: tuple[np.ndarray, np.ndarray]  # (N,) float32 barycentrics b0 and b1

    @cached_property
    def pixel_barycentric(self) -> np.ndarray:
        """(N, 3) float32 screen-space barycentrics of the covered pixels."""
        return barycentric_columns(*self.pixel_weights)

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


def barycentric_columns(b0: np.ndarray, b1: np.ndarray) -> np.ndarray:
    """(N, 3) barycentrics from the two that are stored; the third is what they leave of 1."""
    return np.stack([b0, b1, 1.0 - b0 - b1], axis=1)


def _order_key(values: np.ndarray) -> np.ndarray:
    """Map float32 to a 31-bit int64 whose order is the float order (negatives included).

    31 bits leave room for the triangle index in the low 32 bits of one int64 sort key; the
    dropped bit is the last of the mantissa.
    """
    bits = values.astype(np.float32, copy=False).view(np.int32).astype(np.int64)
    return (np.where(bits < 0, -(bits & 0x7FFFFFFF) - 1, bits) + (1 << 31)) >> 1


@dataclass
class _Triangles:
    """The live triangles in float32 frames about their corner 2, and their bounding boxes.

    Barycentric i is ``a[i] * (x - x2) + c[i] * (y - y2) + (1 if i == 2 else 0)``. Working
    relative to a corner keeps every number small, so float32 is exact enough at any image
    size and the per-triangle work moves half the bytes of float64.
    """

    ids: np.ndarray  # (L,) indices of the live triangles among all
    corner_x: np.ndarray  # (L,) float32 x2
    corner_y: np.ndarray  # (L,) float32 y2
    a: tuple[np.ndarray, np.ndarray, np.ndarray]  # float32 d b_i / dx
    c: tuple[np.ndarray, np.ndarray, np.ndarray]  # float32 d b_i / dy
    base: np.ndarray  # (L,) flat index of the bounding box's top-left pixel
    heights: np.ndarray  # (L,) rows
    last_column: np.ndarray  # (L,) float32 the box's last column, relative to its first
    ref_x: np.ndarray  # (L,) float32 top-left pixel centre minus the corner, x
    ref_y: np.ndarray  # (L,) float32 the same, y


def _live_triangles(xy: np.ndarray, triangles: np.ndarray, width: int, height: int) -> _Triangles:
    """Triangles whose bounding box holds a pixel centre and whose area is not zero."""
    # Every step writes into arrays it owns (in place): at a million triangles each fresh
    # float64 column is 8 MB of memory to fault in, as much work as the arithmetic on it.
    x_of, y_of = np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1])
    corners = [np.ascontiguousarray(triangles[:, k]) for k in range(3)]
    xs = [np.take(x_of, corner) for corner in corners]
    ys = [np.take(y_of, corner) for corner in corners]
    del corners
    x_min, x_max = _pixel_range(xs, width)
    y_min, y_max = _pixel_range(ys, height)
    with np.errstate(over="ignore", invalid="ignore"):  # a corner at NaN or inf: dropped below
        edge_x = [_float32_difference(xs[k], xs[2]) for k in range(2)]
        edge_y = [_float32_difference(ys[k], ys[2]) for k in range(2)]
        area = edge_x[0] * edge_y[1]
        area -= edge_x[1] * edge_y[0]
    live = (x_max >= x_min) & (y_max >= y_min) & (area != 0) & np.isfinite(area)
    ids = np.flatnonzero(live)
    del live
    corner_x, corner_y = xs[2], ys[2]
    del xs, ys
    if ids.size < area.size:
        # One column at a time, each dropped as its live part is taken.
        corner_x, corner_y = np.take(corner_x, ids), np.take(corner_y, ids)
        x_min, x_max = np.take(x_min, ids), np.take(x_max, ids)
        y_min, y_max = np.take(y_min, ids), np.take(y_max, ids)
        area = np.take(area, ids)
        edge_x = [np.take(values, ids) for values in edge_x]
        edge_y = [np.take(values, ids) for values in edge_y]
    # (x - x2, y - y2) = b0 * edge 0 + b1 * edge 1, solved for b0 and b1.
    inverse = np.reciprocal(area)
    a0, c0 = edge_y[1] * inverse, -edge_x[1] * inverse
    a1, c1 = -edge_y[0] * inverse, edge_x[0] * inverse
    del inverse, area, edge_x, edge_y
    top = y_min.astype(np.intp)
    base = top * width
    base += x_min.astype(np.intp)
    heights = y_max.astype(np.intp)
    heights -= top
    heights += 1
    del top
    x_max -= x_min
    x_min += 0.5
    x_min -= corner_x
    y_min += 0.5
    y_min -= corner_y
    return _Triangles(
        ids=ids,
        corner_x=corner_x.astype(np.float32),
        corner_y=corner_y.astype(np.float32),
        a=(a0, a1, -a0 - a1),
        c=(c0, c1, -c0 - c1),
        base=base,
        heights=heights,
        last_column=x_max.astype(np.float32),
        ref_x=x_min.astype(np.float32),
        ref_y=y_min.astype(np.float32),
    )


def _pixel_range(coordinates: list[np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """The first and last pixel centre (float64) inside the triangles' extent along one axis,
    clipped to the image: first at most ``size``, last at least -1 (first > last: none)."""
    first = np.minimum(coordinates[0], coordinates[1])
    np.minimum(first, coordinates[2], out=first)
    first -= 0.5
    np.ceil(first, out=first)
    np.clip(first, 0, size, out=first)
    last = np.maximum(coordinates[0], coordinates[1])
    np.maximum(last, coordinates[2], out=last)
    last -= 0.5
    np.floor(last, out=last)
    np.clip(last, -1, size - 1, out=last)
    return first, last


def _float32_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a - b).astype(np.float32)`` without the float64 temporary (rounded the same way)."""
    difference = np.empty(a.shape, dtype=np.float32)
    np.subtract(a, b, out=difference, casting="same_kind")
    return difference


def _row_bounds(live: _Triangles) -> tuple[np.ndarray, ...]:
    """Edge crossings per row for every triangle, sorted into left and right bounds.

    Row ``k`` of a triangle (0 at its top row) covers the pixels ``base + j`` with ``j`` from
    max(lo1, lo2, 0) to min(hi1, hi2, last column), each bound ``slope * k + start``: where the
    triangle's edges cross the row, relative to its top-left pixel centre. Returned as float32
    (slope, start) pairs in the order lo1, lo2, hi1, hi2.

    Edge i (where barycentric i is zero) bounds the row from the left where b_i rises to the
    right (a > 0) and from the right where it falls (a < 0). Every triangle has one or two of
    each; a horizontal edge (a = 0) is implied by the rows the triangle spans. With one bound
    on a side, the second slot repeats it.
    """
    crossing = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(3):
            # b_i >= -eps on row k: a (ref_x + j) + c (ref_y + k) + [i == 2] + eps >= 0.
            step = -np.reciprocal(live.a[i])
            constant = live.c[i] * live.ref_y
            constant += np.float32((1.0 if i == 2 else 0.0) + _EDGE_EPS)
            constant *= step
            constant -= live.ref_x
            crossing.append((live.c[i] * step, constant))
    bounds: list[np.ndarray] = []
    for side in ([a > 0 for a in live.a], [a < 0 for a in live.a]):
        # The first and the last edge on this side (the same one where there is only one).
        first = [np.where(side[1], c1, c2) for c1, c2 in zip(*crossing[1:], strict=True)]
        first = [np.where(side[0], c0, c12) for c0, c12 in zip(crossing[0], first, strict=True)]
        last = [np.where(side[1], c1, c0) for c0, c1 in zip(*crossing[:2], strict=True)]
        last = [np.where(side[2], c2, c01) for c2, c01 in zip(crossing[2], last, strict=True)]
        bounds += [*first, *last]
    return tuple(bounds)


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
    live = _live_triangles(xy, triangles, width, height)
    bounds = _row_bounds(live)
    nearest_wins = depth_key is not None
    depth = None
    if nearest_wins:
        # The key at each top-left pixel centre, and its steps per row and per column.
        vertex_key = np.asarray(depth_key, dtype=np.float64)
        key = [np.take(vertex_key, np.take(triangles[:, k], live.ids)) for k in range(3)]
        rise0, rise1 = (key[0] - key[2]).astype(np.float32), (key[1] - key[2]).astype(np.float32)
        step_x = live.a[0] * rise0 + live.a[1] * rise1
        step_y = live.c[0] * rise0 + live.c[1] * rise1
        at_base = key[2] + step_x * live.ref_x + step_y * live.ref_y
        depth = (at_base, step_y, step_x)
    # Nearest wins: a depth-and-triangle key per pixel, min-reduced. Otherwise: the triangle.
    best = (
        np.full(width * height, _EMPTY_KEY, dtype=np.int64)
        if nearest_wins
        else np.full(width * height, NO_TRIANGLE, dtype=np.int32)
    )
    chunks = _row_chunks(live)
    if nearest_wins:
        for chunk in chunks:
            _rasterize_rows(chunk, live, bounds, depth, width, best)
    else:
        # Any covering triangle wins: each chunk's pixels are found on the threads and written
        # here in chunk order, so the last triangle drawn on a pixel wins as on one thread.
        owners = functools.partial(_row_owners, live=live, bounds=bounds, width=width)
        for pixel, owner in in_threads(owners, chunks):
            best[pixel] = owner
        del owners

    del bounds, depth  # their memory serves the results below
    empty = _EMPTY_KEY if nearest_wins else NO_TRIANGLE
    covered = best != empty
    # Resolve the covered pixels in bands of rows, so the temporaries stay small, each band
    # written straight into its place in the results (the bands are disjoint, so they share
    # the threads).
    band = max(1, _PIXELS_PER_BAND // width)
    tops = range(0, height, band)
    ends = np.cumsum([np.count_nonzero(covered[t * width : (t + band) * width]) for t in tops])
    total = int(ends[-1]) if len(ends) else 0
    pixel = np.empty(total, dtype=np.intp)
    pixel_triangle = np.empty(total, dtype=np.int32)
    b0, b1 = np.empty(total, dtype=np.float32), np.empty(total, dtype=np.float32)
    all_live = live.ids.size == triangles.shape[0]

    def resolve(number: int) -> None:
        top = tops[number]
        part = _resolve_band(best[top * width : (top + band) * width], covered, top, width, live)
        at = slice(int(ends[number]) - part[0].size, int(ends[number]))
        pixel[at] = part[0]
        pixel_triangle[at] = part[1] if all_live else np.take(live.ids, part[1])
        b0[at], b1[at] = part[2], part[3]

    list(in_threads(resolve, range(len(tops))))
    return Raster(
        width=width,
        height=height,
        pixel=pixel,
        pixel_triangle=pixel_triangle,
        pixel_weights=(b0, b1),
    )


def coverage_counts(xy: np.ndarray, triangles: np.ndarray, width: int, height: int) -> np.ndarray:
    """(height * width,) int32: how many triangles cover each pixel, by the same fill rule as
    :func:`rasterize` (so the pixels counted at least once are exactly the ones it covers)."""
    xy = np.asarray(xy, dtype=np.float64)
    triangles = np.asarray(triangles, dtype=np.intp).reshape(-1, 3)
    live = _live_triangles(xy, triangles, width, height)
    bounds = _row_bounds(live)
    counts = np.zeros(width * height, dtype=np.int32)
    for chunk in _row_chunks(live):
        _rasterize_rows(chunk, live, bounds, None, width, counts, count=True)
    return counts


def _row_chunks(live: _Triangles) -> list[np.ndarray]:
    """The live triangles in consecutive chunks of about :data:`_ROWS_PER_CHUNK` rows."""
    heights = live.heights
    splits = np.searchsorted(
        np.cumsum(heights), np.arange(_ROWS_PER_CHUNK, heights.sum(), _ROWS_PER_CHUNK)
    )
    return [chunk for chunk in np.split(np.arange(live.ids.size), splits) if chunk.size]


def in_threads(work: Callable, parts: Iterable) -> Iterator:
    """``work`` on each part, on :data:`_WORKERS` threads, the results in the parts' order."""
    parts = list(parts)
    if _WORKERS < 2 or len(parts) < 2:
        yield from map(work, parts)
        return
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        yield from pool.map(work, parts)


def _resolve_band(
    band: np.ndarray, covered: np.ndarray, top: int, width: int, live: _Triangles
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The covered pixels of a band of rows: flat indices, winning live triangle, b0 and b1."""
    rows, cols = np.nonzero(covered[top * width : top * width + band.size].reshape(-1, width))
    rows += top
    pixel = rows * width + cols
    winner = np.take(band, pixel - top * width)
    # A depth-resolved pixel holds its depth in the high bits and the triangle in the low ones.
    live_index = (winner & 0xFFFFFFFF if winner.dtype == np.int64 else winner).astype(np.intp)
    dx = cols.astype(np.float32)
    dx += np.float32(0.5)
    dx -= np.take(live.corner_x, live_index)
    dy = rows.astype(np.float32)
    dy += np.float32(0.5)
    dy -= np.take(live.corner_y, live_index)
    b0, b1 = (_plane_at(live.a[i], live.c[i], live_index, dx, dy) for i in range(2))
    return pixel, live_index, b0, b1


def _plane_at(
    slope_x: np.ndarray, slope_y: np.ndarray, ids: np.ndarray, dx: np.ndarray, dy: np.ndarray
) -> np.ndarray:
    """Evaluate triangles' planes slope_x * dx + slope_y * dy at offsets from their corner 2."""
    value = np.take(slope_x, ids)
    value *= dx
    along = np.take(slope_y, ids)
    along *= dy
    value += along
    return value


def _bound(
    bounds: tuple[np.ndarray, ...], slot: int, triangle: np.ndarray, row: np.ndarray
) -> np.ndarray:
    """One edge bound per row: slope * row + start of that triangle's edge in ``slot``."""
    value = np.take(bounds[2 * slot], triangle)
    value *= row
    value += np.take(bounds[2 * slot + 1], triangle)
    return value


def _rasterize_rows(
    chunk: np.ndarray,
    live: _Triangles,
    bounds: tuple[np.ndarray, ...],
    depth: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    width: int,
    best: np.ndarray,
    count: bool = False,
) -> None:
    """Scanline step: triangles to rows, rows to exactly their covered pixels, then resolve.

    On each row the covered span is the intersection of the triangle's half-planes; only
    pixels inside it are ever generated. With ``depth`` (the key at each triangle's top-left
    pixel, and its steps per row and column) the nearest triangle wins each pixel; with
    ``count`` (or without ``depth``), ``best`` counts the triangles covering each pixel
    instead. (Without a depth, :func:`rasterize` uses :func:`_row_owners`.)
    """
    pixel, counts, tri, k, first, run_start = _row_pixels(chunk, live, bounds, width)
    if count or depth is None:
        best += np.bincount(pixel, minlength=best.size).astype(np.int32)
        return
    at_base, step_row, step_column = depth
    along = np.take(step_column, tri)
    at_row = np.take(at_base, tri)
    at_row += np.take(step_row, tri) * k
    at_row += along * first.astype(np.float32)
    column = np.arange(pixel.size, dtype=np.intp) - np.repeat(run_start, counts)
    key = np.repeat(along, counts) * column.astype(np.float32)
    key += np.repeat(at_row, counts)
    owner = np.repeat(tri, counts)
    np.minimum.at(best, pixel, (_order_key(key) << 32) | owner)


def _row_owners(
    chunk: np.ndarray, live: _Triangles, bounds: tuple[np.ndarray, ...], width: int
) -> tuple[np.ndarray, np.ndarray]:
    """A chunk's covered pixels and the live triangle covering each (int32), in drawing order."""
    pixel, counts, tri, *_ = _row_pixels(chunk, live, bounds, width)
    return pixel, np.repeat(tri.astype(np.int32), counts)


def _row_pixels(
    chunk: np.ndarray, live: _Triangles, bounds: tuple[np.ndarray, ...], width: int
) -> tuple[np.ndarray, ...]:
    """Triangles to rows, rows to exactly their covered pixels: the pixels, the pixel count of
    each row, and per row its triangle, row within it (float32), first column and the offset
    of its pixels among the chunk's."""
    heights = live.heights[chunk]
    tri = np.repeat(chunk, heights)
    row = np.repeat(np.cumsum(heights) - heights, heights)  # each row's offset in the chunk
    np.subtract(np.arange(tri.size, dtype=np.intp), row, out=row)  # the row within its triangle
    k = row.astype(np.float32)
    lo = np.maximum(_bound(bounds, 0, tri, k), _bound(bounds, 1, tri, k))
    hi = np.minimum(_bound(bounds, 2, tri, k), _bound(bounds, 3, tri, k))
    np.minimum(hi, np.take(live.last_column, tri), out=hi)
    first = np.ceil(lo).astype(np.intp)
    np.maximum(first, 0, out=first)
    counts = np.floor(hi).astype(np.intp)
    counts -= first
    counts += 1
    np.maximum(counts, 0, out=counts)

    # A row's pixels are consecutive: repeat its first pixel and add 0, 1, 2, ...
    start = np.take(live.base, tri)
    start += row * width
    start += first
    run_start = np.cumsum(counts) - counts
    pixel = np.repeat(start - run_start, counts)
    pixel += np.arange(pixel.size, dtype=np.intp)
    return pixel, counts, tri, k, first, run_start
