"""Painting targets from their views: the pure middle of every run, one view or many.

No bpy, and nothing here reads Blender data, so a UI runs it on a worker thread. Targets that
share views (one view, the user's cameras) are painted together: each view's picture is made
once and projected into every target it shows. An automatic orbit belongs to one target, so
each such target is a group of its own.

Per view: capture the scene's depth, render what earlier views painted to decide what is kept,
ask the picture maker for a picture, fold it into each target's texel record
(:mod:`.blending`), its colours first matched to what earlier views painted when asked
(:mod:`.color_match`). After the last view, texels seen only on depth edges take their best edge
colour, a run of several views fills what no view saw (:mod:`.fill`), and the islands are
padded (:mod:`.margin`). The final texture is rendered from every view again to measure how
faithfully it reproduces each picture (PSNR).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import TextureError
from ..geometry.depth import DepthCapture, capture_depth, depth_for_model
from ..geometry.mesh import MeshArrays, SceneGeometry
from ..geometry.orbit import NamedView
from ..geometry.views import View
from ..progress import Progress
from .blending import TextureState, edge_falloff, falloff_pixels, fold, keep_mask, view_weights
from .color import UNFILLED_GREY
from .color_match import match_view
from .fill import fill_unpainted
from .margin import dilate_margin
from .render import psnr, render_texture, texture_at_pixels
from .sampling import sample_bilinear, sample_seen
from .seams import uv_seam_figure, view_border_figure
from .surface import TexelSurface, shared_texel_fraction
from .visibility import GRAZING_ANGLE_DEG, depth_edges, pixel_facing, seen_texels

log = logging.getLogger(__name__)

# The bottom view is dropped when it sees less than this share of what the top view sees.
MIN_BOTTOM_SHARE = 0.05
# A target painted on less of its texels than this gets a warning in the summary and report.
SPARSE_COVERAGE = 0.01
# Overlapping UVs above this share of texels get a note in the summary and report.
SHARED_NOTE = 0.02
# Shared texels from which overlapping UVs, not the views, explain a target left unpainted.
OVERLAPPING_LAYOUT = 0.5
_COS_GRAZING = float(np.cos(np.radians(GRAZING_ANGLE_DEG)))


@dataclass
class PaintTarget:
    """One object to paint, as arrays read on the main thread."""

    name: str
    mesh: MeshArrays
    first_triangle: int  # where its triangles start in the scene's triangle soup
    surface: TexelSurface
    start: np.ndarray | None = None  # (N, 3) colours a one-view run paints over, per texel


@dataclass
class ViewRequest:
    """What a picture maker gets for one view."""

    index: int  # the view's number in its group (seeds are offset by it)
    label: str
    prompt_hint: str  # words for the prompt ("front view"), empty for the user's cameras
    view: View
    depth: np.ndarray  # (H, W) float32 for the model
    known: np.ndarray  # (H, W, 3) what earlier views painted, seen from this view
    keep: np.ndarray  # (H, W) float32, 1 where earlier views painted well enough to keep
    targets: tuple[str, ...] = ()  # the targets this view paints (for the run record)


PictureMaker = Callable[[ViewRequest], np.ndarray]


@dataclass
class TargetReport:
    """The run's record for one target (the report's ``objects`` entries)."""

    name: str
    views: list[dict] = field(default_factory=list)
    coverage_before_fill: float = 0.0
    shared_texels: float = 0.0  # share of texels several faces cover (overlapping UVs)
    edge_texels: int = 0
    fill_rings: int = 0
    psnr_per_view: dict[str, float] = field(default_factory=dict)
    colour_spread: float | None = None
    # UV-seam and view-border discontinuity on the texels the run painted (.seams).
    seams: dict[str, dict] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Painted:
    """One target's result: its texture and what the run knows about it."""

    texture: np.ndarray  # (S, S, C) float32 sRGB, row 0 at the top
    painted: np.ndarray  # (S, S) bool, texels this run's views painted (before any fill)
    report: TargetReport
    dominant: np.ndarray | None = None  # (S, S) int16 the view weighing most per texel, or -1

    @property
    def coverage(self) -> float:
        return self.report.coverage_before_fill


@dataclass
class _Progressing:
    """One target's state while its group's views are painted."""

    target: PaintTarget
    state: TextureState
    normals: np.ndarray
    report: TargetReport
    # Per painted view: its capture, picture and the pixels the view could use.
    done: list[tuple[str, DepthCapture, np.ndarray, np.ndarray]] = field(default_factory=list)
    # Made when a later view first needs them, so a run of one view never builds them.
    _surface_index: np.ndarray | None = None
    _current: np.ndarray | None = None

    @classmethod
    def begin(cls, target: PaintTarget) -> _Progressing:
        surface = target.surface
        if target.start is None:
            state = TextureState.empty(surface.texel.size, UNFILLED_GREY)
        else:
            state = TextureState.over(target.start)
        return cls(
            target=target,
            state=state,
            # The surface holds the same unit normals face_normals would compute again.
            normals=surface.triangle_normal.astype(np.float32),
            report=TargetReport(name=target.name),
        )

    @property
    def surface_index(self) -> np.ndarray:
        """(S * S,) texel -> surface index, -1 off the islands."""
        if self._surface_index is None:
            surface = self.target.surface
            index = np.full(surface.size * surface.size, -1, dtype=np.int64)
            index[surface.texel] = np.arange(surface.texel.size)
            self._surface_index = index
        return self._surface_index

    @property
    def current(self) -> np.ndarray:
        """(S, S, C) the texture as painted so far (kept up to date once made)."""
        if self._current is None:
            self._current = _texture(self.target.surface, self.state.color)
        return self._current

    def painted_over(self, index: np.ndarray) -> None:
        """Bring :attr:`current` up to date where the state's colours ``index`` changed."""
        if self._current is not None:
            texel = self.target.surface.texel[index]
            self._current.reshape(-1, self.state.channels)[texel] = self.state.color[index]

    def pixels(self, capture: DepthCapture) -> np.ndarray:
        """(H, W) bool: the view's pixels that show this target."""
        local = capture.raster.triangle.astype(np.int64) - self.target.first_triangle
        return (local >= 0) & (local < self.target.mesh.triangles.shape[0])


def _texture(surface: TexelSurface, colors: np.ndarray) -> np.ndarray:
    """(S, S, C) float32: ``colors`` on the surface's texels, the unfilled grey elsewhere."""
    size, channels = surface.size, colors.shape[1]
    texture = np.full((size, size, channels), UNFILLED_GREY, dtype=np.float32)
    texture.reshape(-1, channels)[surface.texel] = colors
    return texture


def paint_group(
    targets: list[PaintTarget],
    views: list[NamedView],
    geometry: SceneGeometry,
    make_picture: PictureMaker,
    *,
    fill: bool,
    margin: int,
    captures: dict[int, DepthCapture] | None = None,
    progress: Progress | None = None,
    match_colors: bool = False,
    falloff: bool = True,
) -> tuple[dict[str, Painted], np.ndarray | None]:
    """Paint ``targets`` from ``views`` in order; returns each target's result and the depth
    map of the last view that was painted (what the model, or the projection, last saw).

    ``captures``: depth captures of some views already made (by view index). ``fill``: texels
    no view saw are filled over the mesh (runs of several views); otherwise they keep the
    colour the run started from. ``match_colors``: each view's colours are fitted to what the
    views before it painted (:func:`.color_match.match_view`) before they are folded in.
    ``falloff=False``: plain cos^k weights without the edge fall-off (for comparisons).
    Raises :class:`TextureError` when no view sees any target.
    """
    progress = progress or Progress()
    states = [_Progressing.begin(target) for target in targets]
    last_depth = None
    top_pixels = None
    for number, named in enumerate(views):
        progress.check("between views")
        with progress.span(number / len(views), (number + 1) / len(views),
                           f"View {number + 1}/{len(views)} ({named.label})"):  # fmt: skip
            depth = _paint_view(
                number,
                named,
                states,
                geometry,
                make_picture,
                captures,
                progress,
                top_pixels,
                match_colors,
                falloff,
            )
        if depth is None:
            continue
        last_depth, seen_pixels = depth
        if named.label == "top":
            top_pixels = seen_pixels
    if all(not progressing.report.views for progressing in states):
        names = ", ".join(f"'{target.name}'" for target in targets)
        raise TextureError(f"{names} is not visible from any of the views.")
    return {p.target.name: _finish(p, fill, margin) for p in states}, last_depth


def _paint_view(
    number: int,
    named: NamedView,
    states: list[_Progressing],
    geometry: SceneGeometry,
    make_picture: PictureMaker,
    captures: dict[int, DepthCapture] | None,
    progress: Progress,
    top_pixels: int | None,
    match_colors: bool = False,
    use_falloff: bool = True,
) -> tuple[np.ndarray, int] | None:
    """One view of a group; returns its depth map and how many target pixels it saw, or None
    when it was skipped."""
    start = time.perf_counter()
    capture = (captures or {}).get(number)
    if capture is None:
        capture = capture_depth(named.view, geometry.vertices, geometry.triangles)
    on_target = [progressing.pixels(capture) for progressing in states]
    seen_pixels = int(sum(int(mask.sum()) for mask in on_target))
    if named.label == "bottom" and seen_pixels < MIN_BOTTOM_SHARE * (top_pixels or 1):
        for progressing in states:
            progressing.report.notes.append(
                "bottom view skipped: the object is not seen from below"
            )
        return None
    visible = [p for p, mask in zip(states, on_target, strict=True) if mask.any()]
    for progressing in states:
        if progressing not in visible:
            progressing.report.notes.append(
                f"{named.label} view skipped: the object is not visible in it"
            )
    if not visible:
        return None
    depth = depth_for_model(capture)
    edges = depth_edges(capture)
    height, width = depth.shape
    known = np.zeros((height, width, 3), dtype=np.float32)
    keep = np.zeros((height, width), dtype=np.float32)
    accepted = {}
    for progressing, mask in zip(states, on_target, strict=True):
        if not mask.any():
            continue
        target = progressing.target
        facing = pixel_facing(capture, progressing.normals, target.first_triangle)
        accepted[target.name] = mask & ~edges & (facing >= _COS_GRAZING)
        if progressing.state.painted.any():  # nothing to keep before the first painted view
            rendered, _, pixel_texel = render_texture(
                capture, target.mesh.vertices, target.mesh.triangles, target.mesh.uv,
                target.mesh.uv_triangles, target.first_triangle, progressing.current,
            )  # fmt: skip
            known[mask] = rendered[mask][:, :3]
            keep = np.maximum(
                keep, keep_mask(progressing.state, progressing.surface_index, pixel_texel, facing)
            )
    seconds = {"views": time.perf_counter() - start}

    start = time.perf_counter()
    with progress.span(0.02, 0.95):
        names = tuple(progressing.target.name for progressing in visible)
        hint = named.prompt_hint
        picture = make_picture(
            ViewRequest(number, named.label, hint, named.view, depth, known, keep, names)
        )
    seconds["picture"] = time.perf_counter() - start

    start = time.perf_counter()
    falloff = edge_falloff(edges, falloff_pixels(height, width)) if use_falloff else None
    seconds["falloff"] = time.perf_counter() - start
    for progressing in visible:
        start = time.perf_counter()
        target, state = progressing.target, progressing.state
        seen = seen_texels(target.surface, capture)
        col = np.clip(seen.xy[:, 0].astype(np.int64), 0, capture.view.width - 1)
        row = np.clip(seen.xy[:, 1].astype(np.int64), 0, capture.view.height - 1)
        pixel = row * capture.view.width + col
        on_edge = np.take(edges.ravel(), pixel)
        reliable, edge_only = seen.subset(~on_edge), seen.subset(on_edge)
        color = sample_seen(picture[..., : state.channels], reliable, capture)
        blend_start = time.perf_counter()
        view_picture, correction = picture, None
        if match_colors:
            overlap = np.flatnonzero(state.painted[reliable.index])
            correction = match_view(color[overlap], state.color[reliable.index[overlap]])
            if correction.applied:
                color = correction.apply(color)
                view_picture = correction.apply(picture)
        weight = view_weights(reliable, falloff, None if falloff is None else pixel[~on_edge])
        record = fold(state, reliable, color, weight, number)
        record.color_match = correction.as_record() if correction is not None else None
        blend_seconds = time.perf_counter() - blend_start
        if edge_only.index.size:
            edge_color = sample_seen(view_picture[..., : state.channels], edge_only, capture)
            state.note_edges(edge_only, edge_color)
        progressing.painted_over(reliable.index)
        record.label = named.label
        record.coverage = reliable.index.size / max(target.surface.texel.size, 1)
        record.seconds = {
            **seconds,
            "projection": time.perf_counter() - start,
            "blend": blend_seconds,
        }
        progressing.report.views.append(asdict(record))
        progressing.done.append((named.label, capture, view_picture, accepted[target.name]))
    return depth, seen_pixels


def _finish(progressing: _Progressing, fill: bool, margin: int) -> Painted:
    """Edges, fill, margin and the re-render check for one target after its last view."""
    start = time.perf_counter()
    target, state, report = progressing.target, progressing.state, progressing.report
    surface = target.surface
    size = surface.size
    report.edge_texels = state.paint_edges()
    painted = state.painted
    report.coverage_before_fill = float(painted.mean()) if painted.size else 0.0
    colors = state.color
    if fill and painted.any() and not painted.all():
        colors, report.fill_rings = fill_unpainted(
            surface, state, target.mesh.triangles, target.mesh.vertices.shape[0]
        )
    progressing._current = None  # the texture below replaces it: free it first
    texture = dilate_margin(_texture(surface, colors), surface.mask, margin, in_place=True)
    mask = np.zeros(size * size, dtype=bool)
    mask[surface.texel[painted]] = True
    report.seconds["fill"] = time.perf_counter() - start

    start = time.perf_counter()
    report.psnr_per_view = {
        label: _rerender_psnr(capture, picture, accepted, target, texture)
        for label, capture, picture, accepted in progressing.done
    }
    spreads = [v["overlap_difference"] for v in report.views if v["overlap_difference"] is not None]
    report.colour_spread = float(np.mean(spreads)) if spreads else None
    report.seconds["report"] = time.perf_counter() - start
    start = time.perf_counter()
    dominant = np.full(size * size, -1, dtype=np.int16)
    dominant[surface.texel] = state.dominant
    dominant = dominant.reshape(size, size)
    report.seams = _seam_figures(target, texture, dominant, mask.reshape(size, size))
    report.seconds["seams"] = time.perf_counter() - start
    report.shared_texels = shared_texel_fraction(surface, target.mesh.uv, target.mesh.uv_triangles)
    if report.shared_texels > SHARED_NOTE:
        report.notes.append(
            f"{report.shared_texels:.0%} of the texels of '{target.name}' are shared by several "
            "faces (overlapping or mirrored UVs): each shows the colour painted for one of them"
        )
    if 0 < report.coverage_before_fill < SPARSE_COVERAGE:
        report.notes.append(
            f"only {report.coverage_before_fill:.2%} of '{target.name}' was painted: the views "
            "see it edge-on or very small"
        )
    return Painted(
        texture=texture, painted=mask.reshape(size, size), report=report, dominant=dominant
    )


def _seam_figures(
    target: PaintTarget, texture: np.ndarray, dominant: np.ndarray, painted: np.ndarray
) -> dict[str, dict]:
    """The run's UV-seam and view-border figures on the texels it painted (see .seams)."""
    mesh = target.mesh
    return {
        "uv_seam": uv_seam_figure(
            texture, mesh.vertices, mesh.triangles, mesh.uv, mesh.uv_triangles, painted
        ).as_record(),
        "view_border": view_border_figure(texture, dominant, painted).as_record(),
    }


def not_painted_message(name: str, report: TargetReport) -> str:
    """Why a target got no texel at all, in one line: with UVs that mostly overlap, each texel
    holds the point of one face only (the one drawn last), and those faces were not seen; else
    the views saw the target only edge-on or not at all."""
    if report.shared_texels >= OVERLAPPING_LAYOUT:
        return (
            f"'{name}' was not painted: its UVs overlap ({report.shared_texels:.0%} of its texels "
            "are shared by several faces), so each texel shows one of those faces, and the views "
            "do not see them: unwrap it without overlaps (UV > Smart UV Project) (nothing was "
            "written)."
        )
    return (
        f"'{name}' was not painted: the views see it only edge-on or not at all "
        "(nothing was written)."
    )


def _rerender_psnr(
    capture: DepthCapture,
    picture: np.ndarray,
    accepted: np.ndarray,
    target: PaintTarget,
    texture: np.ndarray,
) -> float:
    """PSNR of the final texture seen from a view against that view's picture, over the pixels
    the view could use (``accepted``: on the target, not grazing, not on a depth edge).

    Only those pixels are rendered: the same numbers a whole render gives there, for less.
    """
    if not accepted.any():
        return float("nan")
    mesh = target.mesh
    rows, cols = np.nonzero(accepted)
    pixels = rows * accepted.shape[1] + cols
    rendered = texture_at_pixels(
        capture, mesh.uv, mesh.uv_triangles, target.first_triangle, texture, pixels
    )
    scale = np.array([picture.shape[1] / accepted.shape[1], picture.shape[0] / accepted.shape[0]])
    centres = np.stack([cols + 0.5, rows + 0.5], axis=1) * scale  # the picture may be any size
    return psnr(rendered[:, :3], sample_bilinear(picture[..., :3], centres))
