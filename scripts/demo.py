"""The README's main job: build the sample scene and texture it with the default model.

Writes to out/demo/ (or --out): sample.blend, sample_textured.blend with textures/ beside it,
depth.png (16-bit, what the model saw), and renders of the scene before and after
(preview_before.png, preview.png).
Where the default model cannot be had (not cached, no network), it says so in one line and
runs with the built-in random model so the whole path still runs; its textures are noise.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bpy  # noqa: E402
from huggingface_hub import try_to_load_from_cache  # noqa: E402

from sd_depth_texture.blender import sample  # noqa: E402
from sd_depth_texture.cli import main as cli  # noqa: E402
from sd_depth_texture.defaults import MODEL_ID as DEFAULT_MODEL  # noqa: E402
from sd_depth_texture.defaults import MODEL_REVISION as DEFAULT_REVISION  # noqa: E402
from sd_depth_texture.defaults import RANDOM_MODEL as RANDOM_SOURCE  # noqa: E402

PROMPT = "a weathered bronze statue of a monkey head, green patina, museum photo"


def default_model_reachable() -> bool:
    """Cached already, or the Hub's name resolves (a quick check, not a download)."""
    cached = try_to_load_from_cache(DEFAULT_MODEL, "model_index.json", revision=DEFAULT_REVISION)
    if isinstance(cached, str):
        return True
    try:
        socket.setdefaulttimeout(3)
        socket.getaddrinfo("huggingface.co", 443)
    except OSError:
        return False
    return True


def render_preview(blend: Path, output: Path) -> None:
    """A Workbench render of the textured scene, showing the textures as baked."""
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.display.shading.light = "STUDIO"
    scene.display.shading.color_type = "TEXTURE"
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = str(output)
    bpy.ops.render.render(write_still=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "out" / "demo"), help="output folder")
    parser.add_argument("--model", help="model source (default: the pinned SD2-depth mirror)")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--texture-size", type=int, default=1024)
    args = parser.parse_args(argv)

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    sample.build_sample_scene()
    source = out / "sample.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(source))

    model = args.model or DEFAULT_MODEL
    online = []
    if model == DEFAULT_MODEL:
        if default_model_reachable():
            online = ["--online"]
        else:
            print(
                f"The default model {DEFAULT_MODEL} is not cached and the Hub is unreachable: "
                "pass --model PATH (a local diffusers folder) for real textures; "
                "continuing with --model random, whose textures are noise."
            )
            model = RANDOM_SOURCE

    textured = out / "sample_textured.blend"
    steps = ["--steps", str(args.steps if model != RANDOM_SOURCE else 4)]
    code = cli.main(
        ["texture", str(source), "--prompt", args.prompt, "--model", model, *steps, *online,
         "--texture-size", str(args.texture_size), "--output", str(textured)]
    )  # fmt: skip
    if code:
        return code
    code = cli.main(["depth", str(source), "--output", str(out / "depth.png")])
    if code:
        return code
    render_preview(source, out / "preview_before.png")
    render_preview(textured, out / "preview.png")
    print(f"Demo written to {out}: sample_textured.blend, textures/, depth.png, preview.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
