"""The ``batch`` command: ``blender -b -c sd_depth_texture batch SOURCE... --out DIR [options]``.

A door onto :mod:`..batch`: it only parses the options, builds the template request with the
one builder (:func:`..batch.run.template_request`) and runs the batch's steps
(:func:`..batch.run.run_batch`), turning every refusal into one ``error:`` line. Exit 0 when
every asset is done, 1 when any failed or the batch could not start, 130 when interrupted
(rerun to resume).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from .. import defaults
from ..batch.plan import BatchOptions
from ..batch.prompts import prompt_source
from ..batch.run import run_batch, template_request
from ..blender import provenance
from ..core.errors import TextureError
from ..messages import CLI, word
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
    parser.add_argument("--ray", metavar="auto|ADDRESS", help="spread the work over a Ray cluster")
    parser.add_argument("--ray-python", metavar="PYTHON", help="Python (with bpy) for workers")
    cli_options.add_numbers(parser, defaults.BATCH)
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


def main(args: argparse.Namespace) -> int:
    """Run a batch; exit 0 when every asset is done, 1 when any failed or nothing could run."""
    settings = {key: value for key, value in vars(args).items() if not callable(value)}
    settings = cli_options.with_provenance(settings)
    try:
        # Options, prompts and the model, checked before any file is opened.
        batch_options = BatchOptions.from_settings(settings)
        cli_options.require_model_packages()
        template = template_request(settings, cli_options.model_spec(settings))
        cli_options.show_licence(template.model)
        # Signing is checked once here (and the installation's certificate made, before any
        # worker starts), so a bad certificate or key stops the batch before any work.
        provenance.marking_for(template.output.c2pa_cert, template.output.c2pa_key)
        return run_batch(batch_options, template, prompt_source(settings))
    except TextureError as error:
        print(f"error: {word(error, CLI)}", file=sys.stderr)
        return 1
    except OSError as error:  # a folder or file the batch must write that it cannot
        where = f": '{error.filename}'" if error.filename else ""
        print(f"error: {error.strerror or error}{where}.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nerror: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130
