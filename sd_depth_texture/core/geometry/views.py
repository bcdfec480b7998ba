"""A view as plain matrices: where a camera or viewport looks from, and how it projects.

Matrices follow Blender's (OpenGL's) conventions: the view looks down its -Z axis with +Y up,
and the projection maps to clip space whose NDC cube is [-1, 1]^3. Pixel coordinates put row 0
at the top of the image and pixel centres at ``i + 0.5``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import TextureError

# Vertices closer to the eye than this (in clip w) are behind the camera and cannot be projected.
_MIN_CLIP_W = 1e-6


@dataclass(frozen=True)
class View:
    """An eye in the world: world-to-view and projection matrices and an image size in pixels."""

    world_to_view: np.ndarray  # (4, 4)
    projection: np.ndarray  # (4, 4)
    width: int
    height: int

    @property
    def is_orthographic(self) -> bool:
        return bool(abs(self.projection[3, 3] - 1.0) < 1e-9)

    @property
    def eye(self) -> np.ndarray:
        """The eye position in world space (for perspective views)."""
        return np.linalg.inv(self.world_to_view)[:3, 3]

    @property
    def forward(self) -> np.ndarray:
        """The unit viewing direction in world space."""
        direction = -np.linalg.inv(self.world_to_view)[:3, 2]
        return direction / np.linalg.norm(direction)

    def clip_coordinates(self, points: np.ndarray) -> np.ndarray:
        """(N, 4) float64 clip-space coordinates of world-space points (before dividing by w)."""
        matrix = self.projection @ self.world_to_view
        points = np.asarray(points, dtype=np.float64)
        return points @ matrix[:, :3].T + matrix[:, 3]

    def pixels_from_clip(self, clip: np.ndarray) -> np.ndarray:
        """(N, 2) pixel coordinates of clip-space points with w > 0 (see :meth:`project`)."""
        xy = np.empty((clip.shape[0], 2), dtype=np.float64)
        inverse_w = 1.0 / clip[:, 3]
        xy[:, 0] = (clip[:, 0] * inverse_w + 1.0) * (0.5 * self.width)
        xy[:, 1] = (1.0 - clip[:, 1] * inverse_w) * (0.5 * self.height)
        return xy

    def project(self, points: np.ndarray) -> Projected:
        """Project world-space points to pixel coordinates, NDC depth and view depth."""
        # float32 in, float32 out: texel clouds are large and 1e-4 pixel is precise enough.
        points = np.asarray(points)
        dtype = np.float32 if points.dtype == np.float32 else np.float64
        points = points.astype(dtype, copy=False)
        rows = np.empty((5, 4))
        rows[:4] = self.projection @ self.world_to_view
        rows[4] = self.world_to_view[2]
        rows = rows.astype(dtype)
        # One product gives clip x, y, z, w and view z, each a contiguous row (half the time of
        # a product per quantity and column-wise arithmetic), then worked on in place.
        rows_out = rows[:, :3] @ points.T
        rows_out += rows[:, 3:]
        x, y, ndc_z, w, view_z = rows_out
        in_front = w > _MIN_CLIP_W
        inverse_w = np.where(in_front, w, dtype(1.0))
        np.reciprocal(inverse_w, out=inverse_w)
        x *= inverse_w
        x += 1.0
        x *= 0.5 * self.width
        y *= inverse_w
        np.subtract(1.0, y, out=y)
        y *= 0.5 * self.height
        xy = np.empty((points.shape[0], 2), dtype=dtype)
        xy[:, 0] = x
        xy[:, 1] = y
        ndc_z *= inverse_w
        np.negative(view_z, out=view_z)
        return Projected(xy=xy, ndc_z=ndc_z, view_depth=view_z, in_front=in_front)


@dataclass(frozen=True)
class Projected:
    """Points projected by a :class:`View`."""

    xy: np.ndarray  # (N, 2) pixel coordinates
    ndc_z: np.ndarray  # (N,) in [-1, 1] inside the clip range, affine in screen space
    view_depth: np.ndarray  # (N,) distance along the viewing axis (Cycles' Depth pass)
    in_front: np.ndarray  # (N,) bool, False for points behind the eye


# What one view costs at the peak of a run, per depth-map pixel: the Z-buffer's keys, the
# covered pixels' triangles and barycentrics, the depth images and planes, the projection's
# per-pixel tables and the picture itself. Measured (tracemalloc, a single-view run) 219 bytes
# plus 12 for the picture on a 51200 x 512 view, 199 + 12 on 1536 x 512; 256 leaves headroom.
BYTES_PER_VIEW_PIXEL = 256

# The working memory one view may take: 8 GiB, all that Blender's minimum hardware has. A fixed
# figure rather than what the machine happens to have free, so a file works or is refused the
# same way everywhere, and before anything is allocated.
VIEW_MEMORY_BUDGET = 8 << 30

# 32 Mi pixels: 65536 x 512, a 128:1 strip at the model's native short side.
MAX_VIEW_PIXELS = VIEW_MEMORY_BUDGET // BYTES_PER_VIEW_PIXEL


def generation_size(aspect: float, short_side: int = 512, multiple: int = 8) -> tuple[int, int]:
    """Width and height for an aspect: the short side given, both multiples of ``multiple``.

    Raises :class:`TextureError` when that size would exceed :data:`MAX_VIEW_PIXELS` (a 1000:1
    view at 512 would be 512000 pixels wide), naming the size and what would fit.
    """
    if not np.isfinite(aspect) or aspect <= 0:
        raise TextureError(f"The view has an invalid aspect ratio ({aspect}).")
    if short_side < multiple or short_side % multiple:
        raise TextureError(f"The resolution must be a multiple of {multiple}, got {short_side}.")
    stretch = max(aspect, 1 / aspect)
    long_side = max(multiple, round(short_side * stretch / multiple) * multiple)
    if long_side * short_side > MAX_VIEW_PIXELS:
        raise TextureError(_too_large(aspect, stretch, long_side, short_side, multiple))
    return (long_side, short_side) if aspect >= 1 else (short_side, long_side)


def _too_large(
    aspect: float, stretch: float, long_side: int, short_side: int, multiple: int
) -> str:
    """The one-line refusal of a view too large for memory: what it needs, what would fit."""
    width, height = (long_side, short_side) if aspect >= 1 else (short_side, long_side)
    ratio = f"{aspect:.4g}:1" if aspect >= 1 else f"1:{1 / aspect:.4g}"
    fits = int(np.sqrt(MAX_VIEW_PIXELS / stretch)) // multiple * multiple
    while fits >= multiple and fits * round(fits * stretch / multiple) * multiple > MAX_VIEW_PIXELS:
        fits -= multiple
    advice = f" or a short side of at most {fits} pixels" if fits >= multiple else ""
    return (
        f"A {ratio} view needs a {width} x {height} depth map ({width * height / 1e6:.0f} "
        f"megapixels), more than the {MAX_VIEW_PIXELS / 1e6:.1f} megapixels that fit in "
        f"{VIEW_MEMORY_BUDGET >> 30} GiB: use a less extreme aspect ratio{advice}."
    )


def camera_world_to_view(matrix_world: np.ndarray, name: str) -> np.ndarray:
    """The world-to-view matrix of a camera object, its scale ignored as Blender's renders do.

    Cycles takes the camera's axes with their lengths normalised (a mirrored axis stays
    mirrored), so a camera scaled by 2 sees exactly what it sees unscaled. A camera scaled to
    zero has no view and is refused with :class:`TextureError`.
    """
    matrix = np.array(matrix_world, dtype=np.float64)
    length = np.linalg.norm(matrix[:3, :3], axis=0)
    collapsed = not np.isfinite(matrix).all() or length.min() <= 1e-9 * max(length.max(), 1e-30)
    if not collapsed:
        matrix[:3, :3] /= length
        collapsed = abs(np.linalg.det(matrix[:3, :3])) < 1e-6
    if collapsed:
        raise TextureError(
            f"The camera '{name}' is scaled to zero (its axes collapse), so it has no view: "
            "give it a non-zero scale."
        )
    return np.linalg.inv(matrix)
