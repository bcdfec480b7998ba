"""Texel surfaces: the UV layout rasterised once into the world-space point under each texel.

No bpy. Gather baking starts here: every later stage (visibility, sampling, blending, fill,
margin) works on the texels of a :class:`TexelSurface`.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..geometry.mesh import digest_arrays
from ..geometry.raster import barycentric_columns, coverage_counts, in_threads, rasterize

log = logging.getLogger(__name__)


@dataclass
class TexelSurface:
    """The surface under each texel a UV layout covers, for one ``size`` x ``size`` texture."""

    size: int
    texel: np.ndarray  # (N,) flat indices into the (size, size) texture, row 0 at the top (v = 1)
    position: np.ndarray  # (N, 3) float32 world-space points
    triangle: np.ndarray  # (N,) int32 the mesh triangle under each texel
    weights: tuple[np.ndarray, np.ndarray]  # (N,) float32 barycentrics b0, b1 in that triangle
    triangle_normal: np.ndarray  # (F, 3) float64 unit normal of every mesh triangle
    triangle_offset: np.ndarray  # (F,) float64 normal . point for every point of the triangle
    # :func:`shared_texel_fraction` of the layout, once found (a surface is one layout's).
    shared_fraction: float | None = None

    @cached_property
    def barycentric(self) -> np.ndarray:
        """(N, 3) float32 position of each texel within its triangle."""
        return barycentric_columns(*self.weights)

    @property
    def mask(self) -> np.ndarray:
        """(size, size) bool: which texels lie on a UV island."""
        covered = np.zeros(self.size * self.size, dtype=bool)
        covered[self.texel] = True
        return covered.reshape(self.size, self.size)


def texel_surface(
    vertices: np.ndarray,
    triangles: np.ndarray,
    uv: np.ndarray,
    uv_triangles: np.ndarray,
    size: int,
) -> TexelSurface:
    """Rasterise a mesh's UV layout into world positions and normals per covered texel.

    ``triangles`` index ``vertices`` (V, 3, world space); ``uv_triangles`` index ``uv`` (L, 2),
    Blender's per-corner UVs, with the same triangle order.
    """
    raster = rasterize(_pixel_uv(uv, size), uv_triangles, size, size)
    triangle = raster.pixel_triangle
    # Per triangle: corner 2 and the edges to corners 0 and 1, one flat column per axis, so
    # each texel is corner 2 + b0 * edge 0 + b1 * edge 1, gathered with cheap 1-D takes.
    corner, edge0, edge1 = _triangle_frames(vertices, triangles)
    frames = [[column.astype(np.float32) for column in axes] for axes in (edge0, edge1, corner)]
    position = np.empty((triangle.size, 3), dtype=np.float32)
    # The texels in two halves, one per thread (the halves are disjoint).
    halves = (slice(0, triangle.size // 2), slice(triangle.size // 2, triangle.size))
    list(
        in_threads(
            lambda half: _texel_positions(
                frames, triangle[half], raster.pixel_weights, half, position
            ),
            halves,
        )
    )
    normal = _unit_normals(edge0, edge1)
    offset = normal[:, 0] * corner[0]
    scratch = normal[:, 1] * corner[1]
    offset += scratch
    np.multiply(normal[:, 2], corner[2], out=scratch)
    offset += scratch
    return TexelSurface(
        size=size,
        texel=raster.pixel,
        position=position,
        triangle=triangle,
        weights=raster.pixel_weights,
        triangle_normal=normal,
        triangle_offset=offset,
    )


def _texel_positions(
    frames: list[list[np.ndarray]],
    triangle: np.ndarray,
    weights: tuple[np.ndarray, np.ndarray],
    part: slice,
    position: np.ndarray,
) -> None:
    """Fill ``position[part]``: corner 2 + b0 * edge 0 + b1 * edge 1 of each texel's triangle,
    from ``frames`` (float32 columns per axis of edge 0, edge 1 and corner 2)."""
    edge0, edge1, corner = frames
    texel_triangle = triangle.astype(np.intp)
    b0, b1 = (weight[part] for weight in weights)
    # Two scratch columns serve every axis: fresh memory costs as much as the arithmetic.
    value = np.empty(triangle.size, dtype=np.float32)
    along = np.empty(triangle.size, dtype=np.float32)
    for axis in range(3):
        np.take(edge0[axis], texel_triangle, out=value, mode="clip")
        value *= b0
        np.take(edge1[axis], texel_triangle, out=along, mode="clip")
        along *= b1
        value += along
        np.take(corner[axis], texel_triangle, out=along, mode="clip")
        value += along
        position[part, axis] = value


def _pixel_uv(uv: np.ndarray, size: int) -> np.ndarray:
    """UVs in texel coordinates of a ``size`` texture, row 0 at the top (v = 1)."""
    uv = np.asarray(uv, dtype=np.float64)
    pixel_uv = np.empty_like(uv)
    pixel_uv[:, 0] = uv[:, 0] * size
    pixel_uv[:, 1] = (1.0 - uv[:, 1]) * size
    return pixel_uv


def _triangle_frames(
    vertices: np.ndarray, triangles: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Per triangle, as float64 columns per axis: corner 2 and the edges 2->0 and 2->1."""
    vertices = np.asarray(vertices, dtype=np.float64)
    triangles = np.asarray(triangles, dtype=np.intp).reshape(-1, 3)
    index = [np.ascontiguousarray(triangles[:, k]) for k in range(3)]
    corner, edge0, edge1 = [], [], []
    for axis in range(3):
        coordinate = np.ascontiguousarray(vertices[:, axis])
        at = [np.take(coordinate, k) for k in index]
        corner.append(at[2])
        edge0.append(at[0] - at[2])
        edge1.append(at[1] - at[2])
    return corner, edge0, edge1


def _unit_normals(edge0: list[np.ndarray], edge1: list[np.ndarray]) -> np.ndarray:
    """(F, 3) float64 unit normals edge0 x edge1; degenerate triangles get a zero normal.

    With the edges from corner 2, (c0 - c2) x (c1 - c2) = (c1 - c0) x (c2 - c0): the normal of
    Blender's winding.
    """
    count = edge0[0].size
    cross = np.empty((count, 3))
    scratch = np.empty(count)
    for axis, (a, b) in enumerate(((1, 2), (2, 0), (0, 1))):
        np.multiply(edge0[a], edge1[b], out=cross[:, axis])
        np.multiply(edge0[b], edge1[a], out=scratch)
        cross[:, axis] -= scratch
    length = np.sqrt(np.einsum("fc,fc->f", cross, cross))
    length[~(length > 0)] = 1.0
    cross /= length[:, None]
    return cross


_SURFACE_CACHE: OrderedDict[str, TexelSurface] = OrderedDict()

_SURFACE_CACHE_SIZE = 2  # a 2048^2 surface of a dense mesh holds ~200 MB


def cached_texel_surface(
    vertices: np.ndarray,
    triangles: np.ndarray,
    uv: np.ndarray,
    uv_triangles: np.ndarray,
    size: int,
    digest: bytes | None = None,
) -> TexelSurface:
    """:func:`texel_surface`, reused while the mesh, its UVs and the size are unchanged.

    Keyed by the arrays' content (hashing is ~10x cheaper than rasterising the layout), so
    running again on the same object skips the UV rasterisation. ``digest``: the content's
    digest where the caller has it (a mesh's ``digest`` and ``uv_digest`` joined, made as the
    mesh was read); otherwise the arrays are hashed on two threads (hashlib releases the GIL):
    1M triangles, 92 MB, 50 ms on one, 28 ms on two.
    """
    if digest is None:
        digest = digest_arrays((vertices, triangles, uv, uv_triangles))
    key = hashlib.sha1(str(size).encode() + digest).hexdigest()
    if key in _SURFACE_CACHE:
        _SURFACE_CACHE.move_to_end(key)
        return _SURFACE_CACHE[key]
    surface = texel_surface(vertices, triangles, uv, uv_triangles, size)
    _SURFACE_CACHE[key] = surface
    while len(_SURFACE_CACHE) > _SURFACE_CACHE_SIZE:
        _SURFACE_CACHE.popitem(last=False)
    return surface


def face_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unit normals per triangle (float32); degenerate triangles get a zero normal."""
    _, edge0, edge1 = _triangle_frames(vertices, triangles)
    return _unit_normals(edge0, edge1).astype(np.float32)


# Overlap by the area test above which shared texels are counted exactly (below it, the test's
# own figure: at most this, and the count would cost a second rasterisation of the layout).
EXACT_ABOVE = 0.005
_TIE_BREAK = np.array([1e-3, 0.37e-3])  # texels; parallel to no edge a layout is likely to have

# Share of faces whose UVs may lie outside the 0-1 square before a layout is refused.
MAX_OUTSIDE_FACES = 0.01


def shared_texel_fraction(surface: TexelSurface, uv: np.ndarray, uv_triangles: np.ndarray) -> float:
    """Share of the layout's texels that several faces cover (overlapping or mirrored UVs),
    from 0 to 1.

    First the cheap test: the UV area the triangles cover, in texels, against the texels they
    cover, equal for a layout without overlaps (up to the texels on island borders). Only a
    layout that overlaps more than :data:`EXACT_ABOVE` by that test is rasterised again to count
    the faces on each texel: the area's excess counts a texel three copies share twice, so it is
    no share (an Array modifier's three copies would read 200 %). A shared texel keeps one
    surface point (the face the UV raster drew last), so it shows the colour painted for that
    face. Found once per surface (a surface is the raster of one layout): a surface reused by
    :func:`cached_texel_surface` keeps it.
    """
    if surface.shared_fraction is None:
        surface.shared_fraction = _shared_texel_fraction(surface, uv, uv_triangles)
    return surface.shared_fraction


def _shared_texel_fraction(
    surface: TexelSurface, uv: np.ndarray, uv_triangles: np.ndarray
) -> float:
    uv = np.asarray(uv)
    corners = [np.ascontiguousarray(uv_triangles[:, k]) for k in range(3)]
    u = [np.take(uv[:, 0].astype(np.float32), c) for c in corners]
    v = [np.take(uv[:, 1].astype(np.float32), c) for c in corners]
    twice_area = np.abs((u[0] - u[2]) * (v[1] - v[2]) - (u[1] - u[2]) * (v[0] - v[2]))
    area = 0.5 * float(twice_area.sum(dtype=np.float64)) * surface.size * surface.size
    covered = max(surface.texel.size, 1)
    excess = max(0.0, (area - covered) / covered)
    if excess <= EXACT_ABOVE:
        return excess
    # The layout moved by a thousandth of a texel, askew: a texel centre exactly on the edge two
    # neighbouring faces share (both raster it) then falls on one side only, and a layout
    # still tiles as it did.
    shifted = _pixel_uv(uv, surface.size) + _TIE_BREAK
    counts = coverage_counts(shifted, uv_triangles, surface.size, surface.size)
    return float(np.count_nonzero(counts > 1) / max(np.count_nonzero(counts), 1))


def outside_faces_fraction(uv: np.ndarray, uv_triangles: np.ndarray) -> float:
    """Share of faces whose UV centre lies outside the 0-1 square (UDIM tiles, unpacked UVs)."""
    uv = np.asarray(uv)
    if uv.size == 0 or (uv.min() >= 0.0 and uv.max() <= 1.0):
        return 0.0  # the usual case, without touching the faces
    centres = uv[np.asarray(uv_triangles, dtype=np.intp)].mean(axis=1)
    outside = np.any((centres < 0.0) | (centres > 1.0), axis=1)
    return float(outside.mean()) if outside.size else 0.0
