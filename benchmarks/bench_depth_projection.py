"""Depth capture and projection against Cycles on a ~1M-triangle mesh, side by side in one run.

    python benchmarks/bench_depth_projection.py [--triangles 1000000] [--texture-size 2048]
        [--resolution 512] [--repeat 3]

What is compared, on the same UV-mapped sphere and camera:

- ours: reading the evaluated mesh (``mesh_arrays``), the depth capture at resolution^2
  (``capture_depth`` + ``depth_for_model``) and the projection of a resolution^2 picture into a
  texture (``texel_surface`` + ``seen_texels`` + ``integrate`` + ``dilate_margin``: the UV
  layout, the depth-tested texels, folding the picture into the texture and the island margin);
  the first (cold) run and the best of ``--repeat`` warm runs;
- Cycles: a 1-sample Depth-pass render at resolution^2 (what a Cycles-based depth capture would
  cost) and a 1-sample emission bake into a texture of the same size (Blender's own way to write
  every texel of a UV texture from a shader). Both include Cycles' scene sync and BVH build,
  which it redoes on every render and bake.

A scaling check then times ours at a quarter, half and all of the triangles and at half and full
texture size, to show the cost grows linearly. The sphere is built with numpy:
``bpy.ops.mesh.primitive_uv_sphere_add`` takes over two minutes at a million triangles.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import bpy
import numpy as np

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from support import cycles_render  # noqa: E402

from sd_depth_texture.blender import sample, scene  # noqa: E402
from sd_depth_texture.core.bake.blending import TextureState, integrate  # noqa: E402
from sd_depth_texture.core.bake.color import UNFILLED_GREY  # noqa: E402
from sd_depth_texture.core.bake.margin import dilate_margin  # noqa: E402
from sd_depth_texture.core.bake.surface import texel_surface  # noqa: E402
from sd_depth_texture.core.bake.visibility import seen_texels  # noqa: E402
from sd_depth_texture.core.geometry.depth import capture_depth, depth_for_model  # noqa: E402
from sd_depth_texture.core.geometry.views import View  # noqa: E402
from sd_depth_texture.defaults import MARGIN  # noqa: E402

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# The mesh and the view


def sphere_grid(triangles: int) -> tuple[int, int]:
    """(segments, bands) of a UV sphere with about ``triangles`` triangles, segments = 2 bands.

    Such a sphere has 2 * segments * (bands - 1) triangles: square-ish quads at the equator.
    """
    bands = max(3, round(np.sqrt(triangles / 4.0)) + 1)
    segments = max(3, round(triangles / (2 * (bands - 1))))
    return segments, bands


def uv_sphere(segments: int, bands: int, name: str = "Sphere") -> bpy.types.Object:
    """A unit UV sphere as a Blender object, triangulated, with a seamed UV map (u = longitude).

    Built with ``foreach_set`` from numpy arrays in about a second at a million triangles.
    """
    rings = bands - 1  # latitude rings between the poles
    theta = np.pi * np.arange(1, bands) / bands  # polar angle of each ring
    phi = 2.0 * np.pi * np.arange(segments) / segments
    ring_xyz = np.stack(
        [
            np.outer(np.sin(theta), np.cos(phi)),
            np.outer(np.sin(theta), np.sin(phi)),
            np.repeat(np.cos(theta)[:, None], segments, axis=1),
        ],
        axis=-1,
    ).reshape(-1, 3)
    north, south = 0, 1 + rings * segments
    vertices = np.concatenate([[[0.0, 0.0, 1.0]], ring_xyz, [[0.0, 0.0, -1.0]]])

    j = np.arange(segments)
    k = (j + 1) % segments
    u0, u1 = j / segments, (j + 1) / segments  # the seam's second side gets u = 1
    v = 1.0 - np.arange(bands + 1) / bands  # v of the north pole, each ring, the south pole

    def ring(i: int | np.ndarray, column: np.ndarray) -> np.ndarray:
        return 1 + np.asarray(i)[..., None] * segments + column

    corners, uvs = [], []
    # North cap: pole, ring 0 at j, ring 0 at j + 1 (counter-clockwise seen from outside).
    corners.append(np.stack([np.full(segments, north), ring(0, j), ring(0, k)], -1))
    uvs.append(
        np.stack(
            [
                np.stack([(u0 + u1) / 2, np.full(segments, v[0])], -1),
                np.stack([u0, np.full(segments, v[1])], -1),
                np.stack([u1, np.full(segments, v[1])], -1),
            ],
            1,
        )
    )
    # Bands between ring i and i + 1: two triangles per quad.
    i = np.arange(rings - 1)
    a, b = ring(i, j), ring(i + 1, j)
    c, d = ring(i + 1, k), ring(i, k)
    ua, ub = np.broadcast_arrays(u0, u1)
    upper = np.broadcast_to(v[1 + i][:, None], a.shape)
    lower = np.broadcast_to(v[2 + i][:, None], a.shape)
    uv_a = np.stack([np.broadcast_to(ua, a.shape), upper], -1)
    uv_b = np.stack([np.broadcast_to(ua, a.shape), lower], -1)
    uv_c = np.stack([np.broadcast_to(ub, a.shape), lower], -1)
    uv_d = np.stack([np.broadcast_to(ub, a.shape), upper], -1)
    corners += [np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)]
    uvs += [
        np.stack([uv_a, uv_b, uv_c], -2).reshape(-1, 3, 2),
        np.stack([uv_a, uv_c, uv_d], -2).reshape(-1, 3, 2),
    ]
    # South cap: last ring at j, pole, last ring at j + 1.
    last = rings - 1
    corners.append(np.stack([ring(last, j), np.full(segments, south), ring(last, k)], -1))
    uvs.append(
        np.stack(
            [
                np.stack([u0, np.full(segments, v[bands - 1])], -1),
                np.stack([(u0 + u1) / 2, np.full(segments, v[bands])], -1),
                np.stack([u1, np.full(segments, v[bands - 1])], -1),
            ],
            1,
        )
    )
    triangles = np.concatenate(corners).astype(np.int32)
    corner_uv = np.concatenate(uvs).astype(np.float32)

    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(vertices.shape[0])
    mesh.vertices.foreach_set("co", vertices.astype(np.float32).ravel())
    mesh.loops.add(triangles.size)
    mesh.loops.foreach_set("vertex_index", triangles.ravel())
    mesh.polygons.add(triangles.shape[0])
    mesh.polygons.foreach_set("loop_start", np.arange(0, triangles.size, 3, dtype=np.int32))
    mesh.uv_layers.new(name="UVMap").data.foreach_set("uv", corner_uv.ravel())
    mesh.update(calc_edges=True)
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def subdivided_suzanne(triangles: int) -> bpy.types.Object:
    """Suzanne with her own UV map, subdivided (and applied) to about ``triangles`` triangles.

    A realistic asset: organic shape, seams, and UV islands covering about half the texture
    (the UV sphere's layout fills the whole square, the worst case for projection).
    """
    bpy.ops.mesh.primitive_monkey_add(size=1.6, calc_uvs=True)
    obj = bpy.context.active_object
    levels = max(0, round(np.log(triangles / 968) / np.log(4)))
    modifier = obj.modifiers.new("Subdivision", "SUBSURF")
    modifier.levels = modifier.render_levels = levels
    with bpy.context.temp_override(object=obj, active_object=obj):
        bpy.ops.object.modifier_apply(modifier=modifier.name)
    return obj


def fresh_scene(resolution: int) -> bpy.types.Scene:
    """An empty file with a square render and a camera filling the frame with the unit sphere."""
    bpy.ops.wm.read_homefile(use_empty=True)
    context_scene = bpy.context.scene
    context_scene.render.resolution_x = context_scene.render.resolution_y = resolution
    context_scene.render.resolution_percentage = 100
    context_scene.camera = sample.add_camera("Camera", (0.0, -3.4, 1.3), (0.0, 0.0, 0.0), 50.0)
    return context_scene


def picture_for(view: View) -> np.ndarray:
    """A smooth colourful picture of the view's size (content does not change the cost)."""
    y, x = np.mgrid[0 : view.height, 0 : view.width] / max(view.width, view.height)
    return np.stack(
        [0.5 + 0.4 * np.sin(9 * x), 0.5 + 0.4 * np.cos(7 * y), 0.5 + 0.4 * np.sin(5 * (x + y))],
        axis=-1,
    ).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Timing


@dataclass
class Timing:
    first: float
    best: float  # best of the warm runs (equal to first when there are none)

    def __str__(self) -> str:
        return f"{self.first:8.3f} {self.best:8.3f}"


def timed(function: Callable[[], T], repeat: int) -> tuple[T, Timing]:
    """Call once cold, then ``repeat`` times warm; the result of the first call and the times."""
    start = time.perf_counter()
    result = function()
    first = time.perf_counter() - start
    warm = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        warm.append(time.perf_counter() - start)
    return result, Timing(first, min(warm) if warm else first)


STEPS = (
    "mesh_arrays",
    "capture_depth",
    "depth_for_model",
    "texel_surface",
    "seen_texels",
    "integrate",
    "dilate_margin",
)
DEPTH_STEPS = ("capture_depth", "depth_for_model")
PROJECTION_STEPS = ("texel_surface", "seen_texels", "integrate", "dilate_margin")


class Stopwatch:
    """Lap times of consecutive steps, and the time since it was made."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.laps[step] = now - self.last
        self.last = now

    @property
    def elapsed(self) -> float:
        return self.last - self.started


@dataclass
class Ours:
    runs: list[dict[str, float]]  # seconds per step, and "total", for each run; the first is cold
    covered_pixels: int
    island_texels: int
    written_texels: int

    def timing(self, *steps: str) -> Timing:
        """The summed time of ``steps``: in the first run, and the best over the warm runs."""
        sums = [sum(run[step] for step in steps) for run in self.runs]
        return Timing(sums[0], min(sums[1:]) if len(sums) > 1 else sums[0])

    @property
    def mesh_arrays(self) -> Timing:
        return self.timing("mesh_arrays")

    @property
    def depth(self) -> Timing:
        return self.timing(*DEPTH_STEPS)

    @property
    def projection(self) -> Timing:
        return self.timing(*PROJECTION_STEPS)

    @property
    def total(self) -> Timing:
        return self.timing("total")


def run_ours(
    obj: bpy.types.Object, view: View, texture_size: int, repeat: int, margin: int
) -> Ours:
    """Time the project's path step by step: read the mesh, capture depth, project a picture.

    Each run does every step once, in order, as the engine does; the steps' times add up to the
    run's total (plus negligible bookkeeping).
    """
    depsgraph = bpy.context.evaluated_depsgraph_get()
    picture = picture_for(view)
    runs = []
    for _ in range(1 + repeat):
        watch = Stopwatch()
        mesh = scene.mesh_arrays(obj, depsgraph)
        watch.lap("mesh_arrays")
        capture = capture_depth(view, mesh.vertices, mesh.triangles)
        watch.lap("capture_depth")
        depth_for_model(capture)
        watch.lap("depth_for_model")
        surface = texel_surface(
            mesh.vertices, mesh.triangles, mesh.uv, mesh.uv_triangles, texture_size
        )
        watch.lap("texel_surface")
        seen = seen_texels(surface, capture)
        watch.lap("seen_texels")
        state = TextureState.empty(surface.texel.size, UNFILLED_GREY)
        integrate(state, seen, picture, capture)
        texture = np.full((texture_size * texture_size, 3), UNFILLED_GREY, dtype=np.float32)
        texture[surface.texel] = state.color
        written = state.painted
        watch.lap("integrate")
        dilate_margin(texture.reshape(texture_size, texture_size, 3), surface.mask, margin)
        watch.lap("dilate_margin")
        runs.append({**watch.laps, "total": watch.elapsed})
    return Ours(
        runs=runs,
        covered_pixels=int(capture.foreground.sum()),
        island_texels=int(surface.texel.size),
        written_texels=int(written.sum()),
    )


@dataclass
class Cycles:
    depth: Timing
    bake: Timing
    threads: int


def run_cycles(
    obj: bpy.types.Object, view: View, texture_size: int, repeat: int, margin: int
) -> Cycles:
    """Time Cycles: a 1-sample Depth-pass render and a 1-sample emission bake, on the CPU."""
    context_scene = bpy.context.scene
    cycles_render.use_cycles(context_scene, view.width, view.height, samples=1, filter_width=0.01)
    _, depth_time = timed(lambda: cycles_render.render_depth(context_scene), repeat)

    picture = cycles_render.new_image("Picture", picture_for(view))
    cycles_render.emission_material(obj, picture)
    target = bpy.data.images.new("Bake target", texture_size, texture_size, alpha=True)
    context_scene.cycles.samples = 1
    # A bake costs seconds and Cycles redoes everything each time: warm runs add nothing.
    _, bake_time = timed(lambda: cycles_render.bake_emission(obj, target, margin), 0)
    return Cycles(depth=depth_time, bake=bake_time, threads=context_scene.render.threads)


# --------------------------------------------------------------------------------------------
# Report


def triangle_count(obj: bpy.types.Object) -> int:
    mesh = obj.data
    mesh.calc_loop_triangles()
    return len(mesh.loop_triangles)


def print_main_table(
    triangles: int,
    view: View,
    texture_size: int,
    repeat: int,
    ours: Ours,
    cycles: Cycles,
    mesh_name: str = "UV sphere",
) -> None:
    print(
        f"\nMesh: {mesh_name}, {triangles:,} triangles; view {view.width}x{view.height} "
        f"({ours.covered_pixels:,} pixels covered); texture {texture_size}^2 "
        f"({ours.island_texels:,} island texels, {ours.written_texels:,} painted by the view)."
    )
    print(
        f"CPU cores: {os.cpu_count()}; Cycles threads: {cycles.threads}; "
        "our code is numpy (mostly one thread)."
    )
    print(f"\n{'seconds':42s} {'first':>8s} {'best':>8s}   (best of {repeat} warm runs)")
    rows = [
        ("ours: mesh_arrays (read evaluated mesh)", ours.mesh_arrays),
        ("ours: depth (2 steps below)", ours.depth),
        *((f"    {step}", ours.timing(step)) for step in DEPTH_STEPS),
        ("ours: projection (4 steps below)", ours.projection),
        *((f"    {step}", ours.timing(step)) for step in PROJECTION_STEPS),
        ("ours: total (mesh + depth + projection)", ours.total),
        ("Cycles: Depth pass render, 1 sample", cycles.depth),
        ("Cycles: emission bake, 1 sample", cycles.bake),
    ]
    for label, timing in rows:
        print(f"{label:42s} {timing}")
    depth_ours = ours.mesh_arrays.best + ours.depth.best
    print("\nSpeed-ups (best times):")
    print(
        f"  depth: Cycles {cycles.depth.best:.3f} s / ours {depth_ours:.3f} s with mesh read "
        f"= {cycles.depth.best / depth_ours:.1f}x "
        f"({cycles.depth.best / ours.depth.best:.1f}x without the mesh read)"
    )
    print(
        f"  texture: Cycles bake {cycles.bake.best:.3f} s / ours projection "
        f"{ours.projection.best:.3f} s = {cycles.bake.best / ours.projection.best:.1f}x"
    )
    print(
        f"  both: Cycles {cycles.depth.best + cycles.bake.best:.3f} s / ours total "
        f"{ours.total.best:.3f} s = "
        f"{(cycles.depth.best + cycles.bake.best) / ours.total.best:.1f}x"
    )
    rerun = ours.total.best - ours.timing("texel_surface").best
    print(
        f"  re-run on the same mesh (UV layout reused by cached_texel_surface): ours "
        f"{rerun:.3f} s = {(cycles.depth.best + cycles.bake.best) / rerun:.1f}x; depth + "
        f"projection without the mesh read {rerun - ours.mesh_arrays.best:.3f} s"
    )


def scaling_check(
    triangles: int, texture_size: int, resolution: int, repeat: int, margin: int
) -> None:
    """Ours at 1/4, 1/2 and all of the triangles, then at half and full texture size."""
    warm = max(1, min(repeat, 2))
    print(
        f"\nScaling (ours, best of {warm} warm runs): the mesh read and depth capture grow with "
        "the triangles, the projection with the texels (rasterising the UV layout and sampling "
        "every painted texel)."
    )
    print(
        f"{'triangles':>10s} {'texture':>8s} {'mesh':>7s} {'depth':>7s} {'project':>8s}  per unit"
    )
    base = None
    for fraction in (0.25, 0.5, 1.0):
        context_scene = fresh_scene(resolution)
        obj = uv_sphere(*sphere_grid(int(triangles * fraction)))
        count = triangle_count(obj)
        view = camera_view(context_scene)
        found = run_ours(obj, view, texture_size, warm, margin)
        geometry = found.mesh_arrays.best + found.depth.best
        per_million = geometry / (count / 1e6)
        base = base or per_million
        print(
            f"{count:>10,} {texture_size:>8d} {found.mesh_arrays.best:7.3f} "
            f"{found.depth.best:7.3f} {found.projection.best:8.3f}  "
            f"mesh+depth {per_million:.3f} s per 1M triangles ({per_million / base:.2f}x)"
        )
    base = None
    for size in (texture_size // 2, texture_size):
        context_scene = fresh_scene(resolution)
        obj = uv_sphere(*sphere_grid(triangles))
        count = triangle_count(obj)
        view = camera_view(context_scene)
        found = run_ours(obj, view, size, warm, margin)
        per_megatexel = found.projection.best / (size * size / 1e6)
        base = base or per_megatexel
        print(
            f"{count:>10,} {size:>8d} {found.mesh_arrays.best:7.3f} "
            f"{found.depth.best:7.3f} {found.projection.best:8.3f}  "
            f"projection {per_megatexel:.3f} s per megatexel ({per_megatexel / base:.2f}x)"
        )


def camera_view(context_scene: bpy.types.Scene) -> View:
    depsgraph = bpy.context.evaluated_depsgraph_get()
    resolution = context_scene.render.resolution_y
    return scene.camera_view(context_scene, context_scene.camera, depsgraph, resolution)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--triangles", type=int, default=1_000_000)
    parser.add_argument("--texture-size", type=int, default=2048)
    parser.add_argument("--resolution", type=int, default=512, help="square view, pixels")
    parser.add_argument("--repeat", type=int, default=3, help="warm runs after the first")
    parser.add_argument("--margin", type=int, default=int(MARGIN.default))
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling check")
    parser.add_argument(
        "--mesh",
        choices=("sphere", "suzanne"),
        default="sphere",
        help="sphere: UV layout filling the texture (worst case); suzanne: a typical asset",
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    context_scene = fresh_scene(args.resolution)
    build_start = time.perf_counter()
    if args.mesh == "sphere":
        obj, mesh_name = uv_sphere(*sphere_grid(args.triangles)), "UV sphere"
    else:
        obj, mesh_name = subdivided_suzanne(args.triangles), "subdivided Suzanne"
    build_time = time.perf_counter() - build_start
    count = triangle_count(obj)
    print(f"Built a {count:,}-triangle {mesh_name} in {build_time:.2f} s.")
    view = camera_view(context_scene)
    ours = run_ours(obj, view, args.texture_size, args.repeat, args.margin)
    cycles = run_cycles(obj, view, args.texture_size, args.repeat, args.margin)
    print_main_table(count, view, args.texture_size, args.repeat, ours, cycles, mesh_name)
    if not args.no_scaling:
        scaling_check(args.triangles, args.texture_size, args.resolution, args.repeat, args.margin)
    print(f"\nBenchmark wall time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
