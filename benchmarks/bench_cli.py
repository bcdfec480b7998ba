"""The user's path, timed: the ``depth`` and ``project`` commands on a ~1M-triangle Suzanne,
side by side with Cycles doing the same two jobs in the same run.

    .venv/bin/python benchmarks/bench_cli.py [--triangles 1000000] [--resolution 512]
        [--texture-size 2048] [--repeat 5] [--fresh 2] [--cycles-repeat 2] [--cold-surface]
        [--keep DIR]

The benchmark builds its scene (Suzanne with her own UVs, subdivided and applied, and a camera
framing her), saves it as a .blend with a picture to project, then times, in one process:

- ours: ``cli.main(["depth", ...])`` then ``cli.main(["project", ..., "--image", PNG,
  "--texture-size", S])``, exactly as a user runs them, texture PNG and report written. Only
  opening the .blend (``cli.main.open_blend``) and saving the textured copy
  (``save_blend_copy``) are left out: they are timed by wrappers and subtracted. The first
  call in this process is reported apart; ``--repeat`` warm runs give the best and the range.
- a fresh process: ``--fresh`` times this file in ``--child`` mode, which imports Blender and
  runs the same two commands once (what the first run after starting Blender costs).
- Cycles: a 1-sample Depth-pass render at the same resolution and a 1-sample emission bake of
  the picture into a texture of the same size (Blender's own way to write every texel of a UV
  texture), each with its scene sync and BVH build, as Cycles redoes them every time.

Warm runs reuse what is cached by content, as re-runs in one Blender session do: the UV layout
(``core.bake.surface``), the view's Z-buffer (``core.geometry.depth.cached_capture``, which
``project`` also reuses from the ``depth`` command before it) and the mesh's loop-triangle
corners (``blender.scene``); ``--cold-surface`` forgets all three before each warm run (a
changed mesh). ``--keep DIR`` builds the scene there and keeps it.

Each stage is timed by wrapping the function that does it (exclusive time: a stage's figure
leaves out the stages it calls), so the breakdown adds up to the whole. Timings are printed,
never asserted. CPU seconds (all threads) are printed beside wall seconds: on a shared machine
they move less. Run it several times and read the best and the ranges.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

_started = time.perf_counter()

import bpy  # noqa: E402
import numpy as np  # noqa: E402

_bpy_import = time.perf_counter() - _started

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "tests", REPO / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

_package_start = time.perf_counter()
from sd_depth_texture.cli import main as cli  # noqa: E402

_package_import = time.perf_counter() - _package_start

from bench_depth_projection import fresh_scene, subdivided_suzanne, triangle_count  # noqa: E402
from support import cycles_render  # noqa: E402

from sd_depth_texture.blender import scene as blender_scene  # noqa: E402
from sd_depth_texture.core.bake import surface  # noqa: E402
from sd_depth_texture.core.geometry import depth as depth_module  # noqa: E402
from sd_depth_texture.defaults import MARGIN  # noqa: E402

# (stage, module, function): every place a stage's function is called from. Functions the code
# does not have (older or newer versions) are skipped, so the same file times either.
LEFT_OUT = ("open .blend", "save .blend")
STAGES: tuple[tuple[str, str, str], ...] = (
    ("open .blend", "sd_depth_texture.cli.main", "open_blend"),
    ("save .blend", "sd_depth_texture.cli.main", "save_blend_copy"),
    ("load picture", "sd_depth_texture.cli.main", "load_picture"),
    ("mesh read", "sd_depth_texture.blender.scene", "mesh_arrays"),
    ("mesh read", "sd_depth_texture.blender.scene", "visible_geometry"),
    ("output plan", "sd_depth_texture.blender.outputs", "plan_run"),
    ("output plan", "sd_depth_texture.blender.outputs", "plan_depth"),
    ("depth capture", "sd_depth_texture.blender.flow", "capture_depth"),
    ("depth capture", "sd_depth_texture.blender.flow", "cached_capture"),
    ("depth capture", "sd_depth_texture.core.bake.paint", "capture_depth"),
    ("depth map", "sd_depth_texture.blender.flow", "depth_for_model"),
    ("depth map", "sd_depth_texture.core.bake.paint", "depth_for_model"),
    ("depth PNG", "sd_depth_texture.blender.images", "save_depth_png"),
    ("texel surface", "sd_depth_texture.blender.flow", "cached_texel_surface"),
    ("start colours", "sd_depth_texture.blender.flow", "_start_colours"),
    ("view masks", "sd_depth_texture.core.bake.paint", "depth_edges"),
    ("view masks", "sd_depth_texture.core.bake.paint", "pixel_facing"),
    ("projection/paint", "sd_depth_texture.core.bake.paint", "seen_texels"),
    ("projection/paint", "sd_depth_texture.core.bake.paint", "integrate"),
    ("projection/paint", "sd_depth_texture.core.bake.paint", "sample_seen"),
    ("blend", "sd_depth_texture.core.bake.paint", "edge_falloff"),
    ("blend", "sd_depth_texture.core.bake.paint", "match_view"),
    ("blend", "sd_depth_texture.core.bake.paint", "view_weights"),
    ("blend", "sd_depth_texture.core.bake.paint", "fold"),
    ("seam figures", "sd_depth_texture.core.bake.paint", "_seam_figures"),
    ("fill", "sd_depth_texture.core.bake.paint", "fill_unpainted"),
    ("margin", "sd_depth_texture.core.bake.paint", "dilate_margin"),
    ("report PSNR", "sd_depth_texture.core.bake.paint", "_rerender_psnr"),
    ("images", "sd_depth_texture.blender.images", "array_to_image"),
    ("images", "sd_depth_texture.blender.images", "write_texture"),
    ("images", "sd_depth_texture.blender.images", "texture_image"),
    ("images", "sd_depth_texture.blender.flow", "keep_depth"),
    ("images", "sd_depth_texture.blender.images", "keep_depth"),
    ("PNG encode", "sd_depth_texture.blender.images", "store_texture"),
    ("PNG encode", "sd_depth_texture.blender.images", "write_png"),
    ("PNG encode", "sd_depth_texture.blender.images", "encode_png"),
    ("PNG encode", "sd_depth_texture.blender.images", "texture_png"),
    ("material", "sd_depth_texture.blender.materials", "wire_material"),
    ("report JSON", "sd_depth_texture.blender.flow", "write_report"),
)


class StageTimer:
    """Exclusive wall and CPU seconds per stage: each wrapper subtracts the wrapped stages it
    calls. CPU time (all of the process's threads) is the steadier figure on a shared machine."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._stack: list[list[float]] = []  # [wall start, CPU start, callees' wall, CPU]
        self._undo: list[tuple[object, str, object]] = []

    def wrap(self, stage: str, function: Callable) -> Callable:
        @functools.wraps(function)
        def timed(*args, **kwargs):
            frame = [time.perf_counter(), time.process_time(), 0.0, 0.0]
            self._stack.append(frame)
            try:
                return function(*args, **kwargs)
            finally:
                wall = time.perf_counter() - frame[0]
                cpu = time.process_time() - frame[1]
                self._stack.pop()
                if self._stack:
                    self._stack[-1][2] += wall
                    self._stack[-1][3] += cpu
                self.seconds[stage] = self.seconds.get(stage, 0.0) + wall - frame[2]
                self.cpu[stage] = self.cpu.get(stage, 0.0) + cpu - frame[3]

        return timed

    def install(self) -> None:
        for stage, module_name, name in STAGES:
            module = importlib.import_module(module_name)
            original = getattr(module, name, None)
            if original is None:
                continue
            self._undo.append((module, name, original))
            setattr(module, name, self.wrap(stage, original))

    def uninstall(self) -> None:
        for module, name, original in reversed(self._undo):
            setattr(module, name, original)
        self._undo.clear()

    @contextmanager
    def run(self):
        """Time one run: fresh stage figures, ``total``/``cpu_total`` for the whole block."""
        self.seconds, self.cpu = {}, {}
        start, cpu_start = time.perf_counter(), time.process_time()
        yield self
        self.total = time.perf_counter() - start
        self.cpu_total = time.process_time() - cpu_start


@dataclass
class Run:
    """One run of both commands: wall and CPU time, per stage and in all."""

    total: float
    stages: dict[str, float]
    cpu_total: float = 0.0
    cpu_stages: dict[str, float] = field(default_factory=dict)

    @property
    def left_out(self) -> float:
        return sum(self.stages.get(stage, 0.0) for stage in LEFT_OUT)

    @property
    def work(self) -> float:
        """Wall seconds without opening and saving the .blend."""
        return self.total - self.left_out

    @property
    def cpu_work(self) -> float:
        return self.cpu_total - sum(self.cpu_stages.get(stage, 0.0) for stage in LEFT_OUT)

    def stage(self, name: str, cpu: bool = False) -> float:
        stages = self.cpu_stages if cpu else self.stages
        if name == "other":
            named = sum(v for k, v in stages.items() if k not in LEFT_OUT)
            return (self.cpu_work if cpu else self.work) - named
        return stages.get(name, 0.0)

    def to_json(self) -> dict:
        return {
            "total": self.total,
            "stages": self.stages,
            "cpu_total": self.cpu_total,
            "cpu_stages": self.cpu_stages,
        }


@dataclass
class Paths:
    folder: Path
    blend: Path
    picture: Path

    def commands(self, texture_size: int, resolution: int) -> list[list[str]]:
        depth = ["depth", str(self.blend), "--resolution", str(resolution),
                 "--output", str(self.folder / "depth.png")]  # fmt: skip
        project = ["project", str(self.blend), "--image", str(self.picture),
                   "--texture-size", str(texture_size), "--resolution", str(resolution),
                   "--output", str(self.folder / "out" / "textured.blend"),
                   "--report", str(self.folder / "report.json")]  # fmt: skip
        return [depth, project]


def run_commands(timer: StageTimer, commands: list[list[str]]) -> Run:
    """Both commands through ``cli.main``, as the user runs them; fails loudly on an error."""
    with timer.run():
        for argv in commands:
            code = cli.main(argv)
            if code != 0:
                raise SystemExit(f"{argv[0]} exited with {code}")
    return Run(timer.total, dict(timer.seconds), timer.cpu_total, dict(timer.cpu))


# --------------------------------------------------------------------------------------------
# The scene


def build_scene(folder: Path, triangles: int, resolution: int) -> tuple[Paths, int]:
    """Save the subdivided Suzanne scene and a picture of the view's size to project."""
    fresh_scene(resolution)
    obj = subdivided_suzanne(triangles)
    count = triangle_count(obj)
    blend = folder / "suzanne.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), check_existing=False)
    picture = folder / "picture.png"
    y, x = np.mgrid[0:resolution, 0:resolution].astype(np.float32) / resolution
    rgb = np.stack(
        [0.5 + 0.4 * np.sin(9 * x), 0.5 + 0.4 * np.cos(7 * y), 0.5 + 0.4 * np.sin(5 * (x + y))],
        axis=-1,
    ).astype(np.float32)
    image = cycles_render.new_image("Picture", rgb)
    image.filepath_raw, image.file_format = str(picture), "PNG"
    image.save()
    bpy.data.images.remove(image)
    (folder / "out").mkdir(exist_ok=True)
    return Paths(folder, blend, picture), count


# --------------------------------------------------------------------------------------------
# Cycles


@dataclass
class CyclesTimes:
    depth: list[float] = field(default_factory=list)
    bake: list[float] = field(default_factory=list)
    threads: int = 0


def run_cycles(paths: Paths, resolution: int, texture_size: int, repeat: int) -> CyclesTimes:
    """Cycles on the saved scene: a 1-sample Depth pass and a 1-sample emission bake.

    The Depth passes render first, with the object's own material: with the emission material
    on, Cycles would also build its emitters for every triangle, which a depth pass does not
    need (3.6-6.5 s instead of 0.4-0.5 s on this mesh).
    """
    bpy.ops.wm.open_mainfile(filepath=str(paths.blend), load_ui=False)
    context_scene = bpy.context.scene
    obj = next(o for o in context_scene.objects if o.type == "MESH")
    cycles_render.use_cycles(context_scene, resolution, resolution, samples=1, filter_width=0.01)
    times = CyclesTimes(threads=context_scene.render.threads)
    for _ in range(repeat):
        start = time.perf_counter()
        cycles_render.render_depth(context_scene)
        times.depth.append(time.perf_counter() - start)
    picture = bpy.data.images.load(str(paths.picture))
    cycles_render.emission_material(obj, picture)
    target = bpy.data.images.new("Bake target", texture_size, texture_size, alpha=True)
    for _ in range(repeat):
        start = time.perf_counter()
        cycles_render.bake_emission(obj, target, int(MARGIN.default))
        times.bake.append(time.perf_counter() - start)
    return times


# --------------------------------------------------------------------------------------------
# Fresh process


def child(args: argparse.Namespace) -> int:
    """``--child``: run both commands once in this new process and print the figures as JSON."""
    timer = StageTimer()
    timer.install()
    paths = Paths(Path(args.child), Path(args.child) / "suzanne.blend",
                  Path(args.child) / "picture.png")  # fmt: skip
    run = run_commands(timer, paths.commands(args.texture_size, args.resolution))
    record = {**run.to_json(), "bpy_import": _bpy_import, "package_import": _package_import}
    print("BENCH-JSON " + json.dumps(record))
    return 0


def fresh_runs(paths: Paths, args: argparse.Namespace) -> list[tuple[Run, float, float, float]]:
    """Each: the first run in a new process, its imports (bpy, package) and the process's wall."""
    found = []
    for _ in range(args.fresh):
        start = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", str(paths.folder),
             "--texture-size", str(args.texture_size), "--resolution", str(args.resolution)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        wall = time.perf_counter() - start
        line = next(
            (ln for ln in completed.stdout.splitlines() if ln.startswith("BENCH-JSON ")), None
        )
        if completed.returncode != 0 or line is None:
            print(completed.stdout[-2000:], completed.stderr[-4000:], sep="\n")
            raise SystemExit("the fresh process failed")
        record = json.loads(line.removeprefix("BENCH-JSON "))
        found.append(
            (Run(record["total"], record["stages"], record["cpu_total"], record["cpu_stages"]),
             record["bpy_import"], record["package_import"], wall)
        )  # fmt: skip
    return found


# --------------------------------------------------------------------------------------------
# Report


def _range(values: list[float]) -> str:
    return f"{min(values):6.3f} {max(values):6.3f}"


def print_report(
    args: argparse.Namespace,
    triangles: int,
    first: Run,
    warm: list[Run],
    fresh: list[tuple[Run, float, float, float]],
    cycles: CyclesTimes,
) -> None:
    best = min(warm, key=lambda r: r.work)
    print(
        f"\nSubdivided Suzanne, {triangles:,} triangles; depth {args.resolution}^2, texture "
        f"{args.texture_size}^2. CPU cores: {os.cpu_count()}; Cycles threads: {cycles.threads}; "
        f"load average at the end {os.getloadavg()[0]:.1f}."
    )
    works, cpus = [r.work for r in warm], [r.cpu_work for r in warm]
    print(
        f"\nOurs, depth + project as commands, without opening/saving the .blend "
        f"(open+save {best.left_out:.3f} s in the best run):"
    )
    print(
        f"  warm, best of {len(warm)}: {best.work:.3f} s (range {min(works):.3f}-{max(works):.3f});"
        f" CPU {min(cpus):.3f}-{max(cpus):.3f} s"
    )
    print(f"  first call in this process: {first.work:.3f} s (CPU {first.cpu_work:.3f} s)")
    for number, (run, bpy_s, package_s, wall) in enumerate(fresh, 1):
        print(
            f"  fresh process {number}: first run {run.work:.3f} s (CPU {run.cpu_work:.3f} s; "
            f"imports: bpy {bpy_s:.2f} s, add-on {package_s:.2f} s; open+save "
            f"{run.left_out:.2f} s; process wall {wall:.1f} s)"
        )
    cycles_depth, cycles_bake = min(cycles.depth), min(cycles.bake)
    cycles_total = cycles_depth + cycles_bake
    print(
        f"\nCycles: Depth pass (1 sample) best {cycles_depth:.3f} s, emission bake "
        f"{args.texture_size}^2 (1 sample) best {cycles_bake:.3f} s, both {cycles_total:.3f} s "
        f"({len(cycles.depth)} run(s); depth {_range(cycles.depth)}, bake {_range(cycles.bake)})"
    )
    print(
        f"Speed-up, best against best: {cycles_total / best.work:.1f}x "
        f"(range {cycles_total / max(works):.1f}-{cycles_total / min(works):.1f}x)"
    )

    names = [s for s in dict.fromkeys(stage for stage, _, _ in STAGES) if s not in LEFT_OUT]
    names = [n for n in names if any(n in r.stages for r in [first, *warm])] + ["other"]
    columns = ["best run", "warm min", "warm max", "CPU min", "1st call"]
    columns += [f"fresh {i + 1}" for i in range(len(fresh))]
    print(f"\n{'stage (exclusive seconds)':26s}" + "".join(f" {c:>9s}" for c in columns))
    for name in [*names, "total (work)"]:
        if name == "total (work)":
            values, figures = works, [best.work, min(works), max(works), min(cpus), first.work]
            figures += [run.work for run, *_ in fresh]
        else:
            values = [r.stage(name) for r in warm]
            figures = [best.stage(name), min(values), max(values)]
            figures += [min(r.stage(name, cpu=True) for r in warm), first.stage(name)]
            figures += [run.stage(name) for run, *_ in fresh]
        print(f"{name:26s}" + "".join(f" {value:9.3f}" for value in figures))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--triangles", type=int, default=1_000_000)
    parser.add_argument("--texture-size", type=int, default=2048)
    parser.add_argument("--resolution", type=int, default=512, help="square view, pixels")
    parser.add_argument("--repeat", type=int, default=5, help="warm runs after the first")
    parser.add_argument("--fresh", type=int, default=2, help="runs in a fresh process")
    parser.add_argument("--cycles-repeat", type=int, default=2)
    parser.add_argument(
        "--cold-surface",
        action="store_true",
        help="forget the cached UV layout, Z-buffers and triangulation before each warm run "
        "(as for a changed mesh)",
    )
    parser.add_argument("--keep", metavar="DIR", help="build the scene here and keep it")
    parser.add_argument("--child", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_cli_") as temporary:
        folder = Path(args.keep or temporary)
        folder.mkdir(parents=True, exist_ok=True)
        paths, triangles = build_scene(folder, args.triangles, args.resolution)
        commands = paths.commands(args.texture_size, args.resolution)
        timer = StageTimer()
        timer.install()
        try:
            first = run_commands(timer, commands)
            warm = []
            for _ in range(args.repeat):
                if args.cold_surface:
                    surface._SURFACE_CACHE.clear()
                    depth_module._CAPTURE_CACHE.clear()
                    blender_scene._CORNERS_CACHE.clear()
                warm.append(run_commands(timer, commands))
        finally:
            timer.uninstall()
        fresh = fresh_runs(paths, args)
        cycles = run_cycles(paths, args.resolution, args.texture_size, max(args.cycles_repeat, 1))
        print_report(args, triangles, first, warm, fresh, cycles)
    print(f"\nBenchmark wall time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
