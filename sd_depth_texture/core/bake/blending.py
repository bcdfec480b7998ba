"""The one blending rule: how the views of a run fold into one texture, texel by texel.

No bpy. One view or many, a texel's colour is the cos^k-weighted mean of the views that wrote
it, and a per-texel record of the best facing so far makes sure a later, worse view never
overwrites a better one (cos^k rather than a fixed fade: detail comes from the views that face
the surface, and where two views overlap their border does not show as a seam). Pixels already
painted well are kept during denoising, pixels never painted are generated, pixels seen much
more squarely than before are refined.

A run from one view paints over the texture it finds: those colours count as one earlier view
seen at :data:`START_ANGLE_DEG`, so a square view replaces them and a grazing one fades into
them. A run from several views starts empty. Texels seen only on a depth edge (where a picture's
colour is least reliable) are painted last, from the best such view, and only if no view saw
them well.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..geometry.depth import DepthCapture
from .sampling import sample_seen
from .visibility import SeenTexels

FACING_POWER = 4  # weights cos^k: detail comes from the views that face the surface

REFINE_MARGIN = 0.3  # a view refines a texel when its cosine beats the best so far by this
START_ANGLE_DEG = 60.0  # how squarely the texture a one-view run paints over counts as seen


@dataclass
class TextureState:
    """The texture being built, per surface texel (the order of a :class:`TexelSurface`)."""

    color: np.ndarray  # (N, 3) float32 sRGB
    weight: np.ndarray  # (N,) float32, sum of cos^k of the views that wrote the texel
    best_facing: np.ndarray  # (N,) float32 cosine of the most square view so far; 0 = unpainted

    # Texels seen only on depth edges: the colour of the most square such sighting.
    edge_color: np.ndarray | None = None  # (N, 3) float32
    edge_facing: np.ndarray | None = None  # (N,) float32; 0 = never seen on an edge

    @classmethod
    def empty(cls, count: int, grey: float = 0.5) -> TextureState:
        return cls(
            color=np.full((count, 3), grey, dtype=np.float32),
            weight=np.zeros(count, dtype=np.float32),
            best_facing=np.zeros(count, dtype=np.float32),
        )

    @classmethod
    def over(cls, colors: np.ndarray) -> TextureState:
        """A state that paints over existing (N, 3) colours (see :data:`START_ANGLE_DEG`)."""
        count = colors.shape[0]
        start_weight = np.float32(np.cos(np.radians(START_ANGLE_DEG)) ** FACING_POWER)
        return cls(
            color=np.ascontiguousarray(colors[:, :3], dtype=np.float32),
            weight=np.full(count, start_weight, dtype=np.float32),
            best_facing=np.zeros(count, dtype=np.float32),
        )

    @property
    def painted(self) -> np.ndarray:
        """Texels this run's views painted (the texture it started from does not count)."""
        return self.best_facing > 0

    def note_edges(self, seen: SeenTexels, color: np.ndarray) -> None:
        """Remember edge sightings (``seen`` on depth edges, ``color`` sampled there)."""
        if self.edge_color is None:
            self.edge_color = np.zeros_like(self.color)
            self.edge_facing = np.zeros(self.color.shape[0], dtype=np.float32)
        better = seen.facing > self.edge_facing[seen.index]
        self.edge_color[seen.index[better]] = color[better]
        self.edge_facing[seen.index[better]] = seen.facing[better]

    def paint_edges(self) -> int:
        """Fold in the best edge sighting of texels no view saw well (by the same cos^k rule,
        so over an old texture they blend as any other view would); returns how many."""
        if self.edge_facing is None:
            return 0
        only_edge = np.flatnonzero((self.best_facing == 0) & (self.edge_facing > 0))
        facing = self.edge_facing[only_edge]
        weight = facing**FACING_POWER
        old_weight = self.weight[only_edge]
        self.color[only_edge] = (
            old_weight[:, None] * self.color[only_edge]
            + weight[:, None] * self.edge_color[only_edge]
        ) / (old_weight + weight)[:, None]
        self.weight[only_edge] += weight
        self.best_facing[only_edge] = facing
        return int(only_edge.size)


@dataclass
class ViewRecord:
    """What one view did, for the run's report."""

    label: str
    coverage: float = 0.0  # fraction of the target's texels this view saw well
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
    weight = np.asarray(facing, dtype=np.float32) ** FACING_POWER
    best = state.best_facing[index]
    painted = best > 0
    better = facing > best
    new = ~painted
    refine = painted & better
    if painted.any():
        difference = np.abs(color[painted] - state.color[index[painted]]).mean()
        record.overlap_difference = float(difference)

    write = new | refine
    if not write.all():  # the first view writes every texel it sees: nothing to pick out
        index, facing, weight, color, best = (
            values[write] for values in (index, facing, weight, color, best)
        )
    # (old weight * old colour + new weight * new colour) / (old weight + new weight), worked
    # out in place in the colour arrays this function owns.
    old_weight = state.weight[index][:, None]
    new_weight = weight[:, None]
    blended = state.color[index]
    blended *= old_weight
    color *= new_weight
    blended += color
    blended /= old_weight + new_weight
    state.color[index] = blended
    state.weight[index] += weight
    state.best_facing[index] = np.maximum(best, facing)
    total = seen.index.size
    record.new = float(new.sum()) / total
    record.refined = float(refine.sum()) / total
    record.kept = float((painted & ~better).sum()) / total
    return record
