"""The ``batch`` command: ``blender -b -c sd_depth_texture batch SOURCE... --out DIR [options]``.

A door onto :mod:`..batch`: it parses and checks the options, then runs the batch's numbered
steps and turns every refusal into one ``error:`` line. Exit 0 when every asset is done, 1 when
any failed or the batch could not start, 130 when interrupted (rerun to resume).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

from ..batch import outputs, plan, prompts, report, runners, worker
from ..core.diffusion.settings import GenerationSettings, validate_settings
from ..core.errors import TextureError
from ..core.geometry.views import generation_size
from . import options as cli_options

log = logging.getLogger(__name__)


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Register ``batch``; it shares the view, texture and generation options of ``texture``."""
    parser = commands.add_parser(
        "batch",
        help="texture every asset of .blend files, folders or asset libraries",
        description=(
            "Texture the assets (objects marked as assets, or every mesh) of many .blend files "
            "with one prompt each. Resumable: rerun the same command to continue."
        ),
    )
    parser.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="a folder (searched recursively), a .blend file, or an asset library's name",
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="where outputs, manifest and previews go"
    )
    parser.add_argument(
        "--all-meshes", action="store_true", help="texture every mesh object, not only assets"
    )
    parser.add_argument(
        "--prompt-template",
        metavar="TEXT",
        help="prompt per asset from its metadata: {name} {description} {tags} {catalog} ...",
    )
    parser.add_argument(
        "--prompts", metavar="FILE", help="CSV or TOML of prompts per asset or file"
    )
    parser.add_argument(
        "--retry-failed", action="store_true", help="texture assets that failed before again"
    )
    parser.add_argument(
        "--in-place",
        action="store_true",
        help="write into the source files (each is backed up under DIR/backups first)",
    )
    parser.add_argument("--manifest", metavar="FILE", help="default: DIR/manifest.jsonl")
    parser.add_argument(
        "--contact-sheet", choices=("html", "md", "none"), default="html", help="default: html"
    )
    parser.add_argument("--preview-size", type=int, default=256, help="preview renders' size")
    parser.add_argument("--ray", metavar="auto|ADDRESS", help="spread the work over a Ray cluster")
    parser.add_argument(
        "--ray-workers", type=int, help="workers (default: one per GPU, else per CPU share)"
    )
    parser.add_argument("--ray-python", metavar="PYTHON", help="Python (with bpy) for workers")
    parser.add_argument(
        "--cpu-threads", type=int, help="torch CPU threads per process (and CPUs per Ray worker)"
    )
    cli_options.add_view_options(parser)
    cli_options.add_texture_options(parser)
    cli_options.add_generation_options(parser, prompt_required=False)
    for action in parser._actions:
        if action.dest == "camera":
            action.help = "texture from this camera of each file (default: framed on each asset)"
        elif action.dest == "seed":
            action.help = "base seed; each asset's seed is derived from it and its identity"
        elif action.dest == "prompt":
            action.help = "one prompt for every asset (else --prompt-template or --prompts)"
        elif action.dest == "report":
            action.help = "not used by batch: each asset's report is in its manifest line"
    return parser


def check_options(options: Mapping[str, Any]) -> None:
    """Refuse settings that would fail every asset, before any file is opened."""
    validate_settings(
        GenerationSettings(
            prompt="check",
            steps=options["steps"],
            guidance=options["guidance"],
            scheduler=options["scheduler"],
            seed=options["seed"],
        ),
        has_init_image=False,
    )
    generation_size(1.0, options["resolution"])
    if options["texture_size"] < 8:
        raise TextureError(f"The texture size must be at least 8, got {options['texture_size']}.")
    if options["preview_size"] < 16:
        raise TextureError(f"The preview size must be at least 16, got {options['preview_size']}.")
    if options.get("views", 1) < 1:
        raise TextureError("--views must be 1 or more.")
    for name in ("ray_workers", "cpu_threads"):
        if options.get(name) is not None and options[name] < 1:
            raise TextureError(f"--{name.replace('_', '-')} must be at least 1.")


def _run(args: argparse.Namespace, options: dict[str, Any]) -> int:
    """The batch's steps; every refusal is a TextureError raised before any work, with the
    user's files as they were."""
    started = time.perf_counter()
    # 1. Options, prompts and the model: nothing read but the prompts file.
    check_options(options)
    cli_options.require_model_packages()
    prompt_source = prompts.prompt_source(options)
    spec = worker.model_spec(options)
    # The model as resolved (preferences included) decides pixels, not only --model.
    model = {"model": spec.source, "config": spec.config, "precision": spec.precision}
    # 2. Sources, --out and the manifest: refused here if they would overwrite anything.
    destinations = plan.check_destinations(options, worker.library_paths())
    # 3. One batch per --out from here on, and one run per source rewritten in place.
    with (
        outputs.OutLock(destinations.out),
        outputs.source_locks(destinations.sources, destinations.in_place),
    ):
        # 4. Scan the files and decide each asset; refuse to overwrite files no batch wrote.
        the_plan = plan.make_plan(
            {**options, **model},
            destinations,
            prompt_source,
            functools.partial(worker.scan_file, all_meshes=args.all_meshes),
        )
        outputs.refuse_foreign_files(
            the_plan.tasks,
            the_plan.manifest.records(),
            worker.output_record,
            the_plan.in_place,
            the_plan.sheet,
            report.is_contact_sheet,
        )
        for warning in the_plan.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        # 5. Texture: unreadable files are recorded first, then every asset to run.
        progress = report.ProgressLine(
            the_plan.to_run
            + the_plan.skipped_done
            + the_plan.skipped_failed
            + len(the_plan.file_failures),
            done=the_plan.skipped_done,
            failed=the_plan.skipped_failed,
        )
        sink = runners.Sink(the_plan.manifest, progress)
        for record in the_plan.file_failures:
            sink.finished(record)
        make_worker = functools.partial(worker.FileWorker, options, spec)
        if args.ray:
            runners.run_ray(
                the_plan.tasks,
                make_worker,
                sink,
                args.ray,
                args.ray_workers,
                args.cpu_threads,
                args.ray_python,
            )
        else:
            with _torch_threads(args.cpu_threads):
                runners.run_sequential(the_plan.tasks, make_worker(), sink)
        progress.close()
        # 6. Summary and contact sheet, from the whole manifest (earlier runs included).
        last = the_plan.manifest.read()
        summary = report.summarize(the_plan.keys, last, sink.records, time.perf_counter() - started)
        if the_plan.sheet:
            report.write_contact_sheet(the_plan.sheet, the_plan.keys, last, summary)
    print(summary.text(the_plan.manifest.path, the_plan.sheet, the_plan.warnings))
    return summary.exit_code


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """``--cpu-threads`` for this process while it textures, restored afterwards."""
    if not threads:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def main(args: argparse.Namespace) -> int:
    """Run a batch; exit 0 when every asset is done, 1 when any failed or nothing could run."""
    options = {key: value for key, value in vars(args).items() if not callable(value)}
    try:
        return _run(args, options)
    except TextureError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a folder or file the batch must write that it cannot
        where = f": '{error.filename}'" if error.filename else ""
        print(f"error: {error.strerror or error}{where}.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nerror: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130
