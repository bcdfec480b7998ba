"""The view's Z-buffer and the depth map SD2-depth expects.

The model was trained on MiDaS relative inverse depth: near is bright, the background sits at
the far end, and the pipeline min-max normalises whatever it gets. NDC depth is affine in 1/z
for perspective views (and in z for orthographic ones), so normalising it over the foreground
yields exactly that quantity for either kind of view, independent of clip distances.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .errors import TextureError
from .raster import NO_TRIANGLE, Raster, rasterize
from .views import View

log = logging.getLogger(__name__)

# Where the farthest foreground point lands; the background alone is 0, so silhouettes stay crisp.
FAR_FOREGROUND = 0.1


@dataclass
class DepthCapture:
    """What one view sees: the covering triangle per pixel and its depth."""

    view: View
    raster: Raster
    view_depth: np.ndarray  # (H, W) float32, distance along the view axis; inf for background
    ndc_z: np.ndarray  # (H, W) float32; inf for background
    vertex_xy: np.ndarray  # (V, 2) the scene's vertices in pixel coordinates
    vertex_ndc_z: np.ndarray  # (V,) their NDC depths (affine in screen space per triangle)
    triangles: np.ndarray  # (F, 3) the scene's triangles (indices in ``raster.triangle``)
    _pixel_planes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def foreground(self) -> np.ndarray:
        return self.raster.triangle != NO_TRIANGLE

    def pixel_ndc_planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per pixel, the plane a x + b y + c of NDC depth over its covering triangle.

        Three flat (H * W,) float64 arrays, NaN over the background. Built from the covered
        pixels' triangles only, so it costs a view's pixels, not the scene's triangles, and
        texel look-ups gather from a small, cache-friendly table.
        """
        if self._pixel_planes is None:
            raster = self.raster
            corners = np.take(self.triangles, raster.pixel_triangle, axis=0)
            x, y, z = (
                [np.take(values, corners[:, k]) for k in range(3)]
                for values in (self.vertex_xy[:, 0], self.vertex_xy[:, 1], self.vertex_ndc_z)
            )
            area = (x[1] - x[0]) * (y[2] - y[0]) - (x[2] - x[0]) * (y[1] - y[0])
            dz1, dz2 = z[1] - z[0], z[2] - z[0]
            with np.errstate(divide="ignore", invalid="ignore"):
                a = np.nan_to_num((dz1 * (y[2] - y[0]) - dz2 * (y[1] - y[0])) / area)
                b = np.nan_to_num(((x[1] - x[0]) * dz2 - (x[2] - x[0]) * dz1) / area)
            c = z[0] - a * x[0] - b * y[0]
            planes = []
            for coefficient in (a, b, c):
                dense = np.full(self.view.width * self.view.height, np.nan)
                dense[raster.pixel] = coefficient
                planes.append(dense)
            self._pixel_planes = (planes[0], planes[1], planes[2])
        return self._pixel_planes

    def surface_depth_at(self, xy: np.ndarray) -> np.ndarray:
        """View depth of the visible surface at sub-pixel points (inf over background).

        The covering triangle of each point's pixel is evaluated at the point itself rather
        than at the pixel centre, so a slanted surface compares exactly with itself.
        """
        x, y = xy[:, 0].astype(np.float64), xy[:, 1].astype(np.float64)
        col = np.clip(x.astype(np.int64), 0, self.view.width - 1)
        pixel = np.clip(y.astype(np.int64), 0, self.view.height - 1) * self.view.width + col
        a, b, c = (np.take(plane, pixel) for plane in self.pixel_ndc_planes())
        ndc = a * x + b * y + c
        depth = ndc_to_view_depth(self.view, ndc)
        depth[np.isnan(ndc)] = np.inf
        return depth


def ndc_to_view_depth(view: View, ndc_z: np.ndarray) -> np.ndarray:
    """Invert the projection's depth mapping (either kind of view)."""
    p22, p23 = view.projection[2, 2], view.projection[2, 3]
    if view.is_orthographic:
        return (p23 - ndc_z) / p22
    return p23 / (ndc_z + p22)


def capture_depth(view: View, vertices: np.ndarray, triangles: np.ndarray) -> DepthCapture:
    """Z-buffer world-space triangles as ``view`` sees them (nearest surface per pixel).

    Triangles with a vertex behind the eye or outside the clip range are left out, as the
    camera's clip start and end would cut them.
    """
    triangles = np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
    projected = view.project(vertices)
    vertex_ok = projected.in_front & (np.abs(projected.ndc_z) <= 1.0)
    # Keep the caller's triangle indices: an unusable triangle becomes degenerate (never drawn).
    usable = vertex_ok[triangles].all(axis=1)
    drawable = np.where(usable[:, None], triangles, 0)
    raster = rasterize(projected.xy, drawable, view.width, view.height, projected.ndc_z)

    covered = raster.covered
    ndc_z = np.full((view.height, view.width), np.inf, dtype=np.float32)
    view_depth = np.full((view.height, view.width), np.inf, dtype=np.float32)
    ndc_z[covered] = raster.interpolate(projected.ndc_z[:, None], triangles)[:, 0]
    # View depth is not affine in screen space under perspective; 1/depth is.
    if view.is_orthographic:
        view_depth[covered] = raster.interpolate(projected.view_depth[:, None], triangles)[:, 0]
    else:
        inverse = 1.0 / np.maximum(projected.view_depth, 1e-12)
        view_depth[covered] = 1.0 / raster.interpolate(inverse[:, None], triangles)[:, 0]
    return DepthCapture(
        view=view,
        raster=raster,
        view_depth=view_depth,
        ndc_z=ndc_z,
        vertex_xy=projected.xy,
        vertex_ndc_z=projected.ndc_z,
        triangles=triangles,
    )


def depth_for_model(capture: DepthCapture) -> np.ndarray:
    """The (H, W) float32 map for SD2-depth: near = 1, farthest surface = 0.1, background = 0.

    Raises :class:`TextureError` for a view that sees nothing, where the pipeline's own
    normalisation would silently produce a NaN image.
    """
    foreground = capture.foreground
    if not foreground.any():
        raise TextureError("Nothing is visible in the view: there is no depth to texture from.")
    near_is_high = -capture.ndc_z[foreground].astype(np.float64)
    low, high = near_is_high.min(), near_is_high.max()
    depth = np.zeros(foreground.shape, dtype=np.float32)
    span = high - low
    scaled = (near_is_high - low) / span if span > 0 else np.ones_like(near_is_high)
    depth[foreground] = FAR_FOREGROUND + (1.0 - FAR_FOREGROUND) * scaled
    if depth.min() == depth.max():
        raise TextureError(
            "The view sees one flat surface and nothing else, so its depth map is constant; "
            "move the view so the object's outline is visible."
        )
    return depth
