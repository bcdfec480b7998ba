"""Homogeneous clipping: the parts of triangles that lie inside a view's clip volume.

No bpy. A camera's clip start and end cut the triangles that cross them, and what is left is
drawn: a ground plane that reaches behind the camera, a wall beside it or a room around it
is seen up to the clip start, as Cycles shows it. Clipping happens in clip space (before the
division by w), where the planes are linear and a point behind the eye is still an ordinary
point, against the near and far planes and a guard band around the image: the band keeps the
pixel coordinates of what is drawn within a few image widths, so the rasteriser's float32
set-up stays exact for triangles that reach far out of the picture.

Every piece remembers the scene triangle it came from and where its corners lie in that
triangle (barycentric weights), so per-pixel results can be expressed in the original triangle.
All of it is vectorised over triangles: each plane turns a triangle into zero, one or two.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

# Half-width of the guard band in NDC units: pieces are kept within one image width or height
# beyond each side of the picture.
GUARD_BAND = 3.0

# Channels of a corner while it is clipped: clip x, y, z, w, view depth, then its barycentric
# weights in the source triangle. All are linear along an edge, so cuts interpolate them all.
_DEPTH = 4
_WEIGHTS = slice(5, 8)


def _planes(guard_band: float) -> np.ndarray:
    """(6, 4) clip-space planes, as coefficients of (x, y, z, w); inside is >= 0.

    Near and far come first: after them w > 0, which the guard band's planes rely on.
    """
    g = guard_band
    return np.array(
        [
            [0.0, 0.0, 1.0, 1.0],  # near: z >= -w
            [0.0, 0.0, -1.0, 1.0],  # far: z <= w
            [1.0, 0.0, 0.0, g],  # left: x >= -g w
            [-1.0, 0.0, 0.0, g],  # right: x <= g w
            [0.0, 1.0, 0.0, g],  # bottom: y >= -g w
            [0.0, -1.0, 0.0, g],  # top: y <= g w
        ]
    )


@dataclass
class Pieces:
    """Triangles cut from scene triangles by the clip volume, three fresh corners each."""

    clip: np.ndarray  # (K, 3, 4) float64 clip coordinates of the corners
    depth: np.ndarray  # (K, 3) float64 view depth of the corners
    weights: np.ndarray  # (K, 3, 3) float64 each corner's barycentric weights in its source
    source: np.ndarray  # (K,) int64 the scene triangle each piece came from

    @property
    def count(self) -> int:
        return int(self.source.size)


def inside_clip_volume(clip: np.ndarray, guard_band: float | None = None) -> np.ndarray:
    """(N,) bool: which clip-space points (N, 4) lie inside every plane :func:`clip_triangles`
    cuts with. A triangle whose corners all do needs no clipping."""
    inside = np.ones(clip.shape[0], dtype=bool)
    for plane in _planes(GUARD_BAND if guard_band is None else guard_band):
        inside &= clip @ plane >= 0.0
    return inside


def clip_triangles(
    clip: np.ndarray,
    depth: np.ndarray,
    source: np.ndarray,
    guard_band: float | None = None,
) -> Pieces:
    """Clip triangles given by their corners against the near, far and guard-band planes.

    ``clip`` (M, 3, 4) and ``depth`` (M, 3) hold each triangle's corners; ``source`` (M,) the
    scene triangle each one is. Each plane keeps a triangle wholly inside, drops one wholly
    outside, and cuts one that crosses it into one triangle (one corner inside) or two (two
    inside, the quad split along a diagonal), with the corners' winding kept.
    """
    corners = np.empty((clip.shape[0], 3, 8), dtype=np.float64)
    corners[..., :4] = clip
    corners[..., _DEPTH] = depth
    corners[..., _WEIGHTS] = np.eye(3)
    source = np.asarray(source, dtype=np.int64)
    for plane in _planes(GUARD_BAND if guard_band is None else guard_band):
        if not source.size:
            break
        corners, source = _clip_against(corners, source, plane)
    return Pieces(
        clip=corners[..., :4],
        depth=corners[..., _DEPTH],
        weights=corners[..., _WEIGHTS],
        source=source,
    )


def _clip_against(
    corners: np.ndarray, source: np.ndarray, plane: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One plane's pass of :func:`clip_triangles` over (M, 3, C) corners."""
    distance = corners[..., :4] @ plane  # (M, 3)
    inside = distance >= 0.0
    count = inside.sum(axis=1)
    whole = count == 3
    if whole.all():
        return corners, source
    kept = [corners[whole]]
    kept_source = [source[whole]]

    # One corner inside: it and the two points where its edges leave the volume.
    one = np.flatnonzero(count == 1)
    if one.size:
        a, b, c, da, db, dc = _rotated(corners[one], distance[one], np.argmax(inside[one], axis=1))
        kept.append(np.stack([a, _cut(a, da, b, db), _cut(a, da, c, dc)], axis=1))
        kept_source.append(source[one])

    # Two corners inside: the quad they leave, split into two triangles.
    two = np.flatnonzero(count == 2)
    if two.size:
        o, p, q, do, dp, dq = _rotated(corners[two], distance[two], np.argmin(inside[two], axis=1))
        po, qo = _cut(p, dp, o, do), _cut(q, dq, o, do)
        kept.append(np.stack([po, p, q], axis=1))
        kept.append(np.stack([po, q, qo], axis=1))
        kept_source += [source[two], source[two]]
    return np.concatenate(kept), np.concatenate(kept_source)


def _rotated(
    corners: np.ndarray, distance: np.ndarray, first: np.ndarray
) -> tuple[np.ndarray, ...]:
    """The corners in their cyclic order starting at ``first``, and their plane distances."""
    order = (first[:, None] + np.arange(3)) % 3
    turned = np.take_along_axis(corners, order[:, :, None], axis=1)
    away = np.take_along_axis(distance, order, axis=1)
    return turned[:, 0], turned[:, 1], turned[:, 2], away[:, 0], away[:, 1], away[:, 2]


def _cut(
    inner: np.ndarray, inner_distance: np.ndarray, outer: np.ndarray, outer_distance: np.ndarray
) -> np.ndarray:
    """Where the edge from an inside corner to an outside one meets the plane.

    Always computed from the inside corner towards the outside one, so the two triangles that
    share an edge cut it at bit-identical points and the pieces meet without cracks.
    """
    t = inner_distance / (inner_distance - outer_distance)
    return inner + t[:, None] * (outer - inner)
