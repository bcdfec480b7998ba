"""Shared texels of overlapping UV layouts are a share: from 0 to 1, counted per texel."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from sd_depth_texture.core.bake.surface import shared_texel_fraction, texel_surface
from sd_depth_texture.core.geometry.raster import rasterize

SIZE = 64


def _layout(copies: int, shift: float = 0.0) -> tuple[np.ndarray, ...]:
    """``copies`` unit quads side by side in space, each mapped onto the same UV square
    (moved by ``shift`` per copy), as an Array modifier's copies share one layout."""
    square = np.array([[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]])
    quad = np.array([[0, 1, 2], [0, 2, 3]])
    vertices, triangles, uv = [], [], []
    for copy in range(copies):
        vertices.append(np.c_[square + np.array([copy, 0.0]), np.zeros(4)])
        triangles.append(quad + 4 * copy)
        uv.append(square + np.array([shift * copy, 0.0]))
    return np.concatenate(vertices), np.concatenate(triangles), np.concatenate(uv)


def _shared(copies: int, shift: float = 0.0) -> float:
    vertices, triangles, uv = _layout(copies, shift)
    surface = texel_surface(vertices, triangles, uv, triangles, SIZE)
    return shared_texel_fraction(surface, uv, triangles)


def test_shared_texels_are_a_share_of_the_texels_counted_per_texel():
    # Array copies sharing one layout share every texel, however many copies there are.
    assert [_shared(copies) for copies in (2, 3, 5)] == pytest.approx([1.0, 1.0, 1.0])
    # The second square moved right by half its width: overlap 0.2 x 0.4 of a union 0.6 x 0.4.
    assert _shared(2, shift=0.2) == pytest.approx(1 / 3, abs=0.03)
    assert _shared(1) < 0.01


def test_coverage_counts_cover_exactly_the_rasterised_pixels():
    from sd_depth_texture.core.geometry.raster import coverage_counts

    _, triangles, uv = _layout(3, shift=0.05)
    xy = np.c_[uv[:, 0] * SIZE, (1 - uv[:, 1]) * SIZE]
    counts = coverage_counts(xy, triangles, SIZE, SIZE)
    raster = rasterize(xy, triangles, SIZE, SIZE)
    assert np.array_equal(np.flatnonzero(counts), np.sort(raster.pixel))
    assert counts.max() >= 3  # three copies on one another


def test_triangles_with_corners_at_nan_or_infinity_are_dropped_without_a_warning():
    _, triangles, uv = _layout(2, shift=0.2)
    xy = np.c_[uv[:, 0] * SIZE, (1 - uv[:, 1]) * SIZE]
    xy[0] = (np.nan, 3.0)
    xy[5] = (np.inf, -np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warning would be a stray stderr line
        raster = rasterize(xy, triangles, SIZE, SIZE)
    assert not np.isin(raster.pixel_triangle, [0, 1, 2]).any()  # the triangles at NaN or inf
    assert np.isin(raster.pixel_triangle, [3]).any()
