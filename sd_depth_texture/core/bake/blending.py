"""The one blending rule: how the views of a run fold into one texture, texel by texel.

No bpy. A texel's final colour is the weighted mean of every view that saw it well, whatever
the order the views ran in: each view weighs cos^k (detail comes from the views that face the
surface) times an edge fall-off that goes from 0 at the view's silhouettes, depth edges and
frame to 1 a few pixels inside, so no view ends abruptly inside a surface and two views that
disagree fade into each other instead of meeting at a cut.

What a view keeps while it is denoised is a separate decision (:func:`keep_mask`): texels an
earlier view saw are kept unless this view faces them much more squarely (REFINE_MARGIN), so
later views agree with earlier ones; :attr:`TextureState.best_facing` records that.

A run from one view paints over the texture it finds: those colours count as one earlier view
seen at :data:`START_ANGLE_DEG`, so a square view replaces them and a grazing one fades into
them. A run from several views starts empty. Texels seen only on a depth edge (where a picture's
colour is least reliable) are painted last, from the best such view, and only if no view saw
them well.

Colours are (N, C): the picture's colour first, any further channels (maps) after it; what is
kept and matched is decided on the first three.
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

# A view's weight rises from 0 at its silhouettes, depth edges and frame to full this share of
# the view's short side inside (10 pixels at 512^2).
EDGE_FALLOFF_SHARE = 0.02

COLOR_CHANNELS = 3  # the channels keep/known and colour matching look at


@dataclass
class TextureState:
    """The texture being built, per surface texel (the order of a :class:`TexelSurface`)."""

    color: np.ndarray  # (N, C) float32 sRGB: the weighted mean of the views so far
    weight: np.ndarray  # (N,) float32, sum of the weights of the views that wrote the texel
    best_facing: np.ndarray  # (N,) float32 cosine of the most square view so far; 0 = unpainted
    # The view with the largest weight at each texel (-1: none), for the view-border figures.
    dominant: np.ndarray | None = None  # (N,) int16
    dominant_weight: np.ndarray | None = None  # (N,) float32

    # Texels seen only on depth edges: the colour of the most square such sighting.
    edge_color: np.ndarray | None = None  # (N, C) float32
    edge_facing: np.ndarray | None = None  # (N,) float32; 0 = never seen on an edge
    # Empty and no view folded in yet: the first view's colours go in without blending.
    untouched: bool = False

    def __post_init__(self) -> None:
        count = self.weight.shape[0]
        if self.dominant is None:
            self.dominant = np.full(count, -1, dtype=np.int16)
            self.dominant_weight = np.zeros(count, dtype=np.float32)

    @classmethod
    def empty(cls, count: int, grey: float = 0.5, channels: int = 3) -> TextureState:
        return cls(
            color=np.full((count, channels), grey, dtype=np.float32),
            weight=np.zeros(count, dtype=np.float32),
            best_facing=np.zeros(count, dtype=np.float32),
            untouched=True,
        )

    @classmethod
    def over(cls, colors: np.ndarray, channels: int = 3, grey: float = 0.5) -> TextureState:
        """A state that paints over existing (N, >= 3) colours (see :data:`START_ANGLE_DEG`);
        channels beyond the colours' own start grey."""
        count = colors.shape[0]
        start_weight = np.float32(np.cos(np.radians(START_ANGLE_DEG)) ** FACING_POWER)
        color = np.full((count, channels), grey, dtype=np.float32)
        given = min(channels, COLOR_CHANNELS, colors.shape[1])
        color[:, :given] = colors[:, :given]
        return cls(
            color=color,
            weight=np.full(count, start_weight, dtype=np.float32),
            best_facing=np.zeros(count, dtype=np.float32),
        )

    @property
    def channels(self) -> int:
        return self.color.shape[1]

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
    # Fractions of the texels this view could use, by the keep/refine decision: never painted
    # before, seen much more squarely than before (regenerated), or kept (only blended in).
    new: float = 0.0
    refined: float = 0.0
    kept: float = 0.0
    overlap_difference: float | None = None  # mean |new - old| colour where already painted
    # The colour correction fitted before the view was folded in (see .color_match), or None.
    color_match: dict | None = None
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


def falloff_pixels(height: int, width: int) -> int:
    """How many pixels a view's weight takes to rise from 0 at an edge to full."""
    return max(1, round(EDGE_FALLOFF_SHARE * min(height, width)))


def edge_falloff(edges: np.ndarray, pixels: int) -> np.ndarray:
    """(H, W) float32 in [0, 1]: 0 on ``edges`` (silhouettes, depth edges) and on the frame,
    rising linearly with the distance from them to 1 at ``pixels`` away.

    The distance is the chessboard distance, found by growing the edges one pixel at a time
    (``pixels`` separable 3x3 dilations of a boolean image: a few milliseconds at 512^2).
    """
    height, width = edges.shape
    reached = np.pad(edges, 1, constant_values=True)  # the frame counts as an edge
    distance = np.zeros((height, width), dtype=np.float32)
    grown = np.empty_like(reached)
    for _ in range(pixels):
        distance += ~reached[1:-1, 1:-1]
        grown[:] = reached
        grown[:, 1:] |= reached[:, :-1]
        grown[:, :-1] |= reached[:, 1:]
        reached[:] = grown
        reached[1:] |= grown[:-1]
        reached[:-1] |= grown[1:]
    distance *= np.float32(1.0 / pixels)
    return distance


def view_weights(
    seen: SeenTexels, falloff: np.ndarray | None = None, pixel: np.ndarray | None = None
) -> np.ndarray:
    """(M,) float32 weights of a view's seen texels: cos^k, times the edge fall-off at each
    texel's pixel (``pixel``: flat pixel indices into ``falloff``) when given."""
    weight = np.asarray(seen.facing, dtype=np.float32) ** FACING_POWER
    if falloff is not None:
        weight *= np.take(falloff.ravel(), pixel)
    return weight


def integrate(
    state: TextureState,
    seen: SeenTexels,
    picture: np.ndarray,
    capture: DepthCapture,
    *,
    falloff: np.ndarray | None = None,
    view: int = 0,
) -> ViewRecord:
    """Fold one view's picture into the texture state (see :func:`fold`), sampling it at the
    seen texels; ``falloff``: the view's :func:`edge_falloff` (None: plain cos^k weights)."""
    if seen.index.size == 0:
        return ViewRecord(label="")
    color = sample_seen(picture[..., : state.channels], seen, capture)
    pixel = None
    if falloff is not None:
        col = np.clip(seen.xy[:, 0].astype(np.int64), 0, falloff.shape[1] - 1)
        row = np.clip(seen.xy[:, 1].astype(np.int64), 0, falloff.shape[0] - 1)
        pixel = row * falloff.shape[1] + col
    return fold(state, seen, color, view_weights(seen, falloff, pixel), view)


def fold(
    state: TextureState, seen: SeenTexels, color: np.ndarray, weight: np.ndarray, view: int = 0
) -> ViewRecord:
    """Fold one view's (M, C) colours at its seen texels into the state with ``weight``.

    Every texel the view sees takes part: the state holds the weighted mean of all views so far,
    so the final colour does not depend on the order of the views. The record says how the
    keep/refine decision (:func:`keep_mask`) went for these texels.
    """
    record = ViewRecord(label="")
    if seen.index.size == 0:
        return record
    index, facing = seen.index, seen.facing
    if state.untouched:  # the first view of an empty state: its colours as they are
        state.untouched = False
        state.color[index] = color
        state.weight[index] = weight
        state.best_facing[index] = facing
        state.dominant[index] = view
        state.dominant_weight[index] = weight
        record.new = 1.0
        return record
    best = state.best_facing[index]
    painted = best > 0
    if painted.any():
        first = min(COLOR_CHANNELS, state.channels)
        difference = np.abs(color[painted, :first] - state.color[index[painted], :first]).mean()
        record.overlap_difference = float(difference)

    # (old weight * old colour + new weight * new colour) / (old weight + new weight), worked
    # out in place in the colour arrays this function owns.
    old_weight = state.weight[index]
    total = old_weight + weight
    blended = state.color[index]
    blended *= (old_weight / total)[:, None]
    blended += color * (weight / total)[:, None]
    state.color[index] = blended
    state.weight[index] = total
    state.best_facing[index] = np.maximum(best, facing)
    stronger = weight > state.dominant_weight[index]
    state.dominant[index[stronger]] = view
    state.dominant_weight[index[stronger]] = weight[stronger]

    count = seen.index.size
    refine = painted & (facing > best + REFINE_MARGIN)
    record.new = float((~painted).sum()) / count
    record.refined = float(refine.sum()) / count
    record.kept = float((painted & ~refine).sum()) / count
    return record
