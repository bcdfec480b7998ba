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
        matrix = (self.projection @ self.world_to_view).astype(dtype)
        clip = points @ matrix[:3, :3].T + matrix[:3, 3]
        w = points @ matrix[3, :3] + matrix[3, 3]
        in_front = w > _MIN_CLIP_W
        inverse_w = 1.0 / np.where(in_front, w, 1.0)
        xy = np.empty((points.shape[0], 2), dtype=dtype)
        xy[:, 0] = (clip[:, 0] * inverse_w + 1.0) * (0.5 * self.width)
        xy[:, 1] = (1.0 - clip[:, 1] * inverse_w) * (0.5 * self.height)
        ndc_z = clip[:, 2] * inverse_w
        to_view = self.world_to_view.astype(dtype)
        view_z = points @ to_view[2, :3] + to_view[2, 3]
        return Projected(xy=xy, ndc_z=ndc_z, view_depth=-view_z, in_front=in_front)


@dataclass(frozen=True)
class Projected:
    """Points projected by a :class:`View`."""

    xy: np.ndarray  # (N, 2) pixel coordinates
    ndc_z: np.ndarray  # (N,) in [-1, 1] inside the clip range, affine in screen space
    view_depth: np.ndarray  # (N,) distance along the viewing axis (Cycles' Depth pass)
    in_front: np.ndarray  # (N,) bool, False for points behind the eye


def generation_size(aspect: float, short_side: int = 512, multiple: int = 8) -> tuple[int, int]:
    """Width and height for an aspect: the short side given, both multiples of ``multiple``."""
    if not np.isfinite(aspect) or aspect <= 0:
        raise TextureError(f"The view has an invalid aspect ratio ({aspect}).")
    if short_side < multiple or short_side % multiple:
        raise TextureError(f"The resolution must be a multiple of {multiple}, got {short_side}.")
    long_side = max(multiple, round(short_side * max(aspect, 1 / aspect) / multiple) * multiple)
    return (long_side, short_side) if aspect >= 1 else (short_side, long_side)


def fit_projection(projection: np.ndarray, aspect: float, width: int, height: int) -> np.ndarray:
    """Adapt a projection made for ``aspect`` to a ``width`` x ``height`` image without stretching.

    The vertical field of view is kept; rounding the size to multiples of 8 only widens or narrows
    the horizontal one by a fraction of a pixel's worth per side.
    """
    fitted = np.array(projection, dtype=np.float64)
    fitted[0, :] *= aspect / (width / height)
    return fitted
