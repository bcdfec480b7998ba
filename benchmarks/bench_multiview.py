"""Per-view overhead of a whole-object run, everything but the diffusion itself.

Runs a 10-view whole-object texturing of the Spot cow (../shared/assets/spot_cow; a subdivided
Suzanne where that is absent) at 2048x2048 through the one flow (``flow.prepare`` then
``Run.compute``), projecting a ready picture per view instead of generating one, so what is
timed is reading the scene and the UV layout, and per view the depth, rendering the current
texture, masks and projection, then fill, margin and the report. Nothing is written.

    .venv/bin/python benchmarks/bench_multiview.py [--views 10] [--texture-size 2048]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bpy  # noqa: E402
import numpy as np  # noqa: E402

from sd_depth_texture.blender import flow, sample  # noqa: E402
from sd_depth_texture.request import OutputOptions, TextureRequest, ViewSource  # noqa: E402

COW = REPO.parent / "shared" / "assets" / "spot_cow" / "cow.obj"


def load_subject() -> bpy.types.Object:
    bpy.ops.wm.read_homefile(use_empty=True)
    if COW.is_file():
        bpy.ops.wm.obj_import(filepath=str(COW))
        return bpy.context.selected_objects[0]
    sample.build_sample_scene()
    for name in ("Floor", "Cube"):
        bpy.data.objects.remove(bpy.data.objects[name])
    suzanne = bpy.data.objects["Suzanne"]
    suzanne.modifiers["Subdivision"].levels = 2
    return suzanne


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=10)
    parser.add_argument("--texture-size", type=int, default=2048)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    subject = load_subject()
    rng = np.random.default_rng(0)
    picture = rng.random((args.resolution, args.resolution, 3)).astype(np.float32)
    request = TextureRequest(
        views=ViewSource(resolution=args.resolution, orbit=args.views),
        targets=(subject.name,),
        pictures=(picture,) * args.views,
        output=OutputOptions(texture_size=args.texture_size),
    )
    print(f"{subject.name}: {len(subject.data.polygons)} faces, {args.views} views, "
          f"texture {args.texture_size}^2, views {args.resolution}^2")  # fmt: skip
    for attempt in range(args.repeat):
        start = time.perf_counter()
        run = flow.prepare(request)
        read = time.perf_counter() - start
        start = time.perf_counter()
        computed = run.compute()
        painted = time.perf_counter() - start
        run.abort()  # nothing is written: undo what prepare changed, if anything
        report = computed.painted[subject.name].report
        per_view = {
            key: float(np.mean([v["seconds"][key] for v in report.views]))
            for key in ("views", "projection")
        }
        used = len(report.views)
        print(
            f"run {attempt + 1}: read+UV raster {read:.2f} s; painting {painted:.2f} s for "
            f"{used} views (per view: depth/render/masks {per_view['views'] * 1000:.0f} ms, "
            f"projection {per_view['projection'] * 1000:.0f} ms); fill+margin "
            f"{report.seconds['fill']:.2f} s; report {report.seconds['report']:.2f} s; "
            f"total non-diffusion per view {(read + painted) / used * 1000:.0f} ms; "
            f"coverage before fill {report.coverage_before_fill:.3f}"
        )


if __name__ == "__main__":
    main()
