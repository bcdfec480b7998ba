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

from ..errors import TextureError
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
    vertex_affine_depth: np.ndarray  # (V,) their screen_affine_depth
    triangles: np.ndarray  # (F, 3) the scene's triangles (indices in ``raster.triangle``)
    _pixel_planes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def foreground(self) -> np.ndarray:
        return self.raster.triangle != NO_TRIANGLE

    def pixel_depth_planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per pixel, its covering triangle's screen-affine depth: value at the centre, slopes.

        The quantity is :func:`screen_affine_depth`. Three flat (H * W,) float32 arrays (value,
        d/dx, d/dy), NaN over the background. Taken about the pixel centre, float32 keeps it to
        a relative 1e-7 whatever the clip range, and texel look-ups gather from a table the
        size of the view, not of the scene.
        """
        if self._pixel_planes is None:
            raster = self.raster
            corners = np.take(self.triangles, raster.pixel_triangle, axis=0)
            x, y, q = (
                [np.take(values, corners[:, k]).astype(np.float64) for k in range(3)]
                for values in (self.vertex_xy[:, 0], self.vertex_xy[:, 1], self.vertex_affine_depth)
            )
            area = (x[1] - x[0]) * (y[2] - y[0]) - (x[2] - x[0]) * (y[1] - y[0])
            dq1, dq2 = q[1] - q[0], q[2] - q[0]
            with np.errstate(divide="ignore", invalid="ignore"):
                a = np.nan_to_num((dq1 * (y[2] - y[0]) - dq2 * (y[1] - y[0])) / area)
                b = np.nan_to_num(((x[1] - x[0]) * dq2 - (x[2] - x[0]) * dq1) / area)
            centre_x = raster.pixel % self.view.width + 0.5
            centre_y = raster.pixel // self.view.width + 0.5
            at_centre = q[0] + a * (centre_x - x[0]) + b * (centre_y - y[0])
            planes = []
            for coefficient in (at_centre, a, b):
                dense = np.full(self.view.width * self.view.height, np.nan, dtype=np.float32)
                dense[raster.pixel] = coefficient
                planes.append(dense)
            self._pixel_planes = (planes[0], planes[1], planes[2])
        return self._pixel_planes

    def surface_depth_at(self, xy: np.ndarray) -> np.ndarray:
        """View depth (float32) of the visible surface at sub-pixel points (inf over background).

        The covering triangle of each point's pixel is evaluated at the point itself rather
        than at the pixel centre, so a slanted surface compares exactly with itself.
        """
        x, y = xy[:, 0].astype(np.float32), xy[:, 1].astype(np.float32)
        col = np.clip(x.astype(np.intp), 0, self.view.width - 1)
        row = np.clip(y.astype(np.intp), 0, self.view.height - 1)
        dx = x - col.astype(np.float32) - np.float32(0.5)
        dy = y - row.astype(np.float32) - np.float32(0.5)
        pixel = row * self.view.width + col
        at_centre, slope_x, slope_y = (np.take(plane, pixel) for plane in self.pixel_depth_planes())
        slope_x *= dx
        slope_y *= dy
        at_centre += slope_x
        at_centre += slope_y
        depth = at_centre if self.view.is_orthographic else np.reciprocal(at_centre)
        depth[np.isnan(depth)] = np.inf
        return depth


def screen_affine_depth(view: View, view_depth: np.ndarray) -> np.ndarray:
    """The depth quantity that is affine in screen space over a triangle: view depth for
    orthographic views, 1 / view depth for perspective ones (nearer is larger there).

    Unlike NDC depth, which crowds towards 1, float32 resolves it at any clip range.
    """
    if view.is_orthographic:
        return view_depth
    return 1.0 / np.maximum(view_depth, 1e-12)


def capture_depth(view: View, vertices: np.ndarray, triangles: np.ndarray) -> DepthCapture:
    """Z-buffer world-space triangles as ``view`` sees them (nearest surface per pixel).

    Triangles with a vertex behind the eye or outside the clip range are left out, as the
    camera's clip start and end would cut them.
    """
    triangles = np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
    projected = view.project(vertices)
    vertex_ok = projected.in_front & (np.abs(projected.ndc_z) <= 1.0)
    # Keep the caller's triangle indices: a triangle with an unusable vertex gets a NaN corner,
    # so its area is not finite and it is never drawn.
    drawable_xy = np.where(vertex_ok[:, None], projected.xy, np.nan)
    affine = screen_affine_depth(view, projected.view_depth)
    # Nearest wins: the key grows with distance, so perspective views negate 1 / depth.
    key = affine if view.is_orthographic else -affine
    raster = rasterize(drawable_xy, triangles, view.width, view.height, key)

    covered = raster.covered
    ndc_z = np.full((view.height, view.width), np.inf, dtype=np.float32)
    view_depth = np.full((view.height, view.width), np.inf, dtype=np.float32)
    ndc_z[covered] = raster.interpolate(projected.ndc_z[:, None], triangles)[:, 0]
    at_pixels = raster.interpolate(affine[:, None], triangles)[:, 0]
    view_depth[covered] = at_pixels if view.is_orthographic else 1.0 / at_pixels
    return DepthCapture(
        view=view,
        raster=raster,
        view_depth=view_depth,
        ndc_z=ndc_z,
        vertex_xy=projected.xy,
        vertex_affine_depth=affine,
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
