"""Texel density of a one-view projection at several texture sizes, from every run's report.

    python benchmarks/bench_texel_density.py [--sizes 512 1024 2048] [--upscale 1]

The sample scene (Suzanne, a cube, a floor), one 768x512 picture from its camera projected with
``project`` into textures of each size; prints each object's texel density (picture pixels per
painted texel, the report's ``texel_density``) and whether the run noted it as low. An upscaled
picture (``--upscale 2`` or ``4``) is simulated by projecting a picture that many times larger,
which is what the projection of an upscaled view receives.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import bpy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sd_depth_texture
from sd_depth_texture.blender import images, sample
from sd_depth_texture.cli import main as cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--upscale", type=int, default=1)
    args = parser.parse_args()
    sd_depth_texture.register()
    folder = Path(tempfile.mkdtemp())
    sample.build_sample_scene()
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "sample.blend"))
    height, width = 512 * args.upscale, 768 * args.upscale
    picture = np.random.default_rng(0).random((height, width, 3), dtype=np.float32)
    image = images.array_to_image("picture", picture)
    image.filepath_raw, image.file_format = str(folder / "picture.png"), "PNG"
    image.save()
    print(f"one {width}x{height} picture; picture pixels per painted texel (* = noted as low)")
    for size in args.sizes:
        report = folder / f"report_{size}.json"
        code = cli.main(
            ["project", str(folder / "sample.blend"), "--image", str(folder / "picture.png"),
             "--texture-size", str(size), "--report", str(report),
             "--output", str(folder / f"out_{size}.blend")]
        )  # fmt: skip
        if code != 0:
            raise SystemExit(code)
        objects = json.loads(report.read_text())["objects"]
        figures = ", ".join(
            f"{entry['name']} {entry['texel_density']:.3f}"
            + ("*" if any("texel density" in note for note in entry["notes"]) else "")
            for entry in objects
        )
        print(f"texture {size}: {figures}")


if __name__ == "__main__":
    main()
