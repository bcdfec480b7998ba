"""What a run will do, decided before any texturing: which files, which assets, what to skip.

No bpy: the worker's ``scan(path)`` (list a file's assets) is passed in. Two steps, so that a
run refuses everything it can before it takes the lock on ``--out`` or writes anything:

1. :func:`check_destinations` resolves the sources and refuses a bad ``--out`` or manifest
   (reads folders and the manifest, writes nothing);
2. :func:`make_plan` scans the files and decides each asset from its last manifest line.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..core.errors import TextureError
from ..core.validation import check_settings
from . import outputs
from .prompts import PromptSource
from .records import (
    DONE,
    FAILED,
    MANIFEST_NAME,
    AssetInfo,
    AssetJob,
    FileTask,
    Manifest,
    SourceFile,
    file_failure_record,
    file_key,
)
from .sources import catalog_file, read_catalogs, resolve_sources, source_folders

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchOptions:
    """How a batch runs (not what each texture looks like: that is the template request).
    The texturing settings are the request's; these are the batch's own."""

    sources: tuple[str, ...]
    out: str
    all_meshes: bool = False
    prompt_template: str | None = None
    prompts: str | None = None
    retry_failed: bool = False
    in_place: bool = False
    manifest: str | None = None
    contact_sheet: str = "html"
    preview_size: int = 256
    ray: str | None = None
    ray_workers: int = 0  # 0: one per GPU, else per CPU share
    ray_python: str | None = None
    cpu_threads: int = 0  # 0: torch's own choice

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> BatchOptions:
        """The batch's own settings out of everything a door has, checked by the one rule."""
        names = [field.name for field in fields(cls)]
        values = check_settings(
            {key: settings[key] for key in names if settings.get(key) is not None}
        )
        values["sources"] = tuple(values.get("sources", ()))
        return cls(**values)


RUN = "run"
SKIP_DONE = "skip-done"
SKIP_FAILED = "skip-failed"
CHANGED = "changed"


def decide(
    job: AssetJob, last: Mapping[str, Any] | None, output_exists: bool, retry_failed: bool
) -> str:
    """What a (re)run does with an asset, from its last manifest line.

    Done with the same request and its output present: skip. Done with another request:
    CHANGED (the caller refuses; the output holds the other result). Failed: skipped unless
    ``retry_failed`` or the request changed (a new prompt may fix it). Anything else: run.
    """
    if last is None:
        return RUN
    status = last.get("status")
    same = last.get("request") == job.request
    if status == DONE:
        if not same:
            return CHANGED if output_exists else RUN
        return SKIP_DONE if output_exists else RUN
    if status == FAILED:
        return RUN if retry_failed or not same else SKIP_FAILED
    return RUN


@dataclass(frozen=True)
class Destinations:
    """The run's sources and where its results go, already checked (see the module doc)."""

    out: str
    manifest: Manifest
    sources: list[SourceFile]
    in_place: bool
    sheet: str | None  # the contact sheet to write, None for --contact-sheet none


def check_destinations(options: BatchOptions, libraries: Mapping[str, str]) -> Destinations:
    """Resolve the sources and refuse any ``--out`` or manifest that would overwrite a source
    or a file that is not a manifest. Writes nothing."""
    out = os.path.realpath(options.out)
    in_place = options.in_place
    sources = resolve_sources(options.sources, libraries, exclude=[out])
    outputs.check_out_folder(out)
    manifest = Manifest(os.path.abspath(options.manifest or os.path.join(out, MANIFEST_NAME)))
    if not in_place:
        outputs.refuse_overlap(out, manifest.path, source_folders(options.sources, libraries))
        outputs.refuse_writing_sources(
            [str(outputs.output_paths(source, out, False)["output"]) for source in sources],
            sources,
        )
    manifest.verify()
    sheet_format = options.contact_sheet or "none"
    sheet = None if sheet_format == "none" else os.path.join(out, f"contact_sheet.{sheet_format}")
    return Destinations(out, manifest, sources, in_place, sheet)


@dataclass
class Plan:
    """What a run will do, decided before any texturing."""

    out: str
    manifest: Manifest
    tasks: list[FileTask]
    keys: list[str]  # every asset (and unreadable file) this batch covers, in order
    in_place: bool = False
    sheet: str | None = None
    skipped_done: int = 0
    skipped_failed: int = 0
    file_failures: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # problems that stopped no asset

    @property
    def to_run(self) -> int:
        return sum(len(task.jobs) for task in self.tasks)


def make_plan(
    settings: Mapping[str, Any],
    retry: bool,
    destinations: Destinations,
    prompts: PromptSource,
    scan: Callable[[str], list[AssetInfo]],
) -> Plan:
    """Scan and decide: everything a run does before texturing, and the refusal of a rerun
    whose prompt, seed or settings differ from what an existing output holds.

    ``settings``: what decides every asset's pixels besides its prompt and seed (the template
    request's :meth:`~..request.TextureRequest.pixel_record`); ``retry``: run failed assets
    again.

    ``scan(path)`` lists a file's assets (Blender-side; raises TextureError for a broken file).
    An unreadable catalog file costs its catalog fields, recorded in the plan's warnings and in
    the manifest line of every asset it would have named.
    """
    out, in_place = destinations.out, destinations.in_place
    last = destinations.manifest.read()
    plan = Plan(
        out=out,
        manifest=destinations.manifest,
        tasks=[],
        keys=[],
        in_place=in_place,
        sheet=destinations.sheet,
    )
    changed: list[str] = []
    catalogs_by_file: dict[str | None, tuple[dict[str, str], tuple[str, ...]]] = {None: ({}, ())}
    for source in destinations.sources:
        paths = outputs.output_paths(source, out, in_place)
        try:
            infos = scan(source.path)
        except TextureError as error:
            plan.keys.append(file_key(source.relpath))
            previous = last.get(file_key(source.relpath))
            if previous is None or previous.get("status") != FAILED or retry:
                plan.file_failures.append(file_failure_record(source, str(error)))
            else:
                plan.skipped_failed += 1
            continue
        catalogs_path = catalog_file(source)
        if catalogs_path not in catalogs_by_file:
            try:
                catalogs_by_file[catalogs_path] = (read_catalogs(catalogs_path), ())
            except TextureError as error:
                log.warning("%s", error)
                plan.warnings.append(str(error))
                catalogs_by_file[catalogs_path] = ({}, (str(error),))
        catalogs, notes = catalogs_by_file[catalogs_path]
        output_exists = os.path.isfile(str(paths["output"]))
        run = []
        file_names = outputs.asset_file_names(info.name for info in infos)
        for info in sorted(infos, key=lambda item: item.name):
            job = prompts.job(info, source, catalogs, settings, notes)
            job = dataclasses.replace(job, file_name=file_names[info.name])
            plan.keys.append(job.key)
            decision = decide(job, last.get(job.key), output_exists, retry)
            if decision == RUN:
                run.append(job)
            elif decision == SKIP_DONE:
                plan.skipped_done += 1
            elif decision == SKIP_FAILED:
                plan.skipped_failed += 1
            else:
                changed.append(job.key)
        if run:
            plan.tasks.append(
                FileTask(file=source.relpath, source=source.path, jobs=tuple(run), **paths)
            )
    if changed:
        raise TextureError(
            f"{len(changed)} asset(s) in '{out}' were textured with another prompt, seed or "
            f"settings (first: {changed[0]}): write this run to a new --out folder, or delete "
            "those files' outputs to texture them again."
        )
    return plan
