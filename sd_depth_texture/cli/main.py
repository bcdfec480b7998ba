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

from ..blender import engine, images, jobs, scene, whole
from ..core.errors import TextureError
from ..core.geometry.orbit import NamedView
from . import batch, options

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
    project.add_argument("--resolution", type=int, default=512, help="depth size of the short side")
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


def model_spec_from_args(args: argparse.Namespace):
    """The add-on's model choice with this run's --model/--config/--device/--online on top."""
    spec = jobs.model_spec(bpy.context, args.model)
    overrides = {"config": args.config, "device": args.device, "allow_online": args.online}
    return dataclasses.replace(spec, **{k: v for k, v in overrides.items() if v})


def camera_view(name: str | None, resolution: int):
    """The named (or scene) camera's view of the open file at a generation resolution."""
    context = bpy.context
    camera = scene.find_camera(context.scene, name)
    return scene.camera_view(context.scene, camera, context.evaluated_depsgraph_get(), resolution)


def _whole_object_targets(args: argparse.Namespace) -> list[bpy.types.Object] | None:
    """--object, else what the scene camera sees, else (no camera) every visible mesh."""
    named = _named_objects(args.objects)
    if named is not None or bpy.context.scene.camera is None:
        return named
    context = bpy.context
    seen = engine.read_view(
        context.scene, context.view_layer, camera_view(args.camera, args.resolution)
    )
    return [bpy.data.objects[name] for name in seen.seen]


def texture_work(args: argparse.Namespace, settings, output: str) -> engine.Work:
    """The ``texture`` command's run on the open file (one view or whole objects)."""
    context = bpy.context
    whole_object = args.views > 1 or bool(args.camera_collection)
    return jobs.texture_work(
        context.scene,
        context.view_layer,
        _whole_object_targets(args) if whole_object else _named_objects(args.objects),
        spec=model_spec_from_args(args),
        settings=settings,
        options=engine.Options(texture_size=args.texture_size, blend_path=output),
        view=None if whole_object else camera_view(args.camera, args.resolution),
        views=args.views,
        camera_collection=args.camera_collection or "",
        view_prompts=args.view_prompts,
        resolution=args.resolution,
        report_path=os.path.abspath(args.report) if args.report else None,
        on_step=jobs.TERMINAL.step,
        on_load=jobs.TERMINAL.message,
        on_view=lambda number, total, label: jobs.TERMINAL.message(
            f"view {number + 1}/{total}: {label}", 1.0
        ),
    )


def project_work(args: argparse.Namespace, pictures: list, output: str) -> engine.Work:
    """The ``project`` command's run: one image from one camera, or several blended.

    Without --object: what the camera sees, or with several cameras what any of them sees.
    """
    context = bpy.context
    options = engine.Options(texture_size=args.texture_size, blend_path=output)
    cameras = args.camera or [None]
    if len(cameras) != len(pictures):
        raise TextureError(
            f"{len(pictures)} images need {len(pictures)} cameras: give one --camera per --image."
        )
    named = _named_objects(args.objects)
    if len(pictures) == 1:
        view = camera_view(cameras[0], args.resolution)
        return engine.single_view_work(
            context.scene, context.view_layer, view, named, jobs.fixed_picture(pictures[0]),
            options,
        )  # fmt: skip
    views = [NamedView(name, camera_view(name, args.resolution)) for name in cameras]
    for view, picture in zip(views, pictures, strict=True):
        jobs.check_aspect(picture, view.view)
    if named is None:
        seen = {
            name
            for view in views
            for name in engine.read_view(context.scene, context.view_layer, view.view).seen
        }
        named = [obj for obj in scene.visible_meshes(context.scene, context.view_layer)
                 if obj.name in seen]  # fmt: skip
    return whole.whole_object_work(
        context.scene, context.view_layer, named, lambda _obj, _mesh: views,
        jobs.fixed_pictures(pictures), options,
        report_path=os.path.abspath(args.report) if args.report else None,
    )  # fmt: skip


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
        if args.views < 1:
            raise TextureError("--views must be 1 or more.")
    if args.command == "project":
        pictures = [jobs.load_picture(os.path.abspath(path)) for path in args.image]
    if args.command == "depth":
        output = _checked_output(args.output or _default_output(args.blend, "_depth.png"))
    else:
        output = _checked_output(args.output or _default_output(args.blend, "_textured.blend"))
    if getattr(args, "report", None):
        _checked_output(args.report)
    _open_blend(args.blend)

    if args.command == "depth":
        context = bpy.context
        seen = engine.read_view(
            context.scene, context.view_layer, camera_view(args.camera, args.resolution)
        )
        images.save_depth_png(seen.depth, output, context.scene)
        return f"Depth map written to {output}"
    if args.command == "texture":
        work = texture_work(args, settings, output)
    else:
        work = project_work(args, pictures, output)
    outcome = work.run()
    images.save_blend_copy(output)
    return f"{outcome.summary()}. Written {output}"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (without the program name) and run the command; returns the exit code."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "batch":
        return batch.main(args)
    try:
        print(_run(args))
    except TextureError as error:
        jobs.TERMINAL.close()
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
