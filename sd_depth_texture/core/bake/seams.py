"""Seam figures: how visible the texture's UV seams and the borders between views are.

No bpy. Two measures, each against the same measure away from any seam, so ~1 means the seam
does not show:

- UV seams (as Seam Erasure, Liu et al. 2017, integrates along seam edge pairs): a mesh edge
  whose two triangles put it in two places in the UV layout is cut in the texture. The texture
  is read a little inside each triangle (``inset`` texels off the edge) at the same points
  along the edge on both sides, and the mean colour difference is weighted by the edge's 3D
  length. The reference is the same step taken inside each island: from ``inset`` to
  ``3 * inset`` texels in, at the same points.
- View borders: neighbouring texels whose dominant view (the view with the largest weight)
  differs; the mean colour jump across them against the jump between neighbours of one view.

Both look only at texels the run painted and at a bounded sample of edges and rows, so a
figure costs milliseconds on a 1M-triangle mesh and a 2048^2 texture.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

from .sampling import sample_bilinear

log = logging.getLogger(__name__)

SEAM_INSET = 1.0  # texels inside each triangle the texture is read at
SAMPLES_PER_EDGE = 4  # points along each edge pair
MAX_EDGE_PAIRS = 20_000  # edge pairs of each kind looked at (evenly spread over the mesh)
MAX_NEIGHBOUR_ROWS = 512  # texture rows (and columns) the view-border figure looks along


@dataclass
class SeamFigure:
    """One discontinuity against its reference: ``ratio`` ~1 means the seam does not show."""

    seam: float | None  # mean |colour difference| across the seams (or borders)
    reference: float | None  # the same measure away from them
    ratio: float | None
    pairs: int  # edge pairs (or texel pairs) measured across the seams

    def as_record(self) -> dict:
        return {key: _rounded(value) for key, value in asdict(self).items()}


def _rounded(value):
    return round(value, 5) if isinstance(value, float) else value


def _figure(seam_sum: float, seam_weight: float, ref_sum: float, ref_weight: float,
            pairs: int) -> SeamFigure:  # fmt: skip
    seam = seam_sum / seam_weight if seam_weight > 0 else None
    reference = ref_sum / ref_weight if ref_weight > 0 else None
    ratio = seam / reference if seam is not None and reference else None
    return SeamFigure(seam, reference, ratio, pairs)


def edge_pairs(triangles: np.ndarray, max_pairs: int = MAX_EDGE_PAIRS) -> np.ndarray:
    """(P, 2) pairs of triangle edges (flat ``3 * triangle + corner`` ids, edge k runs from
    corner k to k + 1) that are the same mesh edge; edges of more than two triangles are left
    out. On big meshes only a spread subset of edges is looked at (those whose two vertex ids
    sum to a multiple of a power of two), so the cost stays bounded."""
    triangles = np.asarray(triangles, dtype=np.int64)
    start, end = triangles.ravel(), np.roll(triangles, -1, axis=1).ravel()
    stride = 1
    while start.size // stride > 8 * max_pairs:
        stride *= 2
    edge = np.flatnonzero(((start + end) & (stride - 1)) == 0)
    low, high = np.minimum(start[edge], end[edge]), np.maximum(start[edge], end[edge])
    key = low * (int(triangles.max(initial=0)) + 1) + high
    order = np.argsort(key, kind="stable")
    key, edge = key[order], edge[order]
    same = key[1:] == key[:-1]
    # Exactly two triangles: the pair is not part of a run of three or more.
    before = np.concatenate([[False], same[:-1]])
    after = np.concatenate([same[1:], [False]])
    first = np.flatnonzero(same & ~before & ~after)
    return np.stack([edge[first], edge[first + 1]], axis=1)


def _spread(rows: np.ndarray, count: int) -> np.ndarray:
    if rows.size <= count:
        return rows
    return rows[np.linspace(0, rows.size - 1, count).astype(np.int64)]


def uv_seam_figure(
    texture: np.ndarray,
    vertices: np.ndarray,
    triangles: np.ndarray,
    uv: np.ndarray,
    uv_triangles: np.ndarray,
    painted: np.ndarray | None = None,
    inset: float = SEAM_INSET,
) -> SeamFigure:
    """The UV-seam discontinuity of an (S, S, C) texture (row 0 at v = 1) against the same
    step inside the islands; ``painted``: (S, S) texels to look at (None: all)."""
    size = texture.shape[0]
    pairs = edge_pairs(triangles)
    if not pairs.size:
        return SeamFigure(None, None, None, 0)
    uv = np.asarray(uv, dtype=np.float64)
    uv_triangles = np.asarray(uv_triangles, dtype=np.int64)
    triangles = np.asarray(triangles, dtype=np.int64)
    corner, next_corner, third_corner = (
        np.roll(uv_triangles, -k, axis=1).ravel() for k in range(3)
    )
    # Each side's edge in UV (p -> q, r the triangle's third corner), both from the same mesh
    # vertex: the second side reversed where it runs the other way (consistent winding).
    first, second = pairs[:, 0], pairs[:, 1]
    p1, q1, r1 = uv[corner[first]], uv[next_corner[first]], uv[third_corner[first]]
    reversed_ = triangles.ravel()[second] != triangles.ravel()[first]
    p2 = uv[np.where(reversed_, next_corner[second], corner[second])]
    q2 = uv[np.where(reversed_, corner[second], next_corner[second])]
    r2 = uv[third_corner[second]]
    seam = np.flatnonzero(np.abs(p1 - p2).sum(axis=1) + np.abs(q1 - q2).sum(axis=1) > 1e-7)
    chosen = _spread(seam, MAX_EDGE_PAIRS)
    if not chosen.size:
        return SeamFigure(None, None, None, 0)
    vertices = np.asarray(vertices, dtype=np.float64)
    a = triangles.ravel()[first[chosen]]
    b = np.roll(triangles, -1, axis=1).ravel()[first[chosen]]
    length = np.linalg.norm(vertices[a] - vertices[b], axis=1)
    t = (np.arange(SAMPLES_PER_EDGE) + 0.5) / SAMPLES_PER_EDGE

    def inside(p, q, r, depth):
        """(E * K, 2) texture points ``depth`` texels inside the triangle along p -> q."""
        p, q, r = p[chosen], q[chosen], r[chosen]
        along = q - p
        normal = np.stack([-along[:, 1], along[:, 0]], axis=1)
        normal *= np.sign(np.einsum("ec,ec->e", normal, r - p))[:, None]
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
        points = p[:, None] + t[None, :, None] * along[:, None] + normal[:, None] * depth / size
        xy = np.stack([points[..., 0] * size, (1.0 - points[..., 1]) * size], axis=-1)
        return xy.reshape(-1, 2)

    # Across the seam: ``inset`` texels in on each side (2 * inset apart). The reference: the
    # same 2 * inset step inside each island, from ``inset`` to ``3 * inset`` texels in.
    near1, near2 = inside(p1, q1, r1, inset), inside(p2, q2, r2, inset)
    far1, far2 = inside(p1, q1, r1, 3 * inset), inside(p2, q2, r2, 3 * inset)
    colour = texture[..., :3]
    read = {name: sample_bilinear(colour, xy) for name, xy in
            (("near1", near1), ("near2", near2), ("far1", far1), ("far2", far2))}  # fmt: skip

    def difference(one: np.ndarray, two: np.ndarray) -> np.ndarray:
        return np.abs(one - two).mean(axis=1).reshape(-1, SAMPLES_PER_EDGE)

    across = difference(read["near1"], read["near2"])
    within = 0.5 * (
        difference(read["near1"], read["far1"]) + difference(read["near2"], read["far2"])
    )
    valid = np.ones(across.shape, dtype=bool)
    if painted is not None:
        for xy in (near1, near2, far1, far2):
            col = np.clip(xy[:, 0].astype(np.int64), 0, size - 1)
            row = np.clip(xy[:, 1].astype(np.int64), 0, size - 1)
            valid &= painted[row, col].reshape(valid.shape)
    weight = length[:, None] * valid
    total = float(weight.sum())
    pairs_seen = int(valid.any(axis=1).sum())
    return _figure(float((weight * across).sum()), total, float((weight * within).sum()), total,
                   pairs_seen)  # fmt: skip


def view_border_figure(
    texture: np.ndarray, dominant: np.ndarray, painted: np.ndarray | None = None
) -> SeamFigure:
    """The jump between neighbouring texels whose dominant view differs, against the jump
    between neighbours of one view. ``texture`` (S, S, C), ``dominant`` (S, S) view numbers
    (-1: none), ``painted`` (S, S) texels to look at. Looks along at most MAX_NEIGHBOUR_ROWS
    evenly spread rows and as many columns."""
    size = texture.shape[0]
    step = max(1, size // MAX_NEIGHBOUR_ROWS)
    colour = texture[..., :3]
    sums = np.zeros(4)
    for axis in (0, 1):
        lines = slice(step // 2, None, step)
        if axis == 0:  # along rows: left and right neighbours
            pick = (lines, slice(None))
            a, b = (slice(None), slice(0, -1)), (slice(None), slice(1, None))
        else:
            pick = (slice(None), lines)
            a, b = (slice(0, -1), slice(None)), (slice(1, None), slice(None))
        dom, col = dominant[pick], colour[pick]
        ok = (dom[a] >= 0) & (dom[b] >= 0)
        if painted is not None:
            mask = painted[pick]
            ok &= mask[a] & mask[b]
        border = ok & (dom[a] != dom[b])
        jump = np.abs(col[a] - col[b]).mean(axis=-1)
        sums += [jump[border].sum(), border.sum(), jump[ok & ~border].sum(), (ok & ~border).sum()]
    return _figure(sums[0], sums[1], sums[2], sums[3], int(sums[1]))
