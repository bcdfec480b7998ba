"""Where automatic views look from: an orbit of views framed on an object's bounds.

No bpy. Views follow Blender's conventions (see :mod:`.views`); an object's front is its -Y side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...defaults import ORBIT_VIEWS
from .views import View

DEFAULT_ELEVATION_DEG = 25.0

DEFAULT_FOV_DEG = 40.0


@dataclass(frozen=True)
class NamedView:
    """A view with its name and the words that describe it in a prompt ("front view")."""

    label: str
    view: View
    prompt_hint: str = ""


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """World-to-view matrix of an eye looking at ``target`` (Blender's -Z forward, +Y up)."""
    forward = target - eye
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, up)
    right = right / np.linalg.norm(right)
    true_up = np.cross(right, forward)
    matrix = np.eye(4)
    matrix[0, :3], matrix[1, :3], matrix[2, :3] = right, true_up, -forward
    matrix[:3, 3] = -matrix[:3, :3] @ eye
    return matrix


def perspective(fov_deg: float, aspect: float, near: float, far: float) -> np.ndarray:
    """An OpenGL perspective projection with a vertical field of view."""
    focal = 1.0 / np.tan(np.radians(fov_deg) / 2.0)
    return np.array(
        [
            [focal / aspect, 0.0, 0.0, 0.0],
            [0.0, focal, 0.0, 0.0],
            [0.0, 0.0, (far + near) / (near - far), 2.0 * far * near / (near - far)],
            [0.0, 0.0, -1.0, 0.0],
        ]
    )


def ring_azimuths(count: int) -> list[float]:
    """Evenly spaced azimuths, front (0) first, then alternating right/left, back (180) last."""
    steps = [360.0 * k / count for k in range(count)]
    signed = [a if a <= 180.0 else a - 360.0 for a in steps]
    return sorted(signed, key=lambda a: (abs(a) == 180.0, abs(a), -a))


def _azimuth_label(azimuth: float) -> str:
    side = "right" if azimuth > 0 else "left"
    if abs(azimuth) < 22.5:
        return "front"
    if abs(azimuth) > 157.5:
        return "back"
    if abs(azimuth) < 67.5:
        return f"front {side}"
    if abs(azimuth) <= 112.5:
        return f"{side} side"
    return f"back {side}"


def orbit_view(
    center: np.ndarray,
    radius: float,
    azimuth_deg: float,
    elevation_deg: float = DEFAULT_ELEVATION_DEG,
    *,
    fov_deg: float = DEFAULT_FOV_DEG,
    size: int = 512,
    front: np.ndarray | None = None,
) -> View:
    """A square view framed tightly on a bounding sphere from an azimuth and an elevation.

    Azimuth 0 looks at the front (-Y, or ``front``, a horizontal direction), positive to the
    right; elevation 90 looks straight down (the front at the bottom of the picture), -90 up.
    """
    center = np.asarray(center, dtype=np.float64)
    radius = max(float(radius), 1e-6)
    distance = radius / np.sin(np.radians(fov_deg) / 2.0) * 1.02
    near, far = max(distance - radius * 1.5, distance * 1e-3), distance + radius * 1.5
    facing = np.array([0.0, -1.0]) if front is None else np.asarray(front, float)[:2]
    facing = facing / np.linalg.norm(facing)
    yaw = np.arctan2(facing[0], -facing[1])
    a, e = np.radians(azimuth_deg) + yaw, np.radians(elevation_deg)
    direction = np.array([np.sin(a) * np.cos(e), -np.cos(a) * np.cos(e), np.sin(e)])
    # Straight above or below, "up" in the picture points away from the front.
    up = np.array([-facing[0], -facing[1], 0.0]) if abs(elevation_deg) >= 89.9 else [0, 0, 1.0]
    world_to_view = look_at(center + direction * distance, center, np.asarray(up, float))
    return View(world_to_view, perspective(fov_deg, 1.0, near, far), size, size)


def orbit_views(
    center: np.ndarray,
    radius: float,
    count: int = ORBIT_VIEWS,
    *,
    size: int = 512,
    elevation_deg: float = DEFAULT_ELEVATION_DEG,
    fov_deg: float = DEFAULT_FOV_DEG,
    include_bottom: bool = True,
    front: np.ndarray | None = None,
) -> list[NamedView]:
    """Views around a bounding sphere: a ring at a moderate elevation, then top and bottom.

    The object's front is its -Y side (Blender's convention), so azimuth 0 looks at it from -Y
    (or from ``front``, a horizontal direction) and labels such as "back view" mean what they
    say. With ``count`` >= 4 the ring has ``count - 2`` views plus top and bottom; fewer views
    are all on the ring. Each view is framed tightly on the sphere and square.
    """
    ring = count - 2 if count >= 4 else count
    placements = [(_azimuth_label(a), a, elevation_deg) for a in ring_azimuths(ring)]
    if count >= 4:
        placements.append(("top", 0.0, 90.0))
        if include_bottom:
            placements.append(("bottom", 0.0, -90.0))
    return [
        NamedView(
            label,
            orbit_view(center, radius, azimuth, elevation, fov_deg=fov_deg, size=size, front=front),
            f"{label} view",
        )
        for label, azimuth, elevation in placements
    ]


def object_bounds(vertices: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre of the bounding box and the radius of the sphere around it holding every vertex."""
    center = (vertices.min(axis=0) + vertices.max(axis=0)) / 2.0
    return center, float(np.linalg.norm(vertices - center, axis=1).max())
