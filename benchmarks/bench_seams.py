"""Seams where views meet, measured on a real textured object.

The Spot cow (../shared/assets/spot_cow) is rendered with its true texture from eight views
(``render_texture``, the project's own renderer: a ring of six, top and bottom), each picture
with its own exposure (up to 20 %) and white balance (up to 6 % per channel), as generated
views differ; the first view is left as it is. The pictures are projected back through the
one painting path (``paint_group``) three ways:

- plain cos^4 gather: the weighted mean of every view, cos^4 weights, no fall-off, no matching;
- this project, no matching: cos^4 times the edge fall-off;
- this project, matched: the same with each view's colours matched to the views before it.

Printed for each: the UV-seam figure (colour difference across seam edge pairs against the same
step inside the islands; ~1 = the seam does not show), the view-border figure (jump between
neighbouring texels whose dominant view differs against neighbours of one view, on the same
borders for all three: those of the plain gather; every texture row, where a report reads 64)
and the mean error against the true texture
on the painted texels. ``--images DIR`` writes labelled close-ups of the three results and the
truth, rendered from between two views (docs/images/seams_cow_*.png).

    .venv/bin/python benchmarks/bench_seams.py [--texture-size 1024] [--resolution 512]
        [--seed 0] [--images docs/images]
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

from sd_depth_texture.blender import images, scene  # noqa: E402
from sd_depth_texture.blender.targets import object_front  # noqa: E402
from sd_depth_texture.core.bake.paint import PaintTarget, paint_group  # noqa: E402
from sd_depth_texture.core.bake.render import render_texture  # noqa: E402
from sd_depth_texture.core.bake.seams import uv_seam_figure, view_border_figure  # noqa: E402
from sd_depth_texture.core.bake.surface import texel_surface  # noqa: E402
from sd_depth_texture.core.geometry.depth import capture_depth  # noqa: E402
from sd_depth_texture.core.geometry.mesh import scene_geometry  # noqa: E402
from sd_depth_texture.core.geometry.orbit import object_bounds, orbit_view, orbit_views  # noqa: E402
from sd_depth_texture.core.pictures import given_pictures  # noqa: E402

COW = REPO.parent / "shared" / "assets" / "spot_cow"
CLOSE_UP = (slice(60, 190), slice(100, 280))  # rows, columns of the 384^2 render
VARIANTS = (  # label, match colours, edge fall-off
    ("plain cos^4 gather", False, False),
    ("this project, no matching", False, True),
    ("this project, matched", True, True),
)


def load_cow():
    """The cow's mesh arrays and its true texture (S, S, 3), row 0 at the top."""
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.wm.obj_import(filepath=str(COW / "cow.obj"))
    (cow,) = bpy.context.selected_objects
    mesh = scene.mesh_arrays(cow, bpy.context.evaluated_depsgraph_get())
    image = bpy.data.images.load(str(COW / "cow_texture.png"))
    truth = images.image_to_array(image)[..., :3].copy()
    return cow, mesh, truth


def view_pictures(mesh, truth, views, rng):
    """Each view's render of the true texture with its own exposure and white balance."""
    pictures, corrections = [], []
    for number, named in enumerate(views):
        capture = capture_depth(named.view, mesh.vertices, mesh.triangles)
        rendered, _, _ = render_texture(
            capture, mesh.vertices, mesh.triangles, mesh.uv, mesh.uv_triangles, 0, truth
        )
        exposure = 1.0 if number == 0 else rng.uniform(0.8, 1.2)
        balance = np.ones(3) if number == 0 else rng.uniform(0.94, 1.06, 3)
        gain = (exposure * balance).astype(np.float32)
        pictures.append(np.clip(rendered * gain, 0.0, 1.0))
        corrections.append(gain)
    return pictures, corrections


def close_up(mesh, texture, view, crop):
    rendered, mask, _ = render_texture(
        capture_depth(view, mesh.vertices, mesh.triangles), mesh.vertices, mesh.triangles,
        mesh.uv, mesh.uv_triangles, 0, texture,
    )  # fmt: skip
    rendered[~mask] = 0.75
    rows, cols = crop
    return rendered[rows, cols]


def write_close_ups(folder: Path, mesh, textures: dict[str, np.ndarray], front) -> list[Path]:
    """Labelled renders of each texture from between two views, and a tighter close-up."""
    from PIL import Image, ImageDraw  # the benchmark's own dependency, for the labels

    center, radius = object_bounds(mesh.vertices)
    view = orbit_view(center, radius, -157.5, 10.0, size=384, front=front)
    written = []
    for name, crop in (("whole", (slice(40, 344), slice(0, 384))),
                       ("close", CLOSE_UP)):  # fmt: skip
        tiles = []
        for label, texture in textures.items():
            picture = close_up(mesh, texture, view, crop)
            tile = Image.fromarray((np.clip(picture, 0, 1) * 255 + 0.5).astype(np.uint8))
            if name == "close":
                tile = tile.resize((tile.width * 2, tile.height * 2), Image.NEAREST)
            canvas = Image.new("RGB", (tile.width, tile.height + 18), "white")
            canvas.paste(tile, (0, 18))
            ImageDraw.Draw(canvas).text((4, 3), label, fill="black")
            tiles.append(canvas)
        strip = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1),
                                  tiles[0].height), "white")  # fmt: skip
        x = 0
        for tile in tiles:
            strip.paste(tile, (x, 0))
            x += tile.width + 4
        path = folder / f"seams_cow_{name}.png"
        strip.save(path, optimize=True)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texture-size", type=int, default=1024)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", metavar="DIR", help="write labelled close-ups here")
    args = parser.parse_args()
    if not (COW / "cow.obj").is_file():
        sys.exit(f"The Spot cow is not at {COW}")

    cow, mesh, truth = load_cow()
    front = object_front(cow)
    center, radius = object_bounds(mesh.vertices)
    views = orbit_views(center, radius, 8, size=args.resolution, front=front)
    rng = np.random.default_rng(args.seed)
    pictures, gains = view_pictures(mesh, truth, views, rng)
    print(
        f"Spot cow, {mesh.triangles.shape[0]} triangles, {len(views)} views at "
        f"{args.resolution}^2, texture {args.texture_size}^2; per-view colour gains:"
    )
    for named, gain in zip(views, gains, strict=True):
        print(f"  {named.label:<12} " + " ".join(f"{g:.3f}" for g in gain))

    size = args.texture_size
    surface = texel_surface(mesh.vertices, mesh.triangles, mesh.uv, mesh.uv_triangles, size)
    geometry = scene_geometry([mesh])
    truth_texture = np.asarray(
        bpy.data.images["cow_texture.png"].pixels[:], dtype=np.float32
    ).reshape(truth.shape[0], truth.shape[1], 4)[::-1, :, :3]
    if truth_texture.shape[0] != size:  # the truth at the texture's size, for the errors
        index = (np.arange(size) + 0.5) * truth_texture.shape[0] / size
        truth_texture = truth_texture[index.astype(int)][:, index.astype(int)]
    results = {}
    for label, match, falloff in VARIANTS:
        start = time.perf_counter()
        painted, _ = paint_group(
            [PaintTarget(mesh.name, mesh, 0, surface)], views, geometry,
            given_pictures(pictures), fill=True, margin=16, match_colors=match, falloff=falloff,
        )  # fmt: skip
        results[label] = (painted[mesh.name], time.perf_counter() - start)

    borders = results[VARIANTS[0][0]][0].dominant  # the same borders for every variant
    truth_seam = uv_seam_figure(truth_texture, mesh.vertices, mesh.triangles, mesh.uv,
                                mesh.uv_triangles)  # fmt: skip
    print(
        f"\nThe true texture itself: UV seams {truth_seam.seam:.4f} against "
        f"{truth_seam.reference:.4f} inside (ratio {truth_seam.ratio:.2f})\n"
    )
    header = (f"{'':<28}{'UV seam':>9}{'inside':>9}{'ratio':>7}  {'border':>8}{'within':>9}"
              f"{'ratio':>7}  {'error':>7}{'seconds':>9}")  # fmt: skip
    print(header)
    for label, (result, seconds) in results.items():
        seam = uv_seam_figure(result.texture, mesh.vertices, mesh.triangles, mesh.uv,
                              mesh.uv_triangles, result.painted)  # fmt: skip
        border = view_border_figure(result.texture, borders, result.painted, rows=size)
        error = np.abs(result.texture - truth_texture)[result.painted].mean()
        print(f"{label:<28}{seam.seam:>9.4f}{seam.reference:>9.4f}{seam.ratio:>7.2f}  "
              f"{border.seam:>8.4f}{border.reference:>9.4f}{border.ratio:>7.2f}  "
              f"{error:>7.4f}{seconds:>9.2f}")  # fmt: skip
    matched = results[VARIANTS[2][0]][0].report.views
    print("\nColour corrections of the matched run (gain; offset; overlap texels):")
    for view in matched:
        match = view["color_match"]
        print(
            f"  {view['label']:<12} {match['gain']}; {match['offset']}; "
            f"{match['overlap_texels']}{'' if match['applied'] else ' (not applied)'}"
        )
    print(f"\n(border pairs: {border.pairs}; UV seam pairs: {seam.pairs})")

    if args.images:
        folder = Path(args.images)
        folder.mkdir(parents=True, exist_ok=True)
        textures = {"true texture": truth_texture}
        textures.update({label: result.texture for label, (result, _) in results.items()})
        for path in write_close_ups(folder, mesh, textures, front):
            print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
