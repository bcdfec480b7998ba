"""A batch, step by step: one template request in, a manifest line per asset out.

The ``batch`` command (:mod:`..cli.batch`) only parses its options; this module holds the
steps. The request is built once, with the one builder every door uses
(:func:`..request.build_request`), so a batch refuses exactly the values ``texture`` refuses;
each asset only replaces the template's prompt, seed, targets and texture folder
(:meth:`..request.TextureRequest.for_asset`). A batch's identity for resuming is the
template's own settings record (:meth:`..request.TextureRequest.pixel_record`).

It imports :mod:`.worker` (Blender) only when it runs, so the rest of the package never loads
Blender.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

from ..core.diffusion.settings import ModelSpec
from ..request import TextureRequest, build_request
from . import outputs, plan, report, runners
from .plan import BatchOptions
from .prompts import PromptSource

# What the batch decides itself, never taken from its settings into the request: each asset's
# report is its manifest line, and --in-place means the sources, not the request's output.
_NOT_FOR_THE_REQUEST = {"report": None, "output": None, "in_place": None}


def template_request(settings: Mapping[str, Any], model: ModelSpec) -> TextureRequest:
    """The request every asset starts from: every texturing setting checked once, up front."""
    return build_request(
        {**settings, **_NOT_FOR_THE_REQUEST},
        model=model,
        frame_each_target=True,
        prompt_required=False,
    )


def run_batch(options: BatchOptions, template: TextureRequest, prompt_source: PromptSource) -> int:
    """The batch's steps; every refusal is a TextureError raised before any work, with the
    user's files as they were. Returns the exit code (0: every asset done)."""
    from . import worker

    started = time.perf_counter()
    # 1. Sources, --out and the manifest: refused here if they would overwrite anything.
    destinations = plan.check_destinations(options, worker.library_paths())
    # 2. One batch per --out from here on, and one run per source rewritten in place.
    with (
        outputs.OutLock(destinations.out),
        outputs.source_locks(destinations.sources, destinations.in_place),
    ):
        # 3. Scan the files and decide each asset; refuse to overwrite files no batch wrote.
        the_plan = plan.make_plan(
            template.pixel_record(),
            options.retry_failed,
            destinations,
            prompt_source,
            functools.partial(worker.scan_file, all_meshes=options.all_meshes),
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
        # 4. Texture: unreadable files are recorded first, then every asset to run.
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
        make_worker = functools.partial(worker.FileWorker, template, options.preview_size)
        if options.ray:
            runners.run_ray(
                the_plan.tasks,
                make_worker,
                sink,
                options.ray,
                options.ray_workers or None,
                options.cpu_threads or None,
                options.ray_python,
            )
        else:
            with _torch_threads(options.cpu_threads):
                runners.run_sequential(the_plan.tasks, make_worker(), sink)
        progress.close()
        # 5. Summary and contact sheet, from the whole manifest (earlier runs included).
        last = the_plan.manifest.read()
        summary = report.summarize(the_plan.keys, last, sink.records, time.perf_counter() - started)
        if the_plan.sheet:
            report.write_contact_sheet(the_plan.sheet, the_plan.keys, last, summary)
    print(summary.text(the_plan.manifest.path, the_plan.sheet, the_plan.warnings))
    return summary.exit_code


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
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
