"""Command line: ``blender -b -c sd_depth_texture texture|project|depth FILE.blend ...``.

``main(argv) -> int`` is the handler registered with ``bpy.utils.register_cli_command``; tests
and scripts call it directly. Exit 0 on success; 1 with one clear line on a bad input or an
unusable result; 2 for malformed arguments (argparse).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence

import bpy

from .blender import engine, images, jobs, scene
from .core.errors import TextureError

log = logging.getLogger(__name__)


def add_view_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--camera", help="camera to work from (default: the scene camera)")
    parser.add_argument(
        "--resolution", type=int, default=512, help="generation size of the short side"
    )


def add_texture_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--texture-size", type=int, default=2048, help="texture width and height")


def add_generation_options(parser: argparse.ArgumentParser, prompt_required: bool = True) -> None:
    """The options of ``texture``; other commands that generate (batch) share them."""
    parser.add_argument("--prompt", required=prompt_required, help="what the texture should show")
    parser.add_argument("--negative-prompt", default="", help="what to avoid")
    parser.add_argument(
        "--model",
        help="Hugging Face id, local diffusers folder, single .safetensors file, or 'random'",
    )
    parser.add_argument("--config", help="diffusers config folder for a single .safetensors file")
    parser.add_argument("--device", default=None, help="auto, cuda, mps or cpu")
    parser.add_argument(
        "--online",
        action="store_true",
        help="allow downloading the model for this run (as Blender's --online-mode does)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--scheduler", default="dpmpp", help="dpmpp, euler_a, ddim or pndm")


def _add_file_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("blend", metavar="FILE.blend", help="the .blend file to read")
    add_view_options(parser)


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--object",
        action="append",
        dest="objects",
        metavar="NAME",
        help="mesh object to texture (repeatable; default: every mesh the camera sees)",
    )
    add_texture_options(parser)
    parser.add_argument(
        "--output", help="the .blend to write (default: FILE_textured.blend beside FILE)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blender -b -c sd_depth_texture",
        description="Depth-guided texturing with Stable Diffusion 2 depth.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    texture = commands.add_parser("texture", help="generate a texture from a prompt and bake it")
    _add_file_options(texture)
    _add_target_options(texture)
    add_generation_options(texture)

    project = commands.add_parser("project", help="project an existing image from the camera")
    _add_file_options(project)
    _add_target_options(project)
    project.add_argument("--image", required=True, help="the image to project")

    depth = commands.add_parser("depth", help="write the camera's depth map as a 16-bit PNG")
    _add_file_options(depth)
    depth.add_argument("--output", help="the PNG to write (default: FILE_depth.png beside FILE)")
    return parser


def _open_blend(path: str) -> None:
    if not path.lower().endswith(".blend") or not os.path.isfile(path):
        raise TextureError(f"There is no .blend file at '{path}'.")
    try:
        bpy.ops.wm.open_mainfile(filepath=os.path.abspath(path), load_ui=False)
    except RuntimeError as error:
        raise TextureError(f"Blender cannot open '{path}': it may be damaged.") from error


def _named_objects(names: list[str] | None) -> list[bpy.types.Object] | None:
    if not names:
        return None
    found = []
    for name in names:
        obj = bpy.data.objects.get(name)
        if obj is None:
            raise TextureError(f"There is no object named '{name}' in the file.")
        found.append(obj)
    return found


def _default_output(blend: str, suffix: str) -> str:
    stem, _ = os.path.splitext(os.path.abspath(blend))
    return stem + suffix


def _save_blend(path: str) -> None:
    """Write the .blend; Blender writes a temporary file and renames it, so no half-written file.

    Texture paths are already relative to ``path``; remapping would bend them to the source.
    """
    bpy.ops.wm.save_as_mainfile(filepath=path, check_existing=False, relative_remap=False)


def model_spec_from_args(args: argparse.Namespace):
    """The add-on's model choice with this run's --model/--config/--device/--online on top."""
    spec = jobs.model_spec(bpy.context, args.model)
    overrides = {"config": args.config, "device": args.device, "allow_online": args.online}
    return dataclasses.replace(spec, **{k: v for k, v in overrides.items() if v})


def current_camera_view(args: argparse.Namespace):
    """The --camera (or scene camera) view of the open file at --resolution."""
    context = bpy.context
    camera = scene.find_camera(context.scene, args.camera)
    return scene.camera_view(
        context.scene, camera, context.evaluated_depsgraph_get(), args.resolution
    )


def texture_open_file(
    args: argparse.Namespace,
    make_picture,
    objects: list[bpy.types.Object] | None,
    output: str,
) -> engine.Outcome:
    """Texture the open file from its camera and write it to ``output`` with its textures."""
    context = bpy.context
    outcome = engine.run(
        context.scene,
        context.view_layer,
        current_camera_view(args),
        objects,
        make_picture,
        jobs.options(args.texture_size, blend_path=output),
    )
    _save_blend(output)
    return outcome


def _checked_output(path: str) -> str:
    path = os.path.abspath(path)
    if not os.path.isdir(os.path.dirname(path)):
        raise TextureError(f"The folder for '{path}' does not exist.")
    return path


def _run(args: argparse.Namespace) -> str:
    """Carry out one command; returns the line to print on success."""
    # Inputs that need no scene are checked before the file is opened.
    if args.command == "texture":
        settings = jobs.generation_settings(vars(args))
    if args.command == "project":
        picture = jobs.load_picture(os.path.abspath(args.image))
    if args.command == "depth":
        output = _checked_output(args.output or _default_output(args.blend, "_depth.png"))
    else:
        output = _checked_output(args.output or _default_output(args.blend, "_textured.blend"))
    _open_blend(args.blend)

    if args.command == "depth":
        context = bpy.context
        prepared = engine.prepare(
            context.scene, context.view_layer, current_camera_view(args), None
        )
        images.save_depth_png(prepared.depth, output, context.scene)
        return f"Depth map written to {output}"
    if args.command == "texture":
        make_picture = jobs.diffusion_picture(
            model_spec_from_args(args), settings, jobs.TERMINAL.step, on_load=jobs.TERMINAL.message
        )
    else:
        make_picture = jobs.fixed_picture(picture)
    outcome = texture_open_file(args, make_picture, _named_objects(args.objects), output)
    return f"{outcome.summary()}. Written {output}"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (without the program name) and run the command; returns the exit code."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        print(_run(args))
    except TextureError as error:
        jobs.TERMINAL.close()
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
