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


def _vertex_sums(vertex: np.ndarray, weight: np.ndarray, color: np.ndarray, count: int):
    total = np.stack(
        [np.bincount(vertex, weights=weight * color[:, c], minlength=count) for c in range(3)],
        axis=1,
    )
    return total, np.bincount(vertex, weights=weight, minlength=count)


def fill_unpainted(
    surface: TexelSurface, state: TextureState, triangles: np.ndarray, vertex_count: int
) -> tuple[np.ndarray, int]:
    """Colours for every texel of the surface: painted ones as they are, the rest filled.

    Returns the (N, 3) colours and how many propagation rings it took.
    """
    triangles = np.asarray(triangles, dtype=np.int64)
    painted = state.painted
    color = state.color.copy()
    if painted.all():
        return color, 0
    if not painted.any():
        return color, 0

    corner_vertex = triangles[surface.triangle[painted]].ravel()
    corner_weight = surface.barycentric[painted].astype(np.float64).ravel()
    corner_color = np.repeat(state.color[painted].astype(np.float64), 3, axis=0)
    total, weight = _vertex_sums(corner_vertex, corner_weight, corner_color, vertex_count)
    known = weight > 0
    vertex_color = np.zeros((vertex_count, 3))
    vertex_color[known] = total[known] / weight[known, None]

    source = np.concatenate([triangles[:, 0], triangles[:, 1], triangles[:, 2]] * 2)
    target = np.concatenate(
        [triangles[:, 1], triangles[:, 2], triangles[:, 0], triangles[:, 2], triangles[:, 0],
         triangles[:, 1]]
    )  # fmt: skip
    rings = 0
    while True:
        live = known[source] & ~known[target]
        if not live.any():
            break
        ones = np.ones(int(live.sum()))
        total, weight = _vertex_sums(target[live], ones, vertex_color[source[live]], vertex_count)
        reached = weight > 0
        vertex_color[reached] = total[reached] / weight[reached, None]
        known |= reached
        rings += 1
    if not known.all():  # parts of the mesh no view saw and no edge reaches
        vertex_color[~known] = state.color[painted].mean(axis=0)

    missing = ~painted
    corners = vertex_color[triangles[surface.triangle[missing]]]  # (M, 3, 3)
    color[missing] = np.einsum("mk,mkc->mc", surface.barycentric[missing], corners)
    log.debug("Filled %d texels over %d rings", int(missing.sum()), rings)
    return color.astype(np.float32), rings
