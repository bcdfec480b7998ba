"""Multi-view projection of known images against Cycles, on the Spot cow (issue #3).

The cow is rendered unlit by Cycles from the ten automatic views, the renders are projected
back with the project-image path (the flow with given pictures), and the written
texture is compared with what Cycles was shown:

- coverage: the share of UV-island texels some view saw (each view's reliable texels, plus
  those only ever seen on a depth edge), and PSNR against the original texture over the
  reliable ones;
- seams: both sides of every UV seam edge get the same colour, after projection and where the
  mesh fill paints parts no view saw;
- the ``project`` command line with several ``--image``/``--camera`` pairs.

Two pictures are projected. The cow's own painted texture is the real asset, but its artist kept
the seams in flat cream areas, so it barely tests seams; a smooth colour field over 3D space
(continuous across seams by construction, varying everywhere) makes the seam checks bite.

Figures are printed (run with ``-s``). The renders are made once per module; the whole file takes
well under a minute on two CPU cores.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np
import pytest
from mathutils import Euler
from support import SPOT_COW, cycles_render, runs

from sd_depth_texture.blender import flow, images, scene
from sd_depth_texture.blender.pictures import load_picture
from sd_depth_texture.blender.targets import texture_name
from sd_depth_texture.cli import main as cli
from sd_depth_texture.core.bake.color import UNFILLED_GREY
from sd_depth_texture.core.bake.margin import dilate_margin
from sd_depth_texture.core.bake.paint import TargetReport
from sd_depth_texture.core.bake.sampling import sample_bilinear
from sd_depth_texture.core.bake.surface import TexelSurface, texel_surface
from sd_depth_texture.core.bake.visibility import reliable_texels, seen_texels
from sd_depth_texture.core.geometry.depth import capture_depth
from sd_depth_texture.core.geometry.mesh import MeshArrays
from sd_depth_texture.core.geometry.orbit import NamedView, look_at, perspective
from sd_depth_texture.core.geometry.views import View

pytestmark = pytest.mark.skipif(
    not (SPOT_COW / "cow.obj").is_file() or not (SPOT_COW / "cow_texture.png").is_file(),
    reason=f"the Spot cow asset (cow.obj, cow_texture.png) is not at {SPOT_COW}",
)

VIEW_COUNT = 10  # the automatic views: a ring of 8, top, bottom
RESOLUTION = 512  # render size (square, like the automatic views)
SAMPLES = 8  # Cycles samples per pixel: a lightly filtered, nearly noise-free emission render
FILTER_WIDTH = 1.0  # Blackman-Harris width in pixels, a little narrower than Blender's 1.5
TEXTURE_SIZE = 1024  # the asset's own size: the original is compared without resampling
# The first three automatic views (front, front right, front left, all from -Y, which is this
# cow's rear: it faces +Y): the rest of the cow is left to the fill.
FRONT_VIEWS = 3
# The field: per channel a plane wave over world space, this many periods per unit (the cow is
# ~1.7 units long), along axes rotated by FIELD_ROTATION, phases FIELD_PHASE (radians).
FIELD_FREQUENCY = 0.6
FIELD_ROTATION = (0.6, 0.4, 0.9)
FIELD_PHASE = (0.0, 1.0, 2.0)
# Each side of a seam is sampled this many texels into its triangle; the colour on the edge
# itself is extrapolated linearly from the two, so a smooth gradient across the edge is not
# mistaken for a seam.
SEAM_OFFSETS = (1.5, 3.0)
SEAM_FRACTIONS = (0.25, 0.5, 0.75)  # where along each seam edge


# --------------------------------------------------------------------------------------------
# Scene, cameras, renders


def import_cow() -> bpy.types.Object:
    """An empty file holding only the cow (Z up, default OBJ axes)."""
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.wm.obj_import(filepath=str(SPOT_COW / "cow.obj"))
    (cow,) = bpy.context.selected_objects
    assert len(cow.data.vertices) == 2930 and len(cow.data.polygons) == 5856
    return cow


def automatic_views(cow: bpy.types.Object) -> list[NamedView]:
    return flow.orbit_for(cow, VIEW_COUNT, RESOLUTION)


def cameras_for(views: list[NamedView]) -> list[bpy.types.Object]:
    """One camera per view, named after it, rendering exactly that view."""
    return [
        cycles_render.camera_from_view(named.label, named.view.world_to_view, named.view.projection)
        for named in views
    ]


def field_material(obj: bpy.types.Object) -> bpy.types.Material:
    """Show the colour field unlit: emission of 0.5 + 0.35 sin(R (2 pi f p) + phase) per channel.

    ``p`` is the world-space position (the importer leaves the cow rotated by its object
    transform, so object space would differ); :func:`field_colour` is the same in numpy.
    """
    material = bpy.data.materials.new(f"{obj.name} field")
    if material.node_tree is None:
        material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    geometry = nodes.new("ShaderNodeNewGeometry")
    mapping = nodes.new("ShaderNodeMapping")
    mapping.vector_type = "POINT"
    mapping.inputs["Location"].default_value = FIELD_PHASE
    mapping.inputs["Rotation"].default_value = FIELD_ROTATION
    mapping.inputs["Scale"].default_value = (2 * math.pi * FIELD_FREQUENCY,) * 3
    sine = nodes.new("ShaderNodeVectorMath")
    sine.operation = "SINE"
    scale = nodes.new("ShaderNodeVectorMath")
    scale.operation = "MULTIPLY_ADD"
    scale.inputs[1].default_value = (0.35, 0.35, 0.35)
    scale.inputs[2].default_value = (0.5, 0.5, 0.5)
    emission = nodes.new("ShaderNodeEmission")
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(geometry.outputs["Position"], mapping.inputs["Vector"])
    links.new(mapping.outputs["Vector"], sine.inputs[0])
    links.new(sine.outputs["Vector"], scale.inputs[0])
    links.new(scale.outputs["Vector"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    obj.data.materials.clear()
    obj.data.materials.append(material)
    return material


def field_colour(points: np.ndarray) -> np.ndarray:
    """The field's display colour (sRGB, as the 'Standard' view transform writes it) at points."""
    rotation = np.array(Euler(FIELD_ROTATION, "XYZ").to_matrix())
    linear = 0.5 + 0.35 * np.sin(
        (2 * np.pi * FIELD_FREQUENCY * np.asarray(points, np.float64)) @ rotation.T
        + np.array(FIELD_PHASE)
    )
    return np.where(
        linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055
    ).astype(np.float32)


@dataclass
class Renders:
    """The automatic views and Cycles' renders of the cow from each, per picture kind."""

    views: list[NamedView]
    pngs: dict[str, list[Path]]  # "texture" | "field" -> one PNG per view, in view order
    pictures: dict[str, list[np.ndarray]]  # the same, loaded as the project loads them
    seconds: float


@pytest.fixture(scope="module")
def renders(tmp_path_factory) -> Renders:
    folder = tmp_path_factory.mktemp("cow_views")
    cow = import_cow()
    views = automatic_views(cow)
    cameras = cameras_for(views)
    context_scene = bpy.context.scene
    cycles_render.use_cycles(
        context_scene, RESOLUTION, RESOLUTION, samples=SAMPLES, filter_width=FILTER_WIDTH
    )
    cycles_render.use_standard_view(context_scene)
    texture = bpy.data.images.load(str(SPOT_COW / "cow_texture.png"))
    materials: dict[str, Callable[[], object]] = {
        "texture": lambda: cycles_render.emission_material(cow, texture),
        "field": lambda: field_material(cow),
    }
    pngs: dict[str, list[Path]] = {}
    clock = time.perf_counter()
    for kind, make_material in materials.items():
        make_material()
        pngs[kind] = []
        for named, camera in zip(views, cameras, strict=True):
            context_scene.camera = camera
            path = folder / f"{kind}_{named.label.replace(' ', '_')}.png"
            pngs[kind].append(cycles_render.render_png(context_scene, path))
    seconds = time.perf_counter() - clock
    pictures = {kind: [load_picture(str(p)) for p in paths] for kind, paths in pngs.items()}
    return Renders(views, pngs, pictures, seconds)


# --------------------------------------------------------------------------------------------
# Projection runs


@dataclass
class Run:
    """One whole-object projection of renders back onto a fresh cow."""

    written: np.ndarray  # (S, S, 4) the texture the run wrote, row 0 at the top
    report: TargetReport
    mesh: MeshArrays
    surface: TexelSurface
    painted: np.ndarray  # (N,) in surface order: texels some view saw (its reliable texels)
    seen: np.ndarray  # (N,) texels some view saw at all (depth edges included)
    seconds: float

    @property
    def island(self) -> np.ndarray:
        return self.surface.mask

    def painted_texels(self) -> np.ndarray:
        """(S, S) bool: the island texels some view saw."""
        mask = np.zeros(self.surface.size**2, dtype=bool)
        mask[self.surface.texel[self.painted]] = True
        return mask.reshape(self.surface.size, self.surface.size)


def seen_by_any(
    surface: TexelSurface, mesh: MeshArrays, views: list[View], reliable: bool = True
) -> np.ndarray:
    """(N,) texels of ``surface`` that at least one view sees (reliably: off depth edges) by
    the project's own test."""
    seen = np.zeros(surface.texel.size, dtype=bool)
    for view in views:
        capture = capture_depth(view, mesh.vertices, mesh.triangles)
        texels = reliable_texels(surface, capture) if reliable else seen_texels(surface, capture)
        seen[texels.index] = True
    return seen


def project_renders(views: list[NamedView], pictures: list[np.ndarray], margin: int = 16) -> Run:
    """The flow with the pictures as given images, on a freshly imported cow."""
    cow = import_cow()
    clock = time.perf_counter()
    outcome = runs.project(
        [cow.name], pictures, views=views, resolution=RESOLUTION, texture_size=TEXTURE_SIZE,
        margin=margin,
    )  # fmt: skip
    seconds = time.perf_counter() - clock
    written = images.image_to_array(bpy.data.images[texture_name(cow.name)])
    mesh = scene.mesh_arrays(cow, bpy.context.evaluated_depsgraph_get())
    surface = texel_surface(mesh.vertices, mesh.triangles, mesh.uv, mesh.uv_triangles, TEXTURE_SIZE)
    painted = seen_by_any(surface, mesh, [named.view for named in views])
    seen = seen_by_any(surface, mesh, [named.view for named in views], reliable=False)
    return Run(written, outcome.reports[0], mesh, surface, painted, seen, seconds)


@pytest.fixture(scope="module")
def project(renders: Renders) -> Callable[[str, int], Run]:
    """``project(kind, count)``: the first ``count`` views' renders of ``kind`` projected back
    (made once per module)."""
    done: dict[tuple[str, int], Run] = {}

    def run(kind: str, count: int) -> Run:
        if (kind, count) not in done:
            done[kind, count] = project_renders(
                renders.views[:count], renders.pictures[kind][:count]
            )
        return done[kind, count]

    return run


@pytest.fixture(scope="module")
def original() -> np.ndarray:
    """The cow's texture as stored, (1024, 1024, 3) sRGB, row 0 at the top."""
    return cycles_render.load_image(SPOT_COW / "cow_texture.png")[..., :3]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for values in [0, 1]."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def near_grey(pixels: np.ndarray) -> np.ndarray:
    """Pixels equal to the unfilled grey in all channels, up to 8-bit rounding."""
    return np.all(np.abs(pixels - UNFILLED_GREY) <= 0.5 / 255 + 1e-6, axis=-1)


def assert_filled(run: Run, reference: np.ndarray) -> None:
    """Every island texel has colour (alpha 1), and none the views did not see (the texels the
    fill colours) is left at the unfilled grey.

    Texels a view saw are left out of the grey test: a projected colour may round to the grey
    itself (measured: one texel of 515,125 on the cow under Blender 4.2, between a bright and a
    dark texel); how close they are to the truth is what the PSNR figures measure.
    """
    island = run.island
    assert np.all(run.written[..., 3][island] == 1.0), "island texels left without colour"
    size = run.surface.size
    seen = np.zeros(size * size, dtype=bool)
    seen[run.surface.texel[run.seen]] = True
    unseen = island & ~seen.reshape(size, size)
    assert unseen.any(), "no unseen texel left to check the fill on"
    grey = near_grey(run.written[..., :3]) & unseen & ~near_grey(reference)
    assert not grey.any(), f"{int(grey.sum())} unseen island texels still hold the unfilled grey"


def field_reference(run: Run) -> np.ndarray:
    """(S, S, 3) the field's colour at each island texel's surface point (zero elsewhere)."""
    size = run.surface.size
    reference = np.zeros((size * size, 3), dtype=np.float32)
    reference[run.surface.texel] = field_colour(run.surface.position)
    return reference.reshape(size, size, 3)


# --------------------------------------------------------------------------------------------
# UV seams


@dataclass
class SeamSamples:
    """Matching points on the two sides of the mesh's UV seam edges, in texture pixels."""

    edges: int  # seam edges of the mesh
    xy: np.ndarray  # (M, 2, 2, 2): sample, side, offset (SEAM_OFFSETS), (x, y); centres at i + 0.5
    texel: np.ndarray  # (M, 2) flat index of the texel under each side's nearer point


def seam_edges(mesh: MeshArrays) -> np.ndarray:
    """(E, 2, 3, 2) UVs of each seam edge's two triangles: (first vertex, second, opposite).

    A seam edge is a mesh edge (a vertex pair) whose two triangles give either vertex different
    UVs. Both sides list the edge's vertices in the same order.
    """
    triangles, corners, uv = mesh.triangles, mesh.uv_triangles, mesh.uv
    count = triangles.shape[0]
    start = np.concatenate([triangles[:, k] for k in range(3)])
    end = np.concatenate([triangles[:, (k + 1) % 3] for k in range(3)])
    start_uv = np.concatenate([uv[corners[:, k]] for k in range(3)])
    end_uv = np.concatenate([uv[corners[:, (k + 1) % 3]] for k in range(3)])
    opposite_uv = np.concatenate([uv[corners[:, (k + 2) % 3]] for k in range(3)])
    low, high = np.minimum(start, end), np.maximum(start, end)
    flipped = (start != low)[:, None]
    low_uv, high_uv = np.where(flipped, end_uv, start_uv), np.where(flipped, start_uv, end_uv)

    key = low * (int(high.max()) + 1) + high
    order = np.argsort(key, kind="stable")
    first = np.flatnonzero(np.r_[True, key[order][1:] != key[order][:-1]])
    sizes = np.diff(np.r_[first, key.size])
    assert sizes.max() == 2 and int(sizes.sum()) == 3 * count, "the cow is a closed manifold"
    side_a, side_b = order[first[sizes == 2]], order[first[sizes == 2] + 1]
    per_side = np.stack(
        [np.stack([low_uv[s], high_uv[s], opposite_uv[s]], axis=1) for s in (side_a, side_b)],
        axis=1,
    )  # (edges, side, corner, uv)
    differs = np.abs(per_side[:, 0, :2] - per_side[:, 1, :2]).max(axis=(1, 2)) > 1e-6
    return per_side[differs]


def inside_triangle(point: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Whether 2D points lie inside triangles (either winding), all arrays (..., 2)."""

    def cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]

    signs = np.stack([cross(b - a, point - a), cross(c - b, point - b), cross(a - c, point - c)])
    return np.all(signs >= 0, axis=0) | np.all(signs <= 0, axis=0)


def seam_samples(mesh: MeshArrays, island: np.ndarray) -> SeamSamples:
    """Points at SEAM_FRACTIONS along each seam edge, SEAM_OFFSETS texels into each triangle.

    A sample is kept when each side's points lie inside its own triangle and their bilinear
    footprints (four texel centres) lie on the UV islands, so each side's colour is its own.
    """
    size = island.shape[0]
    corners = seam_edges(mesh)
    pixels = np.stack([corners[..., 0] * size, (1.0 - corners[..., 1]) * size], axis=-1)
    low, high, opposite = pixels[:, :, 0], pixels[:, :, 1], pixels[:, :, 2]  # (E, 2, 2)
    along = high - low
    normal = np.stack([-along[..., 1], along[..., 0]], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    normal *= np.sign(np.sum((opposite - low) * normal, axis=-1, keepdims=True))  # inwards
    # (E, fraction, side, offset, xy)
    fractions = np.array(SEAM_FRACTIONS)[None, :, None, None, None]
    offsets = np.array(SEAM_OFFSETS)[None, None, None, :, None]
    points = (
        low[:, None, :, None] + fractions * along[:, None, :, None]
        + offsets * normal[:, None, :, None]
    )  # fmt: skip
    keep = inside_triangle(
        points, low[:, None, :, None], high[:, None, :, None], opposite[:, None, :, None]
    )
    corner = np.floor(points - 0.5).astype(np.int64)  # top-left texel of the bilinear footprint
    on_island = np.all((corner >= 0) & (corner + 1 < size), axis=-1)
    x, y = np.clip(corner[..., 0], 0, size - 2), np.clip(corner[..., 1], 0, size - 2)
    on_island &= island[y, x] & island[y, x + 1] & island[y + 1, x] & island[y + 1, x + 1]
    keep = np.all(keep & on_island, axis=(-2, -1))  # both sides, both offsets
    points = points[keep]  # (M, 2, 2, 2)
    nearer = np.floor(points[:, :, 0]).astype(np.int64)
    return SeamSamples(corners.shape[0], points, nearer[..., 1] * size + nearer[..., 0])


@dataclass
class SeamFigures:
    """Per seam sample, the mean absolute colour difference between the two sides."""

    near: np.ndarray  # (M,) at the nearer sample points (SEAM_OFFSETS[0] texels in)
    edge: np.ndarray  # (M,) extrapolated onto the edge itself


def seam_difference(texture: np.ndarray, samples: SeamSamples) -> SeamFigures:
    """How far the two sides of each seam sample disagree, near the edge and on it."""
    flat = sample_bilinear(texture[..., :3], samples.xy.reshape(-1, 2))
    colour = flat.reshape(*samples.xy.shape[:3], 3)  # (M, side, offset, rgb)
    near, far = SEAM_OFFSETS
    on_edge = colour[:, :, 0] + (colour[:, :, 0] - colour[:, :, 1]) * near / (far - near)
    return SeamFigures(
        near=np.abs(colour[:, 0, 0] - colour[:, 1, 0]).mean(axis=-1),
        edge=np.abs(on_edge[:, 0] - on_edge[:, 1]).mean(axis=-1),
    )


def random_difference(texture: np.ndarray, island: np.ndarray, count: int = 4000) -> float:
    """Mean absolute colour difference between random pairs of island texels (the control)."""
    texels = np.flatnonzero(island)
    rng = np.random.default_rng(0)
    flat = texture[..., :3].reshape(-1, 3)
    first, second = rng.choice(texels, count), rng.choice(texels, count)
    return float(np.abs(flat[first] - flat[second]).mean())


def describe(figures: SeamFigures, where: np.ndarray | None = None) -> str:
    """The seam figures in a line: on the edge, and at the nearer sample points."""
    where = np.ones(figures.edge.size, dtype=bool) if where is None else where
    if not where.any():
        return "no samples"
    parts = []
    for name, values in (("on the edge", figures.edge[where]), ("near", figures.near[where])):
        parts.append(
            f"{name} mean {values.mean():.4f}, p95 {np.percentile(values, 95):.4f}, "
            f"max {values.max():.4f}"
        )
    return "; ".join(parts) + f" ({int(where.sum())} samples)"


# --------------------------------------------------------------------------------------------
# Tests


def orthographic(height: float, aspect: float, near: float, far: float) -> np.ndarray:
    """An OpenGL orthographic projection ``height`` units tall."""
    return np.array(
        [
            [2.0 / (height * aspect), 0.0, 0.0, 0.0],
            [0.0, 2.0 / height, 0.0, 0.0],
            [0.0, 0.0, -2.0 / (far - near), -(far + near) / (far - near)],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )


def test_cameras_made_from_views_reproduce_them() -> None:
    """The helper's cameras give back the views' matrices through ``scene.camera_view``."""
    cow = import_cow()
    views = [named.view for named in automatic_views(cow)]
    eye, target, up = np.array([2.5, -3.0, 1.2]), np.array([0.0, -0.2, 0.1]), np.array([0, 0, 1.0])
    views.append(View(look_at(eye, target, up), perspective(35.0, 1.5, 0.1, 20.0), 768, 512))
    views.append(View(look_at(eye, target, up), orthographic(2.5, 0.75, 0.5, 9.0), 384, 512))
    context_scene = bpy.context.scene
    for number, view in enumerate(views):
        camera = cycles_render.camera_from_view(
            f"View {number}", view.world_to_view, view.projection
        )
        context_scene.render.resolution_x = view.width
        context_scene.render.resolution_y = view.height
        found = scene.camera_view(
            context_scene,
            camera,
            bpy.context.evaluated_depsgraph_get(),
            min(view.width, view.height),
        )
        assert (found.width, found.height) == (view.width, view.height)
        np.testing.assert_allclose(found.world_to_view, view.world_to_view, atol=1e-5)
        np.testing.assert_allclose(found.projection, view.projection, rtol=1e-5, atol=1e-6)


def test_multiview_round_trip_of_the_cow_texture(
    renders: Renders, project: Callable[[str, int], Run], original: np.ndarray
) -> None:
    """Ten Cycles renders projected back: coverage, PSNR, the report, nothing left unfilled."""
    run = project("texture", VIEW_COUNT)
    report = run.report
    seen, island = run.painted_texels(), run.island
    coverage = float(run.painted.mean())
    seen_at_all = np.zeros(island.size, dtype=bool)
    seen_at_all[run.surface.texel[run.seen]] = True
    seen_at_all = seen_at_all.reshape(island.shape)
    ours = run.written[..., :3]
    figure = psnr(ours[seen], original[seen])
    unseen = island & ~seen_at_all
    filled_psnr = psnr(ours[unseen], original[unseen])
    edge_only = seen_at_all & ~seen
    edge_psnr = psnr(ours[edge_only], original[edge_only])
    error = np.abs(ours - original).max(axis=-1)[seen]
    # Negative controls: the original against itself one texel off, and the same renders
    # projected one pixel off (every picture moved down a row).
    texel_off = psnr(np.roll(original, 1, axis=0)[seen], original[seen])
    shifted = project_renders(
        renders.views, [np.roll(p, 1, axis=0) for p in renders.pictures["texture"]]
    )
    pixel_off = psnr(shifted.written[..., :3][seen], original[seen])
    print(
        f"\n[multi-view round trip, Spot cow] {len(report.views)} views rendered by Cycles at "
        f"{RESOLUTION}^2 ({SAMPLES} samples, {renders.seconds:.1f} s for "
        f"{sum(len(p) for p in renders.pngs.values())} renders), texture {TEXTURE_SIZE}^2, "
        f"run {run.seconds:.1f} s: coverage {coverage:.4f} of {island.sum()} island texels "
        f"(report: {report.coverage_before_fill:.4f}); PSNR {figure:.2f} dB over them "
        f"(error p50 {np.median(error):.4f}, p99 {np.percentile(error, 99):.4f}, "
        f"> 0.25 on {np.mean(error > 0.25):.4%}); seen only on depth edges "
        f"{edge_only.mean():.4f}, {edge_psnr:.2f} dB; filled unseen texels {filled_psnr:.2f} dB; "
        f"controls: the original one texel off {texel_off:.2f} dB, the renders one pixel off "
        f"{pixel_off:.2f} dB\n  per view (new/refined/kept): "
        + ", ".join(
            f"{v['label']} {v['new']:.2f}/{v['refined']:.2f}/{v['kept']:.2f}" for v in report.views
        )
        + "\n  re-render PSNR per view: "
        + ", ".join(f"{label} {value:.1f}" for label, value in report.psnr_per_view.items())
    )
    assert [v["label"] for v in report.views] == [named.label for named in renders.views]
    assert not report.notes  # the cow is seen from below: no view skipped
    # The report counts exactly the texels the views' own visibility test accepts, depth edges
    # included (painted from their best edge sighting when no view saw them well).
    assert report.coverage_before_fill == pytest.approx(float(run.seen.mean()), abs=1e-9)
    # Measured 0.962: ten views around a convex-ish body miss only the crevices (between the
    # legs, behind the ears, under the chin) and surfaces grazing every view.
    assert coverage > 0.93
    # Measured 38.2 dB: an unlit render is exact up to the pixel filter and two bilinear
    # resamplings, which soften the 1024^2 texture's sharp spot edges (the cow spans fewer
    # pixels than texels). A one-texel misregistration costs 30.7 dB, renders projected one
    # pixel off 27.7 dB: 35 dB and 5 dB above both separate a right projection from those.
    assert figure > 35.0
    assert figure > max(texel_off, pixel_off) + 5.0
    # A texel off by more than 0.25 took another surface's colour (measured 0.003 %).
    assert np.mean(error > 0.25) < 1e-3
    assert report.views[0]["new"] > 0.99  # the first view paints everything it sees
    assert all(v["kept"] > 0.0 for v in report.views[1:]), report.views
    assert_filled(run, original)


@pytest.mark.parametrize("kind", ["texture", "field"])
def test_seams_match_after_projection(
    project: Callable[[str, int], Run], original: np.ndarray, kind: str
) -> None:
    """Both sides of every UV seam get the same colour from the projection."""
    run = project(kind, VIEW_COUNT)
    reference = original if kind == "texture" else field_reference(run)
    samples = seam_samples(run.mesh, run.island)
    ours = seam_difference(run.written, samples)
    theirs = seam_difference(reference, samples)
    control = random_difference(run.written, run.island)
    seen = run.painted_texels()
    print(
        f"\n[seams after projection, {kind}] {samples.edges} seam edges, "
        f"{ours.edge.size} samples; random island pairs differ by {control:.4f}\n"
        f"  written: {describe(ours)}\n  reference: {describe(theirs)}\n"
        f"  PSNR over seen texels {psnr(run.written[..., :3][seen], reference[seen]):.2f} dB"
    )
    assert samples.edges > 100 and ours.edge.size > samples.edges
    # Measured on the edge: mean 0.0020 (texture), 0.0025 (field), p95 <= 0.0064, where random
    # pairs of points differ by ~0.19: half an 8-bit step on average, a few steps at worst.
    # The field's own reference agrees on the edge to 1e-4; the texture's artist left a
    # couple of seams not quite matching (max 0.22 there), which the projection smooths.
    assert ours.edge.mean() < 0.01
    assert np.percentile(ours.edge, 95) < 0.02
    # 1.5 texels in, the two sides are ~3 texels apart: a gradient may show, never a jump.
    assert ours.near.mean() < 0.1 * control


@pytest.mark.parametrize("kind", ["texture", "field"])
def test_seams_match_where_the_fill_paints(
    project: Callable[[str, int], Run], original: np.ndarray, kind: str
) -> None:
    """Seams match where the mesh fill paints what three front views never saw."""
    run = project(kind, FRONT_VIEWS)
    reference = original if kind == "texture" else field_reference(run)
    samples = seam_samples(run.mesh, run.island)
    ours = seam_difference(run.written, samples)
    painted = run.painted_texels()
    seen = painted.ravel()[samples.texel].sum(axis=1)  # sides seen: 0, 1 or 2
    control = random_difference(run.written, run.island)
    # Negative control: the unseen texels filled in UV space instead (each island dilated from
    # its painted texels), which cannot carry colour across a seam.
    in_uv_space = dilate_margin(np.where(painted[..., None], run.written, 0.0), painted, 400)
    broken = seam_difference(in_uv_space, samples)
    print(
        f"\n[seams with {FRONT_VIEWS} front views, {kind}] coverage {run.painted.mean():.3f}, "
        f"fill rings {run.report.fill_rings}; random island pairs {control:.4f}\n"
        f"  both sides filled: {describe(ours, seen == 0)}\n"
        f"  one side seen: {describe(ours, seen == 1)}\n"
        f"  both sides seen: {describe(ours, seen == 2)}\n"
        f"  control, filled in UV space, both sides filled: {describe(broken, seen == 0)}"
    )
    assert 0.2 < run.painted.mean() < 0.8  # a good part of the cow is left to the fill
    assert np.sum(seen == 0) > 100
    assert_filled(run, reference)
    # The fill interpolates colours carried over the mesh's vertices, which both sides of a
    # seam share: on the edge they agree (measured mean <= 0.0016 where both sides were
    # filled, <= 0.0036 overall). A fill in UV space could not cross the seam and would give
    # each side unrelated colours (~0.19, the random-pair figure).
    assert ours.edge.mean() < 0.01
    assert ours.edge[seen == 0].mean() < 0.01
    assert np.percentile(ours.edge, 95) < 0.02
    # Filled triangles carry steeper gradients than painted ones (near: p95 up to 0.046).
    assert ours.near.mean() < 0.1 * control
    # ...which these seams would show (measured 0.041 on the texture, 0.061 on the field).
    assert broken.edge[seen == 0].mean() > 5 * max(ours.edge[seen == 0].mean(), 0.002)


def test_project_command_with_three_image_camera_pairs(
    renders: Renders, project: Callable[[str, int], Run], original: np.ndarray, tmp_path: Path
) -> None:
    """``project`` with three --image/--camera pairs fills the texture like the direct run."""
    views = renders.views[:FRONT_VIEWS]
    import_cow()
    names = [camera.name for camera in cameras_for(views)]
    context_scene = bpy.context.scene
    context_scene.render.resolution_x = context_scene.render.resolution_y = RESOLUTION
    blend = tmp_path / "cow.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    output, report_path = tmp_path / "out" / "cow_projected.blend", tmp_path / "report.json"
    output.parent.mkdir()
    argv = ["project", str(blend), "--resolution", str(RESOLUTION)]
    argv += ["--texture-size", str(TEXTURE_SIZE), "--output", str(output)]
    argv += ["--report", str(report_path)]
    for name, png in zip(names, renders.pngs["texture"], strict=False):
        argv += ["--image", str(png), "--camera", name]
    assert cli.main(argv) == 0

    bpy.ops.wm.open_mainfile(filepath=str(output))
    image = bpy.data.images[texture_name("cow")]
    assert image.packed_file is None
    assert (output.parent / "textures" / "cow_projected" / "cow_SD_Texture.png").is_file()
    written = images.image_to_array(image)  # read back from the PNG beside the .blend
    logged = json.loads(report_path.read_text())["objects"][0]
    assert [v["label"] for v in logged["views"]] == names

    # The command line takes the same path as the direct run from the same three views.
    direct = project("texture", FRONT_VIEWS)
    assert_filled(
        Run(written, direct.report, direct.mesh, direct.surface, direct.painted, direct.seen, 0.0),
        original,
    )
    difference = np.abs(written[..., :3] - direct.written[..., :3]).max(axis=-1)[direct.island]
    print(
        f"\n[project command, {FRONT_VIEWS} image/camera pairs] coverage "
        f"{logged['coverage_before_fill']:.4f} (direct run "
        f"{direct.report.coverage_before_fill:.4f}); |command - direct| mean "
        f"{difference.mean():.2e}, max {difference.max():.4f}, over 1/255 on "
        f"{np.mean(difference > 1.01 / 255):.4%} of island texels"
    )
    # The cameras' matrices equal the views' to float rounding, which can tip the visibility
    # of a few texels on silhouettes; everything else is the same computation.
    assert logged["coverage_before_fill"] == pytest.approx(
        direct.report.coverage_before_fill, abs=1e-4
    )
    assert difference.mean() < 1e-3
    assert np.mean(difference > 1.01 / 255) < 1e-3
