"""Many views, one texture: where to look from, what each view keeps, refines or generates.

A whole-object run paints views in order. Each view first sees what earlier views painted (the
current texture rendered from it); pixels already painted well are kept during denoising,
pixels never painted are generated, and pixels seen much more squarely than before are refined.
A per-texel record of the best facing so far makes sure a later, worse view never overwrites a
better one; where a better view does write, colours blend with cos^k weights so view borders
do not show as seams.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .depth import DepthCapture
from .projection import SeenTexels, TexelSurface, sample_bilinear, sample_seen, seen_texels
from .views import View

log = logging.getLogger(__name__)

FACING_POWER = 4  # weights cos^k: detail comes from the views that face the surface
REFINE_MARGIN = 0.3  # a view refines a texel when its cosine beats the best so far by this
DEPTH_EDGE_RATIO = 0.03  # neighbouring depths differing by more than this mark an edge
DEFAULT_ELEVATION_DEG = 25.0
DEFAULT_FOV_DEG = 40.0
DEFAULT_VIEW_COUNT = 10  # TEXTure's 8 around plus top and bottom


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
    count: int = DEFAULT_VIEW_COUNT,
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


@dataclass
class TextureState:
    """The texture being built, per surface texel (the order of a :class:`TexelSurface`)."""

    color: np.ndarray  # (N, 3) float32 sRGB
    weight: np.ndarray  # (N,) float32, sum of cos^k of the views that wrote the texel
    best_facing: np.ndarray  # (N,) float32 cosine of the most square view so far; 0 = unpainted

    @classmethod
    def empty(cls, count: int, grey: float = 0.5) -> TextureState:
        return cls(
            color=np.full((count, 3), grey, dtype=np.float32),
            weight=np.zeros(count, dtype=np.float32),
            best_facing=np.zeros(count, dtype=np.float32),
        )

    @property
    def painted(self) -> np.ndarray:
        return self.weight > 0


@dataclass
class ViewRecord:
    """What one view did, for the run's report."""

    label: str
    new: float = 0.0  # fractions of the texels this view could use
    refined: float = 0.0
    kept: float = 0.0
    overlap_difference: float | None = None  # mean |new - old| colour where already painted
    seconds: dict[str, float] = field(default_factory=dict)


def depth_edges(capture: DepthCapture, ratio: float = DEPTH_EDGE_RATIO) -> np.ndarray:
    """Pixels on silhouettes or depth discontinuities (and their neighbours): unreliable colour."""
    depth = capture.view_depth
    padded = np.pad(depth, 1, mode="edge")
    edge = np.zeros(depth.shape, dtype=bool)
    height, width = depth.shape
    with np.errstate(invalid="ignore"):
        for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
            neighbour = padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
            jump = np.abs(neighbour - depth) > ratio * np.minimum(neighbour, depth)
            edge |= jump | (np.isinf(neighbour) != np.isinf(depth))
    grown = np.pad(edge, 1)
    return (
        grown[1:-1, 1:-1] | grown[:-2, 1:-1] | grown[2:, 1:-1] | grown[1:-1, :-2] | grown[1:-1, 2:]
    )


def reliable_texels(
    surface: TexelSurface, capture: DepthCapture, edges: np.ndarray | None = None
) -> SeenTexels:
    """Seen texels whose pixel is not on a depth edge or silhouette (other views cover those).

    ``edges``: :func:`depth_edges` of the capture, when the caller has it already.
    """
    seen = seen_texels(surface, capture)
    if edges is None:
        edges = depth_edges(capture)
    col = np.clip(seen.xy[:, 0].astype(np.int64), 0, capture.view.width - 1)
    row = np.clip(seen.xy[:, 1].astype(np.int64), 0, capture.view.height - 1)
    return seen.subset(~edges[row, col])


def render_texture(
    capture: DepthCapture,
    vertices: np.ndarray,
    triangles: np.ndarray,
    uv: np.ndarray,
    uv_triangles: np.ndarray,
    first_triangle: int,
    texture: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How the current texture looks from the capture's view (the target's pixels only).

    ``triangles`` are the target's own; in the capture they start at ``first_triangle``. Returns
    the (H, W, C) picture, the (H, W) mask of target pixels and each pixel's (H, W) texel index
    into the (size, size) texture (-1 elsewhere). UVs are interpolated perspective-correctly.
    """
    height, width = capture.view_depth.shape
    size = texture.shape[0]
    local = capture.raster.triangle.astype(np.int64) - first_triangle
    mask = (local >= 0) & (local < len(triangles))
    picture = np.zeros((height, width, texture.shape[2]), dtype=np.float32)
    texel = np.full((height, width), -1, dtype=np.int64)
    if not mask.any():
        return picture, mask, texel
    tri = local[mask]
    bary = capture.raster.barycentric[mask].astype(np.float64)
    if not capture.view.is_orthographic:
        inverse_w = 1.0 / np.maximum(
            capture.view.project(vertices[triangles[tri].ravel()]).view_depth.reshape(-1, 3),
            1e-12,
        )
        bary = bary * inverse_w
        bary /= bary.sum(axis=1, keepdims=True)
    pixel_uv = np.einsum("nk,nkc->nc", bary, uv[uv_triangles[tri]])
    xy = np.stack([pixel_uv[:, 0] * size, (1.0 - pixel_uv[:, 1]) * size], axis=1)
    picture[mask] = sample_bilinear(texture, xy)
    col = np.clip(xy[:, 0].astype(np.int64), 0, size - 1)
    row = np.clip(xy[:, 1].astype(np.int64), 0, size - 1)
    texel[mask] = row * size + col
    return picture, mask, texel


def keep_mask(
    state: TextureState, surface_index_of_texel: np.ndarray, pixel_texel: np.ndarray,
    pixel_facing: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """(H, W) float: 1 where the pixel shows a texel already painted well enough to keep.

    A texel is kept unless this view faces it much more squarely than any view before
    (REFINE_MARGIN), in which case it is regenerated (refined).
    """
    keep = np.zeros(pixel_texel.shape, dtype=np.float32)
    on_target = pixel_texel >= 0
    surface_index = surface_index_of_texel[pixel_texel[on_target]]
    valid = surface_index >= 0
    best = np.zeros(surface_index.shape, dtype=np.float32)
    best[valid] = state.best_facing[surface_index[valid]]
    painted = best > 0
    refine = pixel_facing[on_target] > best + REFINE_MARGIN
    keep[on_target] = (painted & ~refine).astype(np.float32)
    return keep


def pixel_facing(capture: DepthCapture, normals: np.ndarray, first_triangle: int) -> np.ndarray:
    """(H, W) |cosine| between each target pixel's face normal and its view ray (0 elsewhere)."""
    local = capture.raster.triangle.astype(np.int64) - first_triangle
    mask = (local >= 0) & (local < len(normals))
    facing = np.zeros(local.shape, dtype=np.float32)
    view = capture.view
    rows, cols = np.nonzero(mask)
    if view.is_orthographic:
        ray = np.broadcast_to(view.forward, (rows.size, 3))
    else:
        inverse = np.linalg.inv(view.projection @ view.world_to_view)
        ndc = np.stack(
            [(cols + 0.5) / view.width * 2 - 1, 1 - (rows + 0.5) / view.height * 2,
             np.ones(rows.size), np.ones(rows.size)], axis=1,
        )  # fmt: skip
        far_point = ndc @ inverse.T
        ray = far_point[:, :3] / far_point[:, 3:] - view.eye
        ray /= np.linalg.norm(ray, axis=1, keepdims=True)
    facing[rows, cols] = np.abs(np.einsum("nc,nc->n", normals[local[mask]], ray))
    return facing


def integrate(
    state: TextureState, seen: SeenTexels, picture: np.ndarray, capture: DepthCapture
) -> ViewRecord:
    """Fold one view's picture into the texture state; returns its new/refined/kept fractions.

    Unpainted texels take the view's colour; texels this view faces more squarely than any view
    before blend in with cos^k weights; the rest are kept, so a worse view never overwrites.
    """
    record = ViewRecord(label="")
    if seen.index.size == 0:
        return record
    color = sample_seen(picture[..., :3], seen, capture)
    index, facing = seen.index, seen.facing
    weight = facing.astype(np.float32) ** FACING_POWER
    painted = state.best_facing[index] > 0
    better = facing > state.best_facing[index]
    new = ~painted
    refine = painted & better
    if painted.any():
        difference = np.abs(color[painted] - state.color[index[painted]]).mean()
        record.overlap_difference = float(difference)

    write = new | refine
    target = index[write]
    old_weight = state.weight[target][:, None]
    new_weight = weight[write][:, None]
    state.color[target] = (old_weight * state.color[target] + new_weight * color[write]) / (
        old_weight + new_weight
    )
    state.weight[target] += weight[write]
    state.best_facing[target] = np.maximum(state.best_facing[target], facing[write])
    total = index.size
    record.new = float(new.sum()) / total
    record.refined = float(refine.sum()) / total
    record.kept = float((painted & ~better).sum()) / total
    return record


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two [0, 1] colour arrays."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)
