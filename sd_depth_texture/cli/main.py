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
import numpy as np

from ..blender import flow, images, preferences
from ..blender.files import open_blend, save_blend_copy
from ..blender.pictures import load_picture
from ..core.diffusion.settings import GenerationSettings, ModelSpec
from ..core.errors import CancelledError, TextureError
from ..defaults import RESOLUTION, check_numbers
from ..request import OutputOptions, TextureRequest, ViewSource
from . import batch, options
from .terminal import TerminalLine

log = logging.getLogger(__name__)


def _add_file_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("blend", metavar="FILE.blend", help="the .blend file to read")
    options.add_view_options(parser)


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--object",
        action="append",
        dest="objects",
        metavar="NAME",
        help="mesh object to texture (repeatable; default: every mesh the camera sees)",
    )
    options.add_texture_options(parser)
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
    options.add_generation_options(texture)

    project = commands.add_parser(
        "project", help="project images you have, from the camera or from --camera per --image"
    )
    project.add_argument("blend", metavar="FILE.blend", help="the .blend file to read")
    options.add_number(project, RESOLUTION, "depth size of the short side")
    project.add_argument(
        "--image", action="append", required=True, help="an image to project (repeatable)"
    )
    project.add_argument(
        "--camera",
        action="append",
        help="the camera each --image was seen from, in the same order (default: scene camera)",
    )
    project.add_argument("--report", metavar="FILE.json", help="write a JSON report of the run")
    _add_target_options(project)

    depth = commands.add_parser("depth", help="write the camera's depth map as a 16-bit PNG")
    _add_file_options(depth)
    depth.add_argument("--output", help="the PNG to write (default: FILE_depth.png beside FILE)")

    batch.add_parser(commands)
    return parser


def _default_output(blend: str, suffix: str) -> str:
    stem, _ = os.path.splitext(os.path.abspath(blend))
    return stem + suffix


def model_spec_from_args(args: argparse.Namespace) -> ModelSpec:
    """The add-on's model choice with this run's --model/--config/--device/--online on top."""
    spec = preferences.model_spec(args.model)
    overrides = {"config": args.config, "device": args.device, "allow_online": args.online}
    return dataclasses.replace(spec, **{k: v for k, v in overrides.items() if v})


def generation_from_args(args: argparse.Namespace) -> GenerationSettings:
    return GenerationSettings(
        prompt=args.prompt or "",
        negative_prompt=args.negative_prompt,
        seed=args.seed,
        steps=args.steps,
        guidance=args.guidance,
        scheduler=args.scheduler,
    )


def request_from_args(
    args: argparse.Namespace, output: str, pictures: tuple[np.ndarray, ...] = ()
) -> TextureRequest:
    """The request a ``texture`` or ``project`` command line asks for (nothing read yet)."""
    out = OutputOptions(
        texture_size=args.texture_size,
        margin=args.margin,
        uv_map=args.uv_map,
        blend_path=output,
        report_path=os.path.abspath(args.report) if args.report else None,
    )
    targets = tuple(args.objects) if args.objects else None
    if args.command == "project":
        cameras = tuple(args.camera or [""])
        return TextureRequest(
            views=ViewSource(resolution=args.resolution, cameras=cameras),
            targets=targets,
            pictures=pictures,
            output=out,
        )
    return TextureRequest(
        views=ViewSource.choose(
            args.views,
            resolution=args.resolution,
            collection=args.camera_collection or "",
            camera=args.camera or "",
        ),
        targets=targets,
        generation=generation_from_args(args),
        model=model_spec_from_args(args),
        view_prompts=args.view_prompts,
        output=out,
    )


def _checked_output(path: str) -> str:
    path = os.path.abspath(path)
    if not os.path.isdir(os.path.dirname(path)):
        raise TextureError(f"The folder for '{path}' does not exist.")
    return path


def _run(args: argparse.Namespace, terminal: TerminalLine) -> str:
    """Carry out one command; returns the line to print on success."""
    # Every number first, then everything else that needs no scene, before the file is opened.
    check_numbers(vars(args), "cli")
    if args.command == "depth":
        output = _checked_output(args.output or _default_output(args.blend, "_depth.png"))
    else:
        output = _checked_output(args.output or _default_output(args.blend, "_textured.blend"))
        if args.report:
            _checked_output(args.report)
        if args.command == "texture":
            options.require_model_packages()
        pictures = ()
        if args.command == "project":
            pictures = tuple(load_picture(os.path.abspath(path)) for path in args.image)
        request = request_from_args(args, output, pictures).check("cli")
    open_blend(args.blend)

    if args.command == "depth":
        seen = flow.read_view(flow.camera_view(args.camera or "", args.resolution, "cli"))
        images.save_depth_png(seen.depth, output, bpy.context.scene)
        return f"Depth map written to {output}"
    outcome = flow.prepare(request, "cli").run(terminal.progress())
    terminal.close()
    save_blend_copy(output)
    return f"{outcome.summary()}. Written {output}"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (without the program name) and run the command; returns the exit code."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "batch":
        return batch.main(args)
    terminal = TerminalLine()
    try:
        print(_run(args, terminal))
    except CancelledError:
        terminal.close()
        print("error: cancelled; nothing was written.", file=sys.stderr)
        return 1
    except TextureError as error:
        terminal.close()
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        terminal.close()
        print("error: interrupted; nothing was written.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
