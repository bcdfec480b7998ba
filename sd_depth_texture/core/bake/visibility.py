"""Which texels and pixels a view can trust: depth test, facing, grazing angles and depth edges.

No bpy. Each texel is projected into the view and tested against the same Z-buffer the depth
map came from, at its exact sub-pixel position, so the tolerance can be tight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry.depth import DepthCapture
from ..geometry.raster import in_threads
from .surface import TexelSurface

# Surfaces seen more obliquely than this are rejected; up to FULL_ANGLE they are fully written.
GRAZING_ANGLE_DEG = 75.0

# A texel is visible when it lies at most this far (relative to its distance) behind the
# Z-buffer's surface, plus the depth a slanted surface spans across one pixel.
DEPTH_TOLERANCE = 0.001

# ...and this many pixels' worth of depth, for the neighbouring triangles of a curved surface.
SURFACE_SLACK = 0.5

# Texels projected at a time: big enough to vectorise well, small enough to reuse memory, and
# several blocks for the threads to share on a 2048^2 layout.
_TEXELS_PER_BLOCK = 1 << 19

DEPTH_EDGE_RATIO = 0.03  # neighbouring depths differing by more than this mark an edge


@dataclass
class SeenTexels:
    """Texels a view sees: surface indices, where they land, how squarely, and their depth."""

    index: np.ndarray  # (M,) indices into the surface's arrays
    xy: np.ndarray  # (M, 2) pixel coordinates in the view
    facing: np.ndarray  # (M,) float32 |cosine| between surface normal and view ray
    depth: np.ndarray  # (M,) view depth of the texel's surface point
    tolerance: np.ndarray  # (M,) how far behind the Z-buffer it may lie and still be seen

    def subset(self, keep: np.ndarray) -> SeenTexels:
        """The texels where the mask ``keep`` holds (taken by index: 2-3x faster than masking
        each field)."""
        at = np.flatnonzero(keep)
        return SeenTexels(
            *(np.take(getattr(self, f), at, axis=0) for f in self.__dataclass_fields__)
        )


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
    # The texels' points in one take of whole rows (a take from one column of ``position``
    # would first copy that column whole, for every block of texels).
    offset = np.take(surface.position, index, axis=0)
    offset -= view.eye.astype(np.float32)
    squared = offset[:, 0] * offset[:, 0]
    for axis in (1, 2):
        squared += offset[:, axis] * offset[:, axis]
    distance = np.sqrt(squared)
    np.maximum(distance, 1e-12, out=distance)
    return along / distance


def seen_texels(surface: TexelSurface, capture: DepthCapture) -> SeenTexels:
    """Texels the view sees: inside the image, not behind the Z-buffer, and not grazing.

    Sidedness is ignored (|cos|): Blender shows both sides of a face with one texture, and the
    depth test already hides the far side of closed meshes. The Z-buffer's surface is evaluated at
    each texel's exact sub-pixel position, so the test needs only a tight tolerance. Texels go
    through in blocks, which keeps the temporaries small enough to be reused, not re-faulted,
    shared by two threads (the blocks are independent and joined in order).
    """
    count = surface.texel.size
    per_triangle = triangle_facing(capture.view, surface)
    capture.pixel_depth_planes()  # made once here, not by each thread
    blocks = list(
        in_threads(
            lambda start: _seen_block(
                surface, capture, per_triangle, start, min(start + _TEXELS_PER_BLOCK, count)
            ),
            range(0, count, _TEXELS_PER_BLOCK),
        )
    ) or [_seen_block(surface, capture, per_triangle, 0, 0)]
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
    # Nearer than the clip start or beyond the clip end, a texel is cut away like its surface:
    # what its pixel shows lies behind it, and the depth test alone would let it through.
    inside &= np.abs(projected.ndc_z) <= 1.0
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


def depth_edges(capture: DepthCapture, ratio: float = DEPTH_EDGE_RATIO) -> np.ndarray:
    """Pixels on silhouettes or depth discontinuities (and their neighbours): unreliable colour."""
    depth = capture.view_depth
    padded = np.pad(depth, 1, mode="edge")
    edge = np.zeros(depth.shape, dtype=bool)
    height, width = depth.shape
    with np.errstate(invalid="ignore"):
        for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
            neighbour = padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
            jump = np.abs(neighbour - depth) > ratio * np.minimum(neighbour, depth)
            edge |= jump | (np.isinf(neighbour) != np.isinf(depth))
    grown = np.pad(edge, 1)
    return (
        grown[1:-1, 1:-1] | grown[:-2, 1:-1] | grown[2:, 1:-1] | grown[1:-1, :-2] | grown[1:-1, 2:]
    )


def reliable_texels(
    surface: TexelSurface, capture: DepthCapture, edges: np.ndarray | None = None
) -> SeenTexels:
    """Seen texels whose pixel is not on a depth edge or silhouette (other views cover those).

    ``edges``: :func:`depth_edges` of the capture, when the caller has it already.
    """
    seen = seen_texels(surface, capture)
    if edges is None:
        edges = depth_edges(capture)
    col = np.clip(seen.xy[:, 0].astype(np.int64), 0, capture.view.width - 1)
    row = np.clip(seen.xy[:, 1].astype(np.int64), 0, capture.view.height - 1)
    return seen.subset(~edges[row, col])


def pixel_facing(capture: DepthCapture, normals: np.ndarray, first_triangle: int) -> np.ndarray:
    """(H, W) |cosine| between each target pixel's face normal and its view ray (0 elsewhere)."""
    local = capture.raster.triangle.astype(np.int64) - first_triangle
    mask = (local >= 0) & (local < len(normals))
    facing = np.zeros(local.shape, dtype=np.float32)
    view = capture.view
    rows, cols = np.nonzero(mask)
    if view.is_orthographic:
        ray = np.broadcast_to(view.forward, (rows.size, 3))
    else:
        inverse = np.linalg.inv(view.projection @ view.world_to_view)
        ndc = np.stack(
            [(cols + 0.5) / view.width * 2 - 1, 1 - (rows + 0.5) / view.height * 2,
             np.ones(rows.size), np.ones(rows.size)], axis=1,
        )  # fmt: skip
        far_point = ndc @ inverse.T
        ray = far_point[:, :3] / far_point[:, 3:] - view.eye
        ray /= np.linalg.norm(ray, axis=1, keepdims=True)
    facing[rows, cols] = np.abs(np.einsum("nc,nc->n", normals[local[mask]], ray))
    return facing
