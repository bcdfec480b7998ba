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
figure costs a few milliseconds on a 1M-triangle mesh and a 2048^2 texture.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

from .sampling import sample_bilinear

log = logging.getLogger(__name__)

SEAM_INSET = 1.0  # texels inside each triangle the texture is read at
SAMPLES_PER_EDGE = 4  # points along each edge pair
EDGES_LOOKED_AT = 32_768  # about this many mesh edges are searched for pairs (a spread subset)
MAX_EDGE_PAIRS = 5_000  # seam edge pairs measured at most (evenly spread over those found)
NEIGHBOUR_ROWS = 64  # texture rows the view-border figure looks along (and down from)


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


def edge_pairs(triangles: np.ndarray, edges_looked_at: int | None = None) -> np.ndarray:
    """(P, 2) pairs of triangle edges (flat ``3 * triangle + corner`` ids, edge k runs from
    corner k to k + 1) that are the same mesh edge; edges of more than two triangles are left
    out. On big meshes only a spread subset of edges is searched (chosen by a hash of the sum of
    their two vertex ids, so both triangles of an edge agree on it, and runs of consecutive ids,
    as along a subdivided seam, are spread over it), so the cost stays a few milliseconds."""
    triangles = np.asarray(triangles)
    edges_looked_at = edges_looked_at or EDGES_LOOKED_AT
    stride = 1
    while 3 * triangles.shape[0] // stride > edges_looked_at:
        stride *= 2
    picked, lows, highs = [], [], []
    for k in range(3):
        start, end = triangles[:, k], triangles[:, (k + 1) % 3]
        at = None
        if stride > 1:  # Fibonacci hashing of the sum: neighbouring ids spread evenly
            mixed = (start + end).astype(np.uint32) * np.uint32(2654435761)
            at = np.flatnonzero(mixed < np.uint32(2**32 // stride))
        if at is not None:
            start, end = start[at], end[at]
        else:
            at = np.arange(triangles.shape[0])
        picked.append(3 * at + k)
        lows.append(np.minimum(start, end).astype(np.int64))
        highs.append(np.maximum(start, end).astype(np.int64))
    edge = np.concatenate(picked)
    high = np.concatenate(highs)
    key = np.concatenate(lows) * (int(high.max(initial=0)) + 1) + high
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
    triangle, corner = pairs // 3, pairs % 3  # (P, 2) each

    def corners(table: np.ndarray, side: int, shift: int) -> np.ndarray:
        return table[triangle[:, side], (corner[:, side] + shift) % 3]

    # Each side's edge in UV (p -> q, r the triangle's third corner), both from the same mesh
    # vertex: the second side reversed where it runs the other way (consistent winding).
    def uv_of(at: np.ndarray) -> np.ndarray:
        return np.asarray(uv[at], dtype=np.float64)

    p1, q1, r1 = (uv_of(corners(uv_triangles, 0, shift)) for shift in range(3))
    reversed_ = corners(triangles, 1, 0) != corners(triangles, 0, 0)
    p2 = uv_of(np.where(reversed_, corners(uv_triangles, 1, 1), corners(uv_triangles, 1, 0)))
    q2 = uv_of(np.where(reversed_, corners(uv_triangles, 1, 0), corners(uv_triangles, 1, 1)))
    r2 = uv_of(corners(uv_triangles, 1, 2))
    seam = np.flatnonzero(np.abs(p1 - p2).sum(axis=1) + np.abs(q1 - q2).sum(axis=1) > 1e-7)
    chosen = _spread(seam, MAX_EDGE_PAIRS)
    if not chosen.size:
        return SeamFigure(None, None, None, 0)
    ends = np.asarray(vertices[corners(triangles, 0, 0)[chosen]], dtype=np.float64)
    ends -= vertices[corners(triangles, 0, 1)[chosen]]
    length = np.linalg.norm(ends, axis=1)
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
    texture: np.ndarray,
    dominant: np.ndarray,
    painted: np.ndarray | None = None,
    rows: int = NEIGHBOUR_ROWS,
) -> SeamFigure:
    """The jump between neighbouring texels whose dominant view differs, against the jump
    between neighbours of one view. ``texture`` (S, S, C), ``dominant`` (S, S) view numbers
    (-1: none), ``painted`` (S, S) texels to look at. Reads ``rows`` evenly spread rows and
    the row below each: right-hand and lower neighbours, contiguous in memory."""
    size = texture.shape[0]
    rows = np.unique(np.linspace(0, size - 2, min(rows, size - 1)).astype(np.int64))
    if not rows.size:
        return SeamFigure(None, None, None, 0)
    channels = min(3, texture.shape[2])
    # Per channel as contiguous 2-D rows: numpy reduces a last axis of 3 slowly.
    colour = [np.ascontiguousarray(texture[rows, :, c], dtype=np.float32) for c in range(channels)]
    below = [
        np.ascontiguousarray(texture[rows + 1, :, c], dtype=np.float32) for c in range(channels)
    ]
    dom, dom_below = dominant[rows], dominant[rows + 1]
    known = dom >= 0
    known_below = dom_below >= 0
    if painted is not None:
        known &= painted[rows]
        known_below &= painted[rows + 1]
    sums = np.zeros(4)
    right = (slice(None), slice(1, None))
    left = (slice(None), slice(0, -1))
    for ok, border, pairs in (
        (known[right] & known[left], dom[right] != dom[left],
         [(c[right], c[left]) for c in colour]),
        (known & known_below, dom != dom_below, list(zip(below, colour, strict=True))),
    ):  # fmt: skip
        step = np.zeros(ok.shape, dtype=np.float32)
        for one, two in pairs:
            step += np.abs(one - two)
        step *= np.float32(1.0 / channels)
        across, within = ok & border, ok & ~border
        sums += [np.dot(step.ravel(), across.ravel()), across.sum(),
                 np.dot(step.ravel(), within.ravel()), within.sum()]  # fmt: skip
    return _figure(sums[0], sums[1], sums[2], sums[3], int(sums[1]))
