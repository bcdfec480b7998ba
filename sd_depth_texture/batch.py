"""Batch texturing of asset libraries: ``blender -b -c sd_depth_texture batch SOURCE... --out DIR``.

Everything here except the drivers' calls into :mod:`.blender.assets` is free of ``bpy``, so the
decisions a batch makes (which files, which assets, which prompt and seed, what to skip on a
rerun) are plain functions with unit tests. The Blender side, texturing one asset of one open
file and committing it, is :class:`.blender.assets.FileWorker`; the sequential loop and the Ray
actor both drive that same class, which is why both produce the same pixels.

Crash safety rests on three rules:

* an output .blend is only ever replaced whole (written under a temporary name, then renamed),
  after every asset, and it carries an in-file record of the assets it holds;
* the manifest (JSON lines) is appended after that rename, each line flushed and fsynced;
* a rerun skips an asset whose last manifest line is ``done`` while its output file exists,
  and a worker that finds an asset already in the output's in-file record (the process died
  between the rename and the manifest line) reports it again instead of texturing it twice.

Ray is imported only for ``--ray``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import html
import json
import logging
import math
import os
import re
import socket
import string
import sys
import time
import tomllib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from .core.errors import TextureError
from .defaults import SEED

log = logging.getLogger(__name__)

DONE = "done"
FAILED = "failed"
CATALOG_FILE = "blender_assets.cats.txt"
MANIFEST_NAME = "manifest.jsonl"
KEY_SEPARATOR = "::"
TEMPLATE_FIELDS = ("name", "description", "tags", "catalog", "catalog_name", "author", "file")
#: How often a worker may die while texturing one asset before the asset is recorded as failed.
MAX_WORKER_DEATHS_PER_ASSET = 2
#: Options that do not change an asset's pixels; everything else a run was given does, so a rerun
#: with other settings is refused instead of mixing two kinds of result in one output.
NON_PIXEL_OPTIONS = frozenset(
    {
        "command",
        "sources",
        "out",
        "manifest",
        "retry_failed",
        "in_place",
        "contact_sheet",
        "preview_size",
        "ray",
        "ray_workers",
        "ray_python",
        "cpu_threads",
        "device",
        "online",
        "all_meshes",
        "prompt",
        "prompt_template",
        "prompts",
        "negative_prompt",
        "seed",
        "report",  # batch: each asset's report is in its manifest line
    }
)


# --------------------------------------------------------------------------------------------
# What a batch works on
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceFile:
    """A .blend to texture; ``relpath`` (to its source folder, '/'-separated) is its identity."""

    path: str
    relpath: str
    root: str


@dataclass(frozen=True)
class AssetInfo:
    """An object to texture and its asset metadata (empty for ``--all-meshes`` non-assets)."""

    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    catalog_id: str = ""
    catalog_name: str = ""
    author: str = ""


@dataclass(frozen=True)
class AssetJob:
    """One asset's request: the prompt and seed it gets and a hash of everything that sets it."""

    key: str
    file: str
    asset: str
    prompt: str
    negative_prompt: str
    seed: int
    request: str


@dataclass(frozen=True)
class FileTask:
    """One source file's work for one run; a file is handled by one worker at a time."""

    file: str  # relpath: the file's identity
    source: str  # the .blend to start from
    output: str  # the .blend to write (the source itself with --in-place)
    texture_dir: str  # this file's textures (a folder of its own, so names never collide)
    preview_dir: str
    backup: str | None  # --in-place: where the untouched source is copied before the first write
    jobs: tuple[AssetJob, ...]


def asset_key(file: str, asset: str) -> str:
    return f"{file}{KEY_SEPARATOR}{asset}"


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


def _is_within(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # different drives
        return False


def _blend_files(root: str, exclude: Sequence[str]) -> list[str]:
    """Every .blend below ``root``; hidden files and folders (temporary writes) and ``exclude``
    (the output folder, so a rerun never takes its own results for sources) are left out."""
    found = []
    for folder, folders, files in os.walk(root):
        folders[:] = sorted(
            name
            for name in folders
            if not name.startswith(".")
            and not any(_is_within(os.path.join(folder, name), ex) for ex in exclude)
        )
        found += [
            os.path.join(folder, name)
            for name in sorted(files)
            if name.lower().endswith(".blend") and not name.startswith(".")
        ]
    return found


def resolve_sources(
    sources: Sequence[str], libraries: Mapping[str, str], exclude: Sequence[str] = ()
) -> list[SourceFile]:
    """Turn SOURCE arguments (folders, .blend files, asset library names) into files.

    A file reachable from two sources keeps the identity from the outermost folder, so the
    order of the arguments never changes a seed. Two files with one identity are refused:
    their outputs would overwrite each other.
    """
    exclude = [os.path.realpath(path) for path in exclude]
    candidates: dict[str, list[tuple[str, str]]] = {}  # real path -> [(root, relpath)]
    for source in sources:
        if os.path.isdir(source):
            root = os.path.realpath(source)
            paths = _blend_files(root, exclude)
            if not paths:
                raise TextureError(f"There are no .blend files in the folder '{source}'.")
        elif os.path.isfile(source):
            if not source.lower().endswith(".blend"):
                raise TextureError(f"'{source}' is not a .blend file.")
            paths = [os.path.realpath(source)]
            root = os.path.dirname(paths[0])
        elif source in libraries:
            root = os.path.realpath(libraries[source])
            if not os.path.isdir(root):
                raise TextureError(
                    f"The asset library '{source}' points to '{libraries[source]}', "
                    "which is not a folder."
                )
            paths = _blend_files(root, exclude)
        else:
            raise TextureError(
                f"'{source}' is not a folder, a .blend file or an asset library in Blender's "
                "preferences (File Paths > Asset Libraries)."
            )
        for path in paths:
            relpath = Path(os.path.relpath(path, root)).as_posix()
            candidates.setdefault(os.path.realpath(path), []).append((root, relpath))
    files: dict[str, SourceFile] = {}
    for path, places in candidates.items():
        root, relpath = min(places, key=lambda place: (len(place[0]), place[0]))
        if relpath in files:
            raise TextureError(
                f"'{path}' and '{files[relpath].path}' would both be written as '{relpath}': "
                "batch them into separate --out folders."
            )
        files[relpath] = SourceFile(path=path, relpath=relpath, root=root)
    if not files:
        raise TextureError("There are no .blend files to texture in the given sources.")
    return [files[relpath] for relpath in sorted(files)]


# --------------------------------------------------------------------------------------------
# Catalogs
# --------------------------------------------------------------------------------------------


def read_catalogs(path: str) -> dict[str, str]:
    """Catalog UUID -> catalog path from a ``blender_assets.cats.txt`` (``UUID:path:name``)."""
    catalogs = {}
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            line = line.strip()
            if not line or line.startswith("#") or line.startswith("VERSION"):
                continue
            parts = line.split(":", 2)
            if len(parts) >= 2:
                catalogs[parts[0].strip().lower()] = parts[1].strip()
    return catalogs


def find_catalogs(source: SourceFile) -> dict[str, str]:
    """The catalog definitions that apply to a file: the nearest ``blender_assets.cats.txt`` in
    its folder or a parent, up to its source folder (the asset library root)."""
    folder = os.path.dirname(source.path)
    while True:
        candidate = os.path.join(folder, CATALOG_FILE)
        if os.path.isfile(candidate):
            return read_catalogs(candidate)
        if folder == source.root or not _is_within(folder, source.root):
            return {}
        parent = os.path.dirname(folder)
        if parent == folder:
            return {}
        folder = parent


# --------------------------------------------------------------------------------------------
# Prompts and seeds
# --------------------------------------------------------------------------------------------


def template_fields(
    info: AssetInfo, source: SourceFile, catalogs: Mapping[str, str]
) -> dict[str, str]:
    catalog = catalogs.get(info.catalog_id.lower(), "") if info.catalog_id else ""
    return {
        "name": info.name,
        "description": info.description,
        "tags": ", ".join(info.tags),
        "catalog": catalog or info.catalog_name,
        "catalog_name": info.catalog_name or catalog.rpartition("/")[2],
        "author": info.author,
        "file": Path(source.relpath).stem,
    }


def check_template(template: str) -> None:
    """Refuse a template with an unknown or malformed field before any work starts."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as error:
        raise TextureError(f"The prompt template is malformed: {error}.") from error
    unknown = [name for name in names if name not in TEMPLATE_FIELDS]
    if unknown:
        raise TextureError(
            f"The prompt template uses '{{{unknown[0]}}}'; the fields are "
            + ", ".join("{" + name + "}" for name in TEMPLATE_FIELDS)
            + "."
        )


def tidy_prompt(text: str) -> str:
    """Drop the empty items unfilled fields leave: 'a chair, , , photo' -> 'a chair, photo'."""
    text = re.sub(r"\s*,(\s*,)+", ",", text)
    text = re.sub(r"\s+", " ", text)
    return text.strip(" ,")


def fill_template(template: str, fields: Mapping[str, str]) -> str:
    check_template(template)
    return tidy_prompt(template.format_map(dict(fields)))


def derive_seed(base_seed: int, file: str, asset: str) -> int:
    """A seed in the seed range from the base seed and the asset's identity, never its position."""
    digest = hashlib.sha256(f"{base_seed}\x00{file}\x00{asset}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (int(SEED.high) + 1)


@dataclass(frozen=True)
class PromptEntry:
    prompt: str = ""
    negative_prompt: str | None = None
    seed: int | None = None


class PromptTable:
    """Prompts from a CSV or TOML file, keyed by asset or file.

    Keys, most specific first: ``FILE::ASSET``, ``ASSET``, ``FILE`` (the file's path relative to
    its source folder) and ``*``. CSV: a header with ``key`` (or ``asset`` / ``file``), ``prompt``
    and optionally ``negative_prompt`` and ``seed``. TOML: ``KEY = "prompt"`` or a table
    ``[KEY]`` with ``prompt``, ``negative_prompt``, ``seed``.
    """

    def __init__(self, entries: Mapping[str, PromptEntry]) -> None:
        self.entries = dict(entries)

    @classmethod
    def load(cls, path: str) -> PromptTable:
        if not os.path.isfile(path):
            raise TextureError(f"There is no prompts file at '{path}'.")
        suffix = Path(path).suffix.lower()
        try:
            if suffix == ".csv":
                return cls(_csv_entries(path))
            if suffix == ".toml":
                return cls(_toml_entries(path))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, csv.Error) as error:
            raise TextureError(f"Cannot read the prompts file '{path}': {error}") from error
        raise TextureError(f"The prompts file must be .csv or .toml, not '{path}'.")

    def lookup(self, file: str, asset: str) -> PromptEntry | None:
        for key in (asset_key(file, asset), asset, file, "*"):
            if key in self.entries:
                return self.entries[key]
        return None


def _entry(key: str, prompt: Any, negative: Any, seed: Any, where: str) -> PromptEntry:
    if not key:
        raise TextureError(f"{where}: an entry has no key (asset or file).")
    try:
        parsed_seed = None if seed in (None, "") else int(seed)
    except (TypeError, ValueError) as error:
        raise TextureError(f"{where}: the seed of '{key}' is not an integer.") from error
    return PromptEntry(
        prompt=str(prompt or "").strip(),
        negative_prompt=None if negative in (None, "") else str(negative),
        seed=parsed_seed,
    )


def _csv_entries(path: str) -> dict[str, PromptEntry]:
    with open(path, encoding="utf-8-sig", newline="") as stream:
        reader = csv.DictReader(stream)
        columns = [name.strip().lower() for name in reader.fieldnames or []]
        key_column = next((c for c in ("key", "asset", "file") if c in columns), None)
        if key_column is None or "prompt" not in columns:
            raise TextureError(
                f"{path}: the header needs a 'key' (or 'asset' / 'file') and a 'prompt' column."
            )
        entries: dict[str, PromptEntry] = {}
        for line, row in enumerate(reader, start=2):
            row = {(k or "").strip().lower(): (v or "") for k, v in row.items()}
            key = row.get(key_column, "").strip()
            if key in entries:
                raise TextureError(f"{path}:{line}: '{key}' appears twice.")
            entries[key] = _entry(
                key, row.get("prompt"), row.get("negative_prompt"), row.get("seed"), path
            )
    return entries


def _toml_entries(path: str) -> dict[str, PromptEntry]:
    with open(path, "rb") as stream:
        data = tomllib.load(stream)
    entries = {}
    for key, value in data.items():
        if isinstance(value, str):
            entries[key] = _entry(key, value, None, None, path)
        elif isinstance(value, dict):
            unknown = set(value) - {"prompt", "negative_prompt", "seed"}
            if unknown:
                raise TextureError(f"{path}: '{key}' has unknown fields {sorted(unknown)}.")
            entries[key] = _entry(
                key, value.get("prompt"), value.get("negative_prompt"), value.get("seed"), path
            )
        else:
            raise TextureError(f"{path}: '{key}' must be a prompt string or a table.")
    return entries


@dataclass(frozen=True)
class PromptSource:
    """Where each asset's prompt comes from: the prompts file, then the template, then --prompt."""

    prompt: str = ""
    template: str = ""
    negative_prompt: str = ""
    table: PromptTable | None = None
    base_seed: int = 0

    def job(
        self,
        info: AssetInfo,
        source: SourceFile,
        catalogs: Mapping[str, str],
        settings: Mapping[str, Any],
    ) -> AssetJob:
        entry = self.table.lookup(source.relpath, info.name) if self.table else None
        if entry is not None and entry.prompt:
            prompt = entry.prompt
        elif self.template:
            prompt = fill_template(self.template, template_fields(info, source, catalogs))
        else:
            prompt = self.prompt
        negative = self.negative_prompt
        if entry is not None and entry.negative_prompt is not None:
            negative = entry.negative_prompt
        seed = derive_seed(self.base_seed, source.relpath, info.name)
        if entry is not None and entry.seed is not None:
            seed = entry.seed
        return AssetJob(
            key=asset_key(source.relpath, info.name),
            file=source.relpath,
            asset=info.name,
            prompt=prompt,
            negative_prompt=negative,
            seed=seed,
            request=request_id(prompt, negative, seed, settings),
        )


def pixel_settings(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options that decide an asset's pixels (every ``texture`` option, present or future)."""
    return {
        key: value
        for key, value in sorted(options.items())
        if key not in NON_PIXEL_OPTIONS and not callable(value)
    }


def request_id(prompt: str, negative: str, seed: int, settings: Mapping[str, Any]) -> str:
    text = json.dumps(
        {"prompt": prompt, "negative_prompt": negative, "seed": seed, "settings": settings},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------


class Manifest:
    """Append-only JSON lines; the last line of a key is that key's state.

    A line cut short by a crash is ignored when read, and the next append starts a new line.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def read(self) -> dict[str, dict[str, Any]]:
        last: dict[str, dict[str, Any]] = {}
        if not os.path.isfile(self.path):
            return last
        with open(self.path, encoding="utf-8") as stream:
            for number, line in enumerate(stream, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    log.warning(
                        "%s:%d is not a whole JSON line (a crash?); ignored", self.path, number
                    )
                    continue
                if isinstance(record, dict) and "key" in record:
                    last[record["key"]] = record
        return last

    def records(self) -> list[dict[str, Any]]:
        """Every whole line, in order (for tests and audits)."""
        if not os.path.isfile(self.path):
            return []
        result = []
        with open(self.path, encoding="utf-8") as stream:
            for line in stream:
                try:
                    result.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return result

    def append(self, record: Mapping[str, Any]) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        with open(self.path, "a+b") as stream:
            stream.seek(0, os.SEEK_END)
            if stream.tell() > 0:
                stream.seek(-1, os.SEEK_END)
                if stream.read(1) != b"\n":
                    stream.write(b"\n")
            stream.write(line.encode("utf-8"))
            stream.flush()
            os.fsync(stream.fileno())


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


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def base_record(job: AssetJob, task: FileTask) -> dict[str, Any]:
    return {
        "key": job.key,
        "file": job.file,
        "asset": job.asset,
        "source": task.source,
        "output": task.output,
        "prompt": job.prompt,
        "negative_prompt": job.negative_prompt,
        "seed": job.seed,
        "request": job.request,
    }


def failed_record(job: AssetJob, task: FileTask, error: str, seconds: float = 0.0) -> dict:
    return {
        **base_record(job, task),
        "status": FAILED,
        "error": error,
        "seconds": {"total": round(seconds, 4)},
        "worker": worker_name(),
        "finished": now_iso(),
    }


def file_failure_record(source: SourceFile, error: str) -> dict[str, Any]:
    """A file that could not be read: its assets are unknown, so the file itself is recorded."""
    return {
        "key": source.relpath,
        "file": source.relpath,
        "asset": None,
        "source": source.path,
        "status": FAILED,
        "error": error,
        "worker": worker_name(),
        "finished": now_iso(),
    }


# --------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What a run will do, decided before any texturing."""

    out: str
    manifest: Manifest
    tasks: list[FileTask]
    keys: list[str]  # every asset (and unreadable file) this batch covers, in order
    skipped_done: int = 0
    skipped_failed: int = 0
    file_failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def to_run(self) -> int:
        return sum(len(task.jobs) for task in self.tasks)


def output_paths(source: SourceFile, out: str, in_place: bool) -> dict[str, str | None]:
    """Where a file's results go: the .blend, its own texture folder, previews, backup."""
    relative = Path(source.relpath)
    stem = relative.stem
    if in_place:
        output = source.path
        backup = os.path.join(out, "backups", *relative.parts)
    else:
        output = os.path.join(out, *relative.parts)
        backup = None
    return {
        "output": output,
        "texture_dir": os.path.join(os.path.dirname(output), "textures", stem),
        "preview_dir": os.path.join(out, "previews", *relative.with_suffix("").parts),
        "backup": backup,
    }


def make_plan(
    options: Mapping[str, Any],
    libraries: Mapping[str, str],
    scan: Callable[[str], list[AssetInfo]],
) -> Plan:
    """Discover, scan and decide: everything a run does before texturing, and all its refusals.

    ``scan(path)`` lists a file's assets (Blender-side; raises TextureError for a broken file).
    """
    out = os.path.realpath(options["out"])
    prompts = _prompt_source(options)
    sources = resolve_sources(options["sources"], libraries, exclude=[out])
    in_place = bool(options.get("in_place"))
    manifest = Manifest(
        os.path.abspath(options.get("manifest") or os.path.join(out, MANIFEST_NAME))
    )
    last = manifest.read()
    settings = pixel_settings(options)
    retry = bool(options.get("retry_failed"))
    plan = Plan(out=out, manifest=manifest, tasks=[], keys=[])
    changed: list[str] = []
    catalogs_by_folder: dict[tuple[str, str], dict[str, str]] = {}
    for source in sources:
        paths = output_paths(source, out, in_place)
        if not in_place and os.path.realpath(paths["output"]) == source.path:
            raise TextureError(
                f"--out would overwrite the source '{source.path}': choose another folder, "
                "or pass --in-place to texture the sources themselves."
            )
        try:
            infos = scan(source.path)
        except TextureError as error:
            plan.keys.append(source.relpath)
            previous = last.get(source.relpath)
            if previous is None or previous.get("status") != FAILED or retry:
                plan.file_failures.append(file_failure_record(source, str(error)))
            else:
                plan.skipped_failed += 1
            continue
        folder_key = (os.path.dirname(source.path), source.root)
        if folder_key not in catalogs_by_folder:
            catalogs_by_folder[folder_key] = find_catalogs(source)
        output_exists = os.path.isfile(paths["output"])
        run = []
        for info in sorted(infos, key=lambda item: item.name):
            job = prompts.job(info, source, catalogs_by_folder[folder_key], settings)
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


def _prompt_source(options: Mapping[str, Any]) -> PromptSource:
    prompt = str(options.get("prompt") or "").strip()
    template = str(options.get("prompt_template") or "").strip()
    table_path = options.get("prompts")
    if prompt and template:
        raise TextureError("Give either --prompt or --prompt-template, not both.")
    if not (prompt or template or table_path):
        raise TextureError(
            'Say what to paint: --prompt-template "a {name}, {description}", --prompts FILE '
            "or one --prompt for every asset."
        )
    if template:
        check_template(template)
    return PromptSource(
        prompt=prompt,
        template=template,
        negative_prompt=str(options.get("negative_prompt") or ""),
        table=PromptTable.load(table_path) if table_path else None,
        base_seed=int(options.get("seed") or 0),
    )


# --------------------------------------------------------------------------------------------
# Progress, summary, contact sheet
# --------------------------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """One progress line across all assets, with an ETA from this run's throughput.

    On a terminal the line rewrites itself; in a log (not a TTY) each update is its own line.
    """

    width = 30

    def __init__(
        self,
        total: int,
        done: int = 0,
        failed: int = 0,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.done, self.failed = total, done, failed
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.started = clock()
        self.finished_now = 0
        self.current = ""

    @property
    def eta(self) -> float:
        remaining = self.total - self.done - self.failed
        if remaining <= 0:
            return 0.0
        if self.finished_now == 0:
            return math.inf
        return (self.clock() - self.started) / self.finished_now * remaining

    def line(self) -> str:
        finished = self.done + self.failed
        filled = int(self.width * finished / max(self.total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        text = f"[{bar}] {finished}/{self.total} assets"
        if self.failed:
            text += f", {self.failed} failed"
        text += f", ETA {format_duration(self.eta)}"
        return text + (f"  {self.current}" if self.current else "")

    def start(self, label: str) -> None:
        self.current = label
        self._write()

    def finish(self, record: Mapping[str, Any]) -> None:
        self.finished_now += 1
        if record.get("status") == DONE:
            self.done += 1
        else:
            self.failed += 1
        self.current = ""
        self._write()

    def _write(self) -> None:
        if getattr(self.stream, "isatty", lambda: False)():
            self.stream.write("\r" + self.line().ljust(100)[:160])
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if getattr(self.stream, "isatty", lambda: False)():
            self.stream.write("\n")
            self.stream.flush()


@dataclass
class Summary:
    total: int
    done: int
    failed: int
    done_now: int
    recovered: int
    unreadable: int
    failures: list[tuple[str, str]]
    seconds: float

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def text(self, manifest: str, sheet: str | None) -> str:
        lines = [
            f"Batch: {self.done} of {self.total} done ({self.done_now} this run"
            + (f", {self.recovered} recovered from outputs" if self.recovered else "")
            + f"), {self.failed} failed"
            + (f" ({self.unreadable} unreadable file(s))" if self.unreadable else "")
            + f" in {format_duration(self.seconds)}."
        ]
        lines += [f"  failed {key}: {error}" for key, error in self.failures]
        lines.append(f"Manifest: {manifest}")
        if sheet:
            lines.append(f"Contact sheet: {sheet}")
        return "\n".join(lines)


def summarize(
    keys: Sequence[str],
    last: Mapping[str, Mapping[str, Any]],
    this_run: Iterable[Mapping],
    seconds: float,
) -> Summary:
    this_run = list(this_run)
    done = sum(1 for key in keys if last.get(key, {}).get("status") == DONE)
    failures = [
        (key, str(last[key].get("error", "")))
        for key in keys
        if key in last and last[key].get("status") == FAILED
    ]
    return Summary(
        total=len(keys),
        done=done,
        failed=len(failures),
        done_now=sum(1 for r in this_run if r.get("status") == DONE and not r.get("recovered")),
        recovered=sum(1 for r in this_run if r.get("recovered")),
        unreadable=sum(
            1
            for key in keys
            if key in last and last[key].get("asset") is None and last[key].get("status") == FAILED
        ),
        failures=failures,
        seconds=seconds,
    )


def _relative_link(path: str | None, folder: str) -> str:
    if not path:
        return ""
    try:
        return Path(os.path.relpath(path, folder)).as_posix()
    except ValueError:
        return Path(path).as_uri()


def write_contact_sheet(
    path: str, keys: Sequence[str], last: Mapping[str, Mapping[str, Any]], summary: Summary
) -> str:
    """An HTML or Markdown page of every asset's preview, prompt, seed and status (for a lead)."""
    folder = os.path.dirname(path)
    records = [last[key] for key in keys if key in last]
    if path.endswith(".md"):
        lines = [
            "# SD Depth Texture batch",
            "",
            f"{summary.done} of {summary.total} done, {summary.failed} failed.",
            "",
            "| Preview | Asset | File | Prompt | Seed | Status |",
            "|---|---|---|---|---|---|",
        ]

        def cell(text: Any) -> str:
            return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")

        for record in records:
            preview = _relative_link(record.get("preview"), folder)
            image = f"![{cell(record.get('asset'))}]({preview})" if preview else ""
            status = record.get("status", "")
            if status == FAILED:
                status = f"failed: {record.get('error', '')}"
            lines.append(
                f"| {image} | {cell(record.get('asset') or '(file)')} | {cell(record.get('file'))}"
                f" | {cell(record.get('prompt', ''))} | {cell(record.get('seed', ''))}"
                f" | {cell(status)} |"
            )
        text = "\n".join(lines) + "\n"
    else:
        cards = []
        for record in records:
            escape = html.escape
            preview = _relative_link(record.get("preview"), folder)
            status = record.get("status", "")
            picture = (
                f'<img src="{escape(preview)}" alt="{escape(str(record.get("asset")))}" '
                'loading="lazy">'
                if preview and status == DONE
                else '<div class="missing">no preview</div>'
            )
            seconds = record.get("seconds", {}).get("total")
            details = [f"seed {record.get('seed')}"] if record.get("seed") is not None else []
            if seconds is not None:
                details.append(f"{seconds:.1f} s")
            if record.get("coverage") is not None:
                details.append(f"{record['coverage']:.0%} of texels")
            error = (
                f'<p class="error">{escape(str(record.get("error", "")))}</p>'
                if status == FAILED
                else ""
            )
            cards.append(
                f'<figure class="{escape(status)}">{picture}<figcaption>'
                f"<b>{escape(str(record.get('asset') or '(whole file)'))}</b>"
                f'<span class="file">{escape(str(record.get("file", "")))}</span>'
                f"<q>{escape(str(record.get('prompt', '')))}</q>"
                f'<span class="details">{escape(" · ".join(details))}</span>{error}'
                "</figcaption></figure>"
            )
        text = (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            "<title>SD Depth Texture batch</title><style>"
            "body{font:14px system-ui,sans-serif;margin:1.5em;background:#fafafa}"
            ".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:12px}"
            "figure{margin:0;background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px}"
            "figure.failed{border-color:#d33;background:#fff4f4}"
            "img,.missing{width:100%;aspect-ratio:1;object-fit:contain;background:#eee}"
            ".missing{display:flex;align-items:center;justify-content:center;color:#999}"
            "figcaption span,figcaption q{display:block;margin-top:3px}"
            ".file,.details{color:#666;font-size:12px}.error{color:#b00;margin:4px 0 0}"
            "</style></head><body>"
            f"<h1>SD Depth Texture batch</h1><p>{summary.done} of {summary.total} done, "
            f"{summary.failed} failed.</p>"
            '<div class="grid">' + "\n".join(cards) + "</div></body></html>\n"
        )
    temporary = path + ".partial"
    with open(temporary, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.replace(temporary, path)
    return path


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


class Sink:
    """Where finished assets go: the manifest first (crash safety), then the progress line."""

    def __init__(self, manifest: Manifest, progress: Progress) -> None:
        self.manifest = manifest
        self.progress = progress
        self.records: list[dict[str, Any]] = []

    def started(self, job: AssetJob) -> None:
        self.progress.start(job.key)

    def finished(self, record: dict[str, Any]) -> None:
        self.manifest.append(record)
        self.records.append(record)
        self.progress.finish(record)
        if record.get("status") == FAILED:
            log.warning("%s failed: %s", record.get("key"), record.get("error"))


def run_sequential(tasks: Sequence[FileTask], options: dict, spec: Any, sink: Sink) -> None:
    """All files in this process, one after another, with one loaded model."""
    from .blender.assets import FileWorker

    worker = FileWorker(options, spec)
    for task in tasks:
        for job in task.jobs:
            sink.started(job)
            sink.finished(worker.texture(task, job))


class RayWorker:
    """The body of a Ray actor: one long-lived process that keeps Blender and the pipeline."""

    def __init__(self, options: dict, spec: Any, threads: int | None) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        from .blender.assets import FileWorker

        self.worker = FileWorker(options, spec)

    def texture(self, task: FileTask, job: AssetJob) -> dict[str, Any]:
        return self.worker.texture(task, job)

    def name(self) -> str:
        return worker_name()


def _ray_connect(ray: Any, address: str, runtime_env: dict[str, Any]) -> bool:
    """Join the cluster at ``address`` (or a running local one for 'auto'), else start one.

    The package travels to the workers in the job's runtime environment (``py_modules``), the
    only place Ray accepts a local folder. A Ray the caller initialised already is used as it
    is: its job must make ``sd_depth_texture`` importable itself. Returns whether this call
    started Ray (and so shuts it down afterwards).
    """
    if ray.is_initialized():
        log.info("Using the Ray connection this process already has")
        return False
    settings = {
        "runtime_env": runtime_env,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
    if address != "auto":
        ray.init(address=address, **settings)
        return True
    try:
        ray.init(address="auto", **settings)
    except ConnectionError:
        ray.init(include_dashboard=False, **settings)
    return True


def run_ray(
    tasks: Sequence[FileTask],
    options: dict,
    spec: Any,
    sink: Sink,
    address: str,
    workers: int | None = None,
    threads: int | None = None,
    python: str | None = None,
) -> None:
    """Spread files over one worker per GPU (or per ``threads`` CPUs without GPUs).

    Each file goes to one worker, which gets all its assets as a queue of actor calls; results
    come back one by one. A worker that dies has the rest of its file handed to a fresh one,
    which resumes from the output .blend; an asset whose worker died twice is recorded failed.
    """
    try:
        import ray
        from ray.exceptions import RayActorError, RayTaskError
    except ImportError as error:
        raise TextureError(
            "--ray needs Ray installed in this Python (pip install 'ray==2.60.0')."
        ) from error
    if "." in __package__:
        raise TextureError(
            "--ray needs this package importable as 'sd_depth_texture' on every node (the bpy "
            "module install); an add-on installed inside Blender cannot start Ray workers."
        )
    if not tasks:
        return
    runtime_env: dict[str, Any] = {"py_modules": [os.path.dirname(os.path.abspath(__file__))]}
    if python:
        runtime_env["py_executable"] = python
    started = _ray_connect(ray, address, runtime_env)
    actors: dict[Any, dict[str, Any]] = {}
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = max(1, int(threads or 1))
        available = gpus if gpus else max(1, int(resources.get("CPU", 1)) // cpus)
        if workers and workers > available:
            log.warning("The cluster has room for %d worker(s), not %d", available, workers)
        # More workers than the cluster can hold would wait forever; more than files idle.
        count = max(1, min(workers or available, available, len(tasks)))
        actor_options: dict[str, Any] = {
            "num_gpus": 1 if gpus else 0,
            "num_cpus": 0 if gpus else cpus,
        }
        if python and not started:
            actor_options["runtime_env"] = {"py_executable": python}
        actor_class = ray.remote(RayWorker).options(**actor_options)
        log.info("Ray: %d worker(s), %s", count, "one GPU each" if gpus else f"{cpus} CPU each")

        def new_actor() -> Any:
            actor = actor_class.remote(options, spec, None if gpus else cpus)
            actors[actor] = {"task": None, "left": []}
            return actor

        queue: deque[FileTask] = deque(tasks)
        idle = [new_actor() for _ in range(count)]
        pending: dict[Any, tuple[Any, FileTask, AssetJob]] = {}
        deaths: dict[str, int] = {}
        replacements = 0
        while queue or pending:
            while idle and queue:
                actor, task = idle.pop(), queue.popleft()
                actors[actor] = {"task": task, "left": list(task.jobs)}
                for job in task.jobs:
                    pending[actor.texture.remote(task, job)] = (actor, task, job)
                sink.started(task.jobs[0])
            ready, _ = ray.wait(list(pending), num_returns=1)
            actor, task, job = pending.pop(ready[0])
            try:
                record = ray.get(ready[0])
            except RayActorError as error:
                # Everything this worker still had is lost with it: hand the rest on.
                left = actors.pop(actor)["left"]
                for ref in [r for r, (a, _, _) in pending.items() if a is actor]:
                    del pending[ref]
                in_flight = left[0]
                deaths[in_flight.key] = deaths.get(in_flight.key, 0) + 1
                log.warning("A Ray worker died while texturing %s: %s", in_flight.key, error)
                if deaths[in_flight.key] >= MAX_WORKER_DEATHS_PER_ASSET:
                    sink.finished(
                        failed_record(
                            in_flight,
                            task,
                            f"the worker died {deaths[in_flight.key]} times while texturing it "
                            "(out of memory?)",
                        )
                    )
                    left = left[1:]
                if left:
                    queue.appendleft(dataclasses.replace(task, jobs=tuple(left)))
                replacements += 1
                if replacements > 2 * count + 2:
                    raise TextureError(
                        "Ray workers keep dying; the batch stopped (rerun to resume)."
                    ) from error
                idle.append(new_actor())
                continue
            except RayTaskError as error:
                record = failed_record(job, task, f"worker error: {str(error).splitlines()[0]}")
            state = actors[actor]
            state["left"].remove(job)
            sink.finished(record)
            if state["left"]:
                sink.started(state["left"][0])
            else:
                state["task"] = None
                idle.append(actor)
    finally:
        for actor in list(actors):
            ray.kill(actor)
        if started:
            ray.shutdown()


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Register ``batch``; it shares the view, texture and generation options of ``texture``."""
    from .cli import options as cli_options

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


def _check_options(options: Mapping[str, Any]) -> None:
    """Refuse settings that would fail every asset, before any file is opened."""
    from .core.diffusion.settings import GenerationSettings, validate_settings
    from .core.geometry.views import generation_size

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


def main(args: argparse.Namespace) -> int:
    """Run a batch; exit 0 when every asset is done, 1 when any failed or nothing could run."""
    from .blender import assets
    from .cli import main as cli

    started = time.perf_counter()
    options = {key: value for key, value in vars(args).items() if not callable(value)}
    previous_threads = None
    try:
        _check_options(options)
        os.makedirs(options["out"], exist_ok=True)
        spec = cli.model_spec_from_args(args)
        # The model as resolved (preferences included) decides pixels, not only --model.
        model = {"model": spec.source, "config": spec.config, "precision": spec.precision}
        plan = make_plan(
            {**options, **model},
            assets.library_paths(),
            lambda path: assets.scan_file(path, args.all_meshes),
        )
        progress = Progress(
            plan.to_run + plan.skipped_done + plan.skipped_failed + len(plan.file_failures),
            done=plan.skipped_done,
            failed=plan.skipped_failed,
        )
        sink = Sink(plan.manifest, progress)
        for record in plan.file_failures:
            sink.finished(record)
        if args.ray:
            run_ray(
                plan.tasks,
                options,
                spec,
                sink,
                args.ray,
                args.ray_workers,
                args.cpu_threads,
                args.ray_python,
            )
        else:
            if args.cpu_threads:
                import torch

                previous_threads = torch.get_num_threads()
                torch.set_num_threads(args.cpu_threads)
            run_sequential(plan.tasks, options, spec, sink)
        progress.close()
    except TextureError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nerror: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130
    finally:
        if previous_threads is not None:
            import torch

            torch.set_num_threads(previous_threads)
    last = plan.manifest.read()
    summary = summarize(plan.keys, last, sink.records, time.perf_counter() - started)
    sheet = None
    if args.contact_sheet != "none":
        sheet = write_contact_sheet(
            os.path.join(plan.out, f"contact_sheet.{args.contact_sheet}"), plan.keys, last, summary
        )
    print(summary.text(plan.manifest.path, sheet))
    return summary.exit_code
