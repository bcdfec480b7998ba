"""The view's Z-buffer and the depth map SD2-depth expects.

The model was trained on MiDaS relative inverse depth: near is bright, the background sits at
the far end, and the pipeline min-max normalises whatever it gets. NDC depth is affine in 1/z
for perspective views (and in z for orthographic ones), so normalising it over the foreground
yields exactly that quantity for either kind of view, independent of clip distances.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..errors import TextureError
from .clip import Pieces, clip_triangles, inside_clip_volume
from .mesh import SceneGeometry
from .raster import NO_TRIANGLE, Raster, rasterize
from .views import View

log = logging.getLogger(__name__)

# Where the farthest foreground point lands; the background alone is 0, so silhouettes stay crisp.
FAR_FOREGROUND = 0.1

# Captures by scene digest and view (see :func:`cached_capture`): 512^2 of 1M triangles ~60 MB.
_CAPTURE_CACHE: OrderedDict[bytes, DepthCapture] = OrderedDict()
_CAPTURE_CACHE_SIZE = 2


@dataclass
class DrawnTriangles:
    """What the Z-buffer drew: the scene's triangles, then the pieces clipping cut from some.

    Drawn triangle ``t < scene_triangles`` is scene triangle ``t``; one that crosses the clip
    volume keeps its slot but is never drawn there (a corner outside has no pixel position, so
    its area is not finite). Drawn triangle ``scene_triangles + k`` is ``pieces`` entry ``k``,
    whose three corners are drawn vertices of their own after the scene's.
    """

    xy: np.ndarray  # (Vd, 2) pixel coordinates; NaN for scene vertices outside the clip volume
    affine_depth: np.ndarray  # (Vd,) screen_affine_depth
    ndc_z: np.ndarray  # (Vd,)
    w: np.ndarray  # (Vd,) clip w; positive for every corner of a drawn triangle
    triangles: np.ndarray  # (Fd, 3)
    scene_triangles: int
    pieces: Pieces
    source_w: np.ndarray  # (K, 3) clip w of each piece's source triangle's corners

    def scene_triangle(self, drawn: np.ndarray) -> np.ndarray:
        """The scene triangle each drawn triangle index in ``drawn`` belongs to."""
        if not self.pieces.count:
            return drawn
        piece = drawn - self.scene_triangles
        return np.where(piece >= 0, np.take(self.pieces.source, np.maximum(piece, 0)), drawn)


@dataclass
class DepthCapture:
    """What one view sees: the covering triangle per pixel and its depth.

    ``raster`` speaks of the scene's own triangles (the indices of ``triangles``, so owner
    look-ups and per-object triangle ranges work): a pixel covered by a piece of a clipped
    triangle names the original triangle, and its barycentrics are re-expressed in it. They
    are the screen-space barycentrics the original would have if it could be drawn whole,
    ``b_j = lambda_j w_j / w`` (lambda: the surface point's barycentrics, w: clip w), which is
    what the rasteriser gives for unclipped triangles. Where a corner lies behind the eye its
    ``b_j`` is negative, so perspective correction must not divide by a clamped depth: use
    :meth:`surface_barycentric`. Depth planes come from ``drawn``/``drawn_raster``, the pieces
    actually rasterised.
    """

    view: View
    raster: Raster
    view_depth: np.ndarray  # (H, W) float32, distance along the view axis; inf for background
    ndc_z: np.ndarray  # (H, W) float32; inf for background
    triangles: np.ndarray  # (F, 3) the scene's triangles (indices in ``raster.triangle``)
    drawn: DrawnTriangles
    drawn_raster: Raster  # the same covered pixels, by drawn triangle (``raster`` if none clipped)
    _pixel_planes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    _surface_barycentric: np.ndarray | None = None

    @property
    def foreground(self) -> np.ndarray:
        return self.raster.triangle != NO_TRIANGLE

    def surface_barycentric(self) -> np.ndarray:
        """(N, 3) float64 barycentrics of each covered pixel centre's surface point within its
        scene triangle (perspective-correct, in [0, 1]), in ``raster.pixel`` order.

        Exact for clipped triangles too: each piece's corners carry their own weights in the
        original, and clip w is positive at every drawn corner.
        """
        if self._surface_barycentric is None:
            drawn, raster = self.drawn, self.drawn_raster
            corners = np.take(drawn.triangles, raster.pixel_triangle, axis=0)
            weights = raster.pixel_barycentric.astype(np.float64)
            weights /= np.take(drawn.w, corners)
            piece = raster.pixel_triangle.astype(np.int64) - drawn.scene_triangles
            on_piece = np.flatnonzero(piece >= 0)
            if on_piece.size:
                in_source = np.take(drawn.pieces.weights, piece[on_piece], axis=0)
                weights[on_piece] = np.einsum("nk,nkj->nj", weights[on_piece], in_source)
            weights /= weights.sum(axis=1, keepdims=True)
            self._surface_barycentric = weights
        return self._surface_barycentric

    def pixel_depth_planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per pixel, its covering triangle's screen-affine depth: value at the centre, slopes.

        The quantity is :func:`screen_affine_depth`. Three flat (H * W,) float32 arrays (value,
        d/dx, d/dy), NaN over the background. Taken about the pixel centre, float32 keeps it to
        a relative 1e-7 whatever the clip range, and texel look-ups gather from a table the
        size of the view, not of the scene. A clipped triangle's pieces lie in its plane, so
        the piece that covers a pixel gives the same plane, from corners that are on screen.
        """
        if self._pixel_planes is None:
            raster, drawn = self.drawn_raster, self.drawn
            corners = np.take(drawn.triangles, raster.pixel_triangle, axis=0)
            x, y, q = (
                [np.take(values, corners[:, k]).astype(np.float64) for k in range(3)]
                for values in (drawn.xy[:, 0], drawn.xy[:, 1], drawn.affine_depth)
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
        # In place throughout: this runs on every texel a view may see (millions).
        dx, dy = xy[:, 0].astype(np.float32), xy[:, 1].astype(np.float32)
        col = dx.astype(np.intp)
        np.clip(col, 0, self.view.width - 1, out=col)
        pixel = dy.astype(np.intp)
        np.clip(pixel, 0, self.view.height - 1, out=pixel)
        dx -= col.astype(np.float32)
        dx -= np.float32(0.5)
        dy -= pixel.astype(np.float32)
        dy -= np.float32(0.5)
        pixel *= self.view.width
        pixel += col
        del col
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

    What lies nearer than the clip start or beyond the clip end is cut away as Cycles cuts it:
    triangles that cross the clip volume are clipped in clip space (:mod:`.clip`) and their
    pieces drawn, so a ground plane reaching behind the camera or a room around it is seen.
    Triangles wholly inside it, usually all of them, are drawn as they are.
    """
    triangles = np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
    clip = view.clip_coordinates(vertices)
    inside = inside_clip_volume(clip)
    to_view = view.world_to_view
    view_depth = -(np.asarray(vertices, dtype=np.float64) @ to_view[2, :3] + to_view[2, 3])
    w = clip[:, 3]
    safe_w = np.where(inside, w, 1.0)
    # Keep the caller's triangle indices: a corner outside the clip volume gets a NaN position,
    # so its triangle's area is not finite and it is never drawn; its pieces are drawn instead.
    xy = view.pixels_from_clip(np.where(inside[:, None], clip, [0.0, 0.0, 0.0, 1.0]))
    xy[~inside] = np.nan
    ndc_z = clip[:, 2] / safe_w
    affine = screen_affine_depth(view, view_depth)

    whole = np.take(inside, triangles[:, 0])
    whole &= np.take(inside, triangles[:, 1])
    whole &= np.take(inside, triangles[:, 2])
    crossing = np.flatnonzero(~whole)
    pieces = clip_triangles(clip[triangles[crossing]], view_depth[triangles[crossing]], crossing)
    drawn = _drawn_triangles(view, xy, affine, ndc_z, w, triangles, pieces)
    if pieces.count:
        log.debug("clipped %d triangles into %d pieces", crossing.size, pieces.count)

    # Nearest wins: the key grows with distance, so perspective views negate 1 / depth.
    key = drawn.affine_depth if view.is_orthographic else -drawn.affine_depth
    drawn_raster = rasterize(drawn.xy, drawn.triangles, view.width, view.height, key)
    covered = drawn_raster.covered
    ndc_image = np.full((view.height, view.width), np.inf, dtype=np.float32)
    depth_image = np.full((view.height, view.width), np.inf, dtype=np.float32)
    ndc_image[covered] = drawn_raster.interpolate(drawn.ndc_z[:, None], drawn.triangles)[:, 0]
    at_pixels = drawn_raster.interpolate(drawn.affine_depth[:, None], drawn.triangles)[:, 0]
    depth_image[covered] = at_pixels if view.is_orthographic else 1.0 / at_pixels
    return DepthCapture(
        view=view,
        raster=_in_scene_triangles(drawn_raster, drawn),
        view_depth=depth_image,
        ndc_z=ndc_image,
        triangles=triangles,
        drawn=drawn,
        drawn_raster=drawn_raster,
    )


def cached_capture(view: View, geometry: SceneGeometry) -> DepthCapture:
    """:func:`capture_depth` of the scene's triangle soup, reused for the same view of a scene
    that reads the same (its :attr:`SceneGeometry.digest`): the ``depth`` command and the
    ``project`` run after it, or the panel's Capture Depth and the run from the same view, see
    the very same Z-buffer. A soup without a digest is captured every time.
    """
    if geometry.digest is None:
        return capture_depth(view, geometry.vertices, geometry.triangles)
    key = hashlib.sha1(geometry.digest)
    for matrix in (view.world_to_view, view.projection):
        key.update(np.ascontiguousarray(matrix, dtype=np.float64).tobytes())
    key.update(f"{view.width}x{view.height}".encode())
    digest = key.digest()
    cached = _CAPTURE_CACHE.get(digest)
    if cached is not None:
        _CAPTURE_CACHE.move_to_end(digest)
        return cached
    capture = capture_depth(view, geometry.vertices, geometry.triangles)
    raster = capture.raster
    for shared in (capture.view_depth, capture.ndc_z, raster.pixel, raster.pixel_triangle,
                   *raster.pixel_weights):  # fmt: skip
        shared.flags.writeable = False  # every later run reads the same arrays
    _CAPTURE_CACHE[digest] = capture
    while len(_CAPTURE_CACHE) > _CAPTURE_CACHE_SIZE:
        _CAPTURE_CACHE.popitem(last=False)
    return capture


def _drawn_triangles(
    view: View,
    xy: np.ndarray,
    affine: np.ndarray,
    ndc_z: np.ndarray,
    w: np.ndarray,
    triangles: np.ndarray,
    pieces: Pieces,
) -> DrawnTriangles:
    """The scene's vertices and triangles with the pieces' corners and triangles after them."""
    source_w = np.take(w, triangles[pieces.source])
    if not pieces.count:
        return DrawnTriangles(xy, affine, ndc_z, w, triangles, triangles.shape[0], pieces, source_w)
    clip = pieces.clip.reshape(-1, 4)
    piece_triangles = np.arange(clip.shape[0], dtype=np.int64).reshape(-1, 3) + xy.shape[0]
    return DrawnTriangles(
        xy=np.concatenate([xy, view.pixels_from_clip(clip)]),
        affine_depth=np.concatenate([affine, screen_affine_depth(view, pieces.depth.ravel())]),
        ndc_z=np.concatenate([ndc_z, clip[:, 2] / clip[:, 3]]),
        w=np.concatenate([w, clip[:, 3]]),
        triangles=np.concatenate([triangles, piece_triangles]),
        scene_triangles=triangles.shape[0],
        pieces=pieces,
        source_w=source_w,
    )


def _in_scene_triangles(drawn_raster: Raster, drawn: DrawnTriangles) -> Raster:
    """``drawn_raster`` with every pixel naming its scene triangle and barycentrics in it.

    For a piece's pixel, the surface point's weights in the original triangle (lambda) come
    from the piece's corners; the screen-space barycentrics of the original are then
    ``lambda_j w_j / sum_i lambda_i w_i``, finite because the pixel's own w is positive.
    """
    if not drawn.pieces.count:
        return drawn_raster
    drawn_index = drawn_raster.pixel_triangle.astype(np.int64)
    piece = drawn_index - drawn.scene_triangles
    on_piece = np.flatnonzero(piece >= 0)
    b0, b1 = (weights.copy() for weights in drawn_raster.pixel_weights)
    if on_piece.size:
        own = piece[on_piece]
        corners = np.take(drawn.triangles, drawn_index[on_piece], axis=0)
        weights = drawn_raster.pixel_barycentric[on_piece].astype(np.float64)
        weights /= np.take(drawn.w, corners)
        in_source = np.einsum("nk,nkj->nj", weights, np.take(drawn.pieces.weights, own, axis=0))
        in_source *= np.take(drawn.source_w, own, axis=0)
        in_source /= in_source.sum(axis=1, keepdims=True)
        b0[on_piece] = in_source[:, 0]
        b1[on_piece] = in_source[:, 1]
    return Raster(
        width=drawn_raster.width,
        height=drawn_raster.height,
        pixel=drawn_raster.pixel,
        pixel_triangle=drawn.scene_triangle(drawn_index).astype(np.int32),
        pixel_weights=(b0, b1),
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
