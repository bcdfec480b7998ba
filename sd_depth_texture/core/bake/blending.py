"""The one blending rule: how the views of a run fold into one texture, texel by texel.

No bpy. A per-texel record of the best facing so far makes sure a later, worse view never
overwrites a better one; where a better view does write, colours blend with cos^k weights so
view borders do not show as seams. Pixels already painted well are kept during denoising,
pixels never painted are generated, pixels seen much more squarely than before are refined.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..geometry.depth import DepthCapture
from .sampling import sample_seen
from .surface import TexelSurface
from .visibility import GRAZING_ANGLE_DEG, SeenTexels, seen_texels

FACING_POWER = 4  # weights cos^k: detail comes from the views that face the surface

REFINE_MARGIN = 0.3  # a view refines a texel when its cosine beats the best so far by this


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


FULL_ANGLE_DEG = 60.0


@dataclass
class ViewSamples:
    """The texels one view saw: indices into a :class:`TexelSurface`, colours and facing."""

    index: np.ndarray  # (M,) indices into the surface's arrays
    color: np.ndarray  # (M, C) float32 sampled from the view's image
    facing: np.ndarray  # (M,) float32 cosine between the surface normal and the view ray


def project_view(surface: TexelSurface, capture: DepthCapture, image: np.ndarray) -> ViewSamples:
    """Sample ``image`` (the view's picture, any size with the view's aspect) for visible texels."""
    seen = seen_texels(surface, capture)
    return ViewSamples(
        index=seen.index, color=sample_seen(image, seen, capture), facing=seen.facing
    )


def facing_weight(facing: np.ndarray) -> np.ndarray:
    """1 for surfaces within FULL_ANGLE of the view, easing to 0 at GRAZING_ANGLE (smoothstep)."""
    low = np.cos(np.radians(GRAZING_ANGLE_DEG))
    high = np.cos(np.radians(FULL_ANGLE_DEG))
    t = np.clip((facing - low) / (high - low), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def blend_into_texture(
    texture: np.ndarray, surface: TexelSurface, samples: ViewSamples
) -> tuple[np.ndarray, np.ndarray]:
    """Write a view's RGB samples over a (size, size, 4) texture, easing out towards grazing angles.

    Alpha accumulates coverage (1 where a view painted squarely, 0 where none did). Returns the
    new texture and a (size, size) mask of the texels that received colour.
    """
    flat = np.array(texture, dtype=np.float32).reshape(-1, 4)
    texel = surface.texel[samples.index]
    alpha = facing_weight(samples.facing)[:, None]
    flat[texel, :3] = alpha * samples.color[:, :3] + (1.0 - alpha) * flat[texel, :3]
    flat[texel, 3:] = alpha + (1.0 - alpha) * flat[texel, 3:]
    written = np.zeros(flat.shape[0], dtype=bool)
    written[texel[alpha[:, 0] > 0]] = True
    return flat.reshape(texture.shape), written.reshape(texture.shape[:2])
