"""Fill texels no view saw by propagating colour over the mesh, across UV seams.

Dilating in UV space cannot cross a seam: the two sides of a seam are far apart in the texture.
Blender meshes share vertices across seams (UVs are per corner), so colour is carried on the
vertex graph instead: painted texels give their triangle's vertices a colour, colour spreads
along mesh edges to vertices that have none, and unpainted texels interpolate their triangle's
vertex colours.
"""

from __future__ import annotations

import logging

import numpy as np

from .blending import TextureState
from .surface import TexelSurface

log = logging.getLogger(__name__)


def fill_unpainted(
    surface: TexelSurface, state: TextureState, triangles: np.ndarray, vertex_count: int
) -> tuple[np.ndarray, int]:
    """Colours for every texel of the surface: painted ones as they are, the rest filled.

    Returns the (N, C) colours and how many propagation rings it took. Sums run in the same
    order whatever the shortcuts below, so the colours do not depend on them: each painted
    texel's corners are weighed by broadcasting (no copy of its colour per corner), edges
    whose far vertex has a colour are dropped once, not tested again every ring, and a ring
    sums over the vertices it reaches, not over all of them (1M triangles, 2048^2, 40% to fill
    over 240 rings: 5.0 s of CPU before, 1.4 s now).
    """
    triangles = np.asarray(triangles, dtype=np.int64)
    painted = state.painted
    color = state.color.copy()
    if painted.all():
        return color, 0
    if not painted.any():
        return color, 0

    where = np.flatnonzero(painted)
    corner_vertex = np.take(triangles, np.take(surface.triangle, where), axis=0).ravel()
    corner_weight = np.take(surface.barycentric, where, axis=0).astype(np.float64)  # (P, 3)
    painted_color = np.take(state.color, where, axis=0).astype(np.float64)
    channels = color.shape[1]
    total = np.empty((vertex_count, channels))
    for c in range(channels):
        weighed = corner_weight * painted_color[:, c : c + 1]  # corner by corner, as raveled
        total[:, c] = np.bincount(corner_vertex, weights=weighed.ravel(), minlength=vertex_count)
    weight = np.bincount(corner_vertex, weights=corner_weight.ravel(), minlength=vertex_count)
    del corner_vertex, corner_weight, painted_color, weighed
    known = weight > 0
    vertex_color = np.zeros((vertex_count, channels))
    vertex_color[known] = total[known] / weight[known, None]

    source = np.concatenate([triangles[:, 0], triangles[:, 1], triangles[:, 2]] * 2)
    target = np.concatenate(
        [triangles[:, 1], triangles[:, 2], triangles[:, 0], triangles[:, 2], triangles[:, 0],
         triangles[:, 1]]
    )  # fmt: skip
    rings = 0
    while True:
        open_edge = ~known[target]  # an edge into a coloured vertex never carries colour again
        source, target = source[open_edge], target[open_edge]
        live = known[source]
        if not live.any():
            break
        # Each reached vertex: the mean colour of its coloured neighbours, summed edge by edge
        # in edge order over the reached vertices only (not a sum over every vertex per ring).
        reached, slot = np.unique(target[live], return_inverse=True)
        carried = np.take(vertex_color, source[live], axis=0)
        count = np.bincount(slot, minlength=reached.size).astype(np.float64)
        for c in range(channels):
            total = np.bincount(slot, weights=carried[:, c], minlength=reached.size)
            vertex_color[reached, c] = total / count
        known[reached] = True
        rings += 1
    if not known.all():  # parts of the mesh no view saw and no edge reaches
        vertex_color[~known] = state.color[painted].mean(axis=0)

    missing = np.flatnonzero(~painted)
    missing_corners = np.take(triangles, np.take(surface.triangle, missing), axis=0)
    corners = np.take(vertex_color, missing_corners, axis=0)  # (M, 3, C)
    # float64 weights: what einsum would cast them to anyway, without its slow mixed-type path.
    weights = np.take(surface.barycentric, missing, axis=0).astype(np.float64)
    color[missing] = np.einsum("mk,mkc->mc", weights, corners)
    log.debug("Filled %d texels over %d rings", int(missing.sum()), rings)
    return color.astype(np.float32), rings
