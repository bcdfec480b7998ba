"""Command line: ``blender -b -c sd_depth_texture texture|project|depth FILE.blend ...``.

``main(argv) -> int`` is the handler registered with ``bpy.utils.register_cli_command``; tests
and scripts call it directly. Exit 0 on success; 1 with one clear line on a bad input or an
unusable result; 2 for malformed arguments (argparse).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

import bpy
import numpy as np

from ..batch.outputs import in_place_locks
from ..blender import flow, images, outputs, provenance
from ..blender.files import copy_whole, open_blend, save_blend_copy, write_whole, writing
from ..blender.pictures import load_picture
from ..core.errors import CancelledError, TextureError
from ..core.memory import keeping_freed_memory, without_huge_pages
from ..core.text import shown
from ..core.validation import check_settings
from ..defaults import RESOLUTION
from ..messages import CLI, word
from ..request import TextureRequest, build_request
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
        "--output",
        help="the .blend to write, its textures in textures/<its name>/ beside it; missing "
        "folders are made (default: FILE_textured.blend beside FILE)",
    )
    parser.add_argument(
        "--in-place",
        action="store_true",
        help="write into FILE.blend itself; the file as it was is kept as FILE.backup.blend",
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
    options.add_number(project, RESOLUTION)
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
    depth.add_argument(
        "--force",
        action="store_true",
        help="replace --output even if it is a .blend or another file that is not a depth map "
        "(it is kept as NAME.backup.EXT first)",
    )

    batch.add_parser(commands)
    return parser


def _default_output(blend: str, suffix: str) -> str:
    stem, _ = os.path.splitext(os.path.abspath(blend))
    return stem + suffix


def request_from_args(
    args: argparse.Namespace, output: str, pictures: tuple[np.ndarray, ...] = ()
) -> TextureRequest:
    """The request a ``texture`` or ``project`` command line asks for (nothing read yet)."""
    settings = {
        **options.with_provenance(vars(args)),
        "output": output,
        "report": os.path.abspath(args.report) if args.report else None,
    }
    if args.command == "project":
        paths = tuple(os.path.abspath(path) for path in args.image)
        return build_request(
            {**settings, "cameras": args.camera, "camera": None},
            targets=args.objects,
            pictures=pictures,
            picture_sources=paths,
        )
    return build_request(settings, targets=args.objects, model=options.model_spec(vars(args)))


def _checked_output(args: argparse.Namespace) -> str:
    """The .blend a ``texture`` or ``project`` command writes, and its report, checked before
    the file is opened (:func:`..blender.flow.prepare` checks them again with the textures)."""
    source = os.path.abspath(args.blend)
    if args.in_place:
        if args.output and not outputs.same_file(args.output, source):
            raise TextureError(
                "--in-place writes into FILE.blend itself: leave out --output, or drop --in-place."
            )
        output = source
    else:
        output = os.path.abspath(args.output or _default_output(args.blend, "_textured.blend"))
    outputs.check_blend_output(output, source, args.in_place)
    inputs = [source, *(os.path.abspath(path) for path in getattr(args, "image", None) or [])]
    outputs.check_report(args.report, inputs=inputs, outputs=[output])
    return output


def _depth(args: argparse.Namespace) -> str:
    """``depth``: the camera's depth map as a 16-bit PNG, written whole."""
    output, backup = outputs.plan_depth(
        args.output or _default_output(args.blend, "_depth.png"),
        os.path.abspath(args.blend),
        args.force,
    )
    open_blend(args.blend)
    context = bpy.context
    seen = flow.read_view(flow.camera_view(args.camera or "", args.resolution))
    write_whole(output, lambda path: images.save_depth_png(seen.depth, path, context.scene), backup)
    kept = f" (the file it replaced is kept as {backup})" if backup else ""
    return f"Depth map written to {output}{kept}"


def _run(args: argparse.Namespace, terminal: TerminalLine) -> str:
    """Carry out one command; returns the line to print on success."""
    # Every number first, then everything else that needs no scene, before the file is opened.
    check_settings(vars(args))
    if args.command == "depth":
        return _depth(args)
    output = _checked_output(args)
    if args.command == "texture":
        options.require_model_packages()
    pictures = ()
    if args.command == "project":
        pictures = tuple(load_picture(os.path.abspath(path)) for path in args.image)
    request = request_from_args(args, output, pictures)
    if request.model is not None and request.generation is not None:
        options.show_licence(request.model)
    # The certificate and key too, before the file is opened (prepare uses what is checked).
    provenance.marking_for(request.output.c2pa_cert, request.output.c2pa_key)
    open_blend(args.blend)

    run = flow.prepare(request)
    outcome = run.run(terminal.progress())
    terminal.close()
    backup = run.plan.backup
    try:
        if backup is not None:
            with writing(backup):
                copy_whole(output, backup)
        save_blend_copy(output)
    except BaseException:
        # The .blend was not written: take back the files the run made for it.
        outcome.files.take_back()
        if backup is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(backup)
        raise
    kept = f" (the file as it was is kept as {backup})" if backup else ""
    return f"{outcome.summary()}. Written {output}{kept}"


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Ctrl+C raises KeyboardInterrupt while a command runs.

    Blender in background mode answers the first Ctrl+C by only setting a flag that Python code
    never sees, and the second by exiting at once, wherever a file write is; Python's own
    handler lets the command stop cleanly instead.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if previous is not None:  # None: a handler Python did not install, not restorable
            signal.signal(signal.SIGINT, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (without the program name) and run the command; returns the exit code."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "batch":
        return batch.main(args)
    terminal = TerminalLine()
    try:
        with (
            _interruptible(),
            in_place_locks([args.blend] if getattr(args, "in_place", False) else []),
            without_huge_pages(),  # a command's arrays are mostly fresh memory: see core.memory
            keeping_freed_memory(),
        ):
            print(shown(_run(args, terminal)))
    except CancelledError:
        terminal.close()
        print("error: cancelled; nothing was written.", file=sys.stderr)
        return 1
    except TextureError as error:
        terminal.close()
        print(f"error: {word(error, CLI)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        terminal.close()
        print("error: interrupted; nothing was written.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
