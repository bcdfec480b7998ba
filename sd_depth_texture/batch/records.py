"""What a batch works on, and what it writes down about it. No bpy, no other batch module.

Files, assets and each asset's request are frozen dataclasses (they travel to Ray workers);
the manifest is append-only JSON lines whose last line per key is that key's state. Every
manifest line is built here, so the sequential loop, a Ray worker and the driver (for a worker
that died) write the same fields.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..core.disk import reason, refuse_not_a_file
from ..core.errors import TextureError

log = logging.getLogger(__name__)

DONE = "done"
FAILED = "failed"
MANIFEST_NAME = "manifest.jsonl"
KEY_SEPARATOR = "::"


@dataclass(frozen=True)
class SourceFile:
    """A .blend to texture; ``relpath`` (to its source folder, '/'-separated) is its identity.

    ``path`` is the real file (read, and written with --in-place); ``relpath`` is where the
    user sees it in the library, which for a symbolic link is the link, not its target.
    """

    path: str
    relpath: str
    root: str

    @property
    def location(self) -> str:
        """Where the file appears in its source folder (a link's own path, not its target's)."""
        return os.path.join(self.root, *Path(self.relpath).parts)


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
    """One asset's request: the prompt and seed it gets and a hash of everything that sets it.

    ``notes`` are problems met while planning it (an unreadable catalog file) that did not
    stop it; they go into its manifest line.
    """

    key: str
    file: str
    asset: str
    prompt: str
    negative_prompt: str
    seed: int
    request: str
    notes: tuple[str, ...] = ()
    file_name: str = ""  # the asset's name for its files, unique in its file


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


def file_key(file: str) -> str:
    """A file's part of a key: ``%`` written ``%25`` and ``::`` written ``%3A%3A``.

    It then holds no ``::`` (and, as a .blend name, never ends in ':'), so the first ``::`` of
    an asset key is always the separator and no file and asset pair can spell another's key.
    Names without ``%`` or ``::`` (nearly all) are unchanged, and so are their manifest keys.
    """
    return file.replace("%", "%25").replace(KEY_SEPARATOR, "%3A%3A")


def asset_key(file: str, asset: str) -> str:
    """``FILE::ASSET``, unambiguous for any names (see :func:`file_key`)."""
    return f"{file_key(file)}{KEY_SEPARATOR}{asset}"


def record_key(record: Mapping[str, Any]) -> str:
    """The key a manifest line belongs under, from its own ``file`` and ``asset``: lines that
    older versions keyed by plain concatenation are read under today's key."""
    file, asset = record.get("file"), record.get("asset")
    if not isinstance(file, str):
        return str(record["key"])
    return file_key(file) if asset is None else asset_key(file, str(asset))


def request_id(prompt: str, negative: str, seed: int, settings: Mapping[str, Any]) -> str:
    """A hash of everything that decides an asset's pixels: equal hashes, equal results."""
    text = json.dumps(
        {"prompt": prompt, "negative_prompt": negative, "seed": seed, "settings": settings},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------


def _is_record(line: bytes) -> bool | None:
    """True for a manifest line, None for one cut short by a kill, False for anything else."""
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        # A kill mid-append leaves the start of a JSON object; anything else is someone's text.
        return None if line.startswith(b'{"') else False
    return isinstance(record, dict) and "key" in record and "status" in record


class Manifest:
    """Append-only JSON lines; the last line of a key is that key's state.

    A line cut short by a crash is ignored when read, and the next append starts a new line.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def verify(self) -> None:
        """Refuse a file that is not a batch manifest: appending would change someone's file."""
        if os.path.isdir(self.path):
            raise TextureError(f"The manifest '{self.path}' is a folder: give a file (--manifest).")
        refuse_not_a_file(self.path, "the manifest")
        if not os.path.exists(self.path):
            return
        try:
            with open(self.path, "rb") as stream:
                for number, line in enumerate(stream, start=1):
                    if line.strip() and _is_record(line.strip()) is False:
                        raise TextureError(
                            f"'{self.path}' is not a batch manifest (line {number} is not a "
                            "manifest record) and was left as it is: choose another --manifest "
                            "or --out."
                        )
        except OSError as error:
            raise TextureError(
                f"Cannot read the manifest '{self.path}': {error.strerror}."
            ) from error

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
                    last[record_key(record)] = {**record, "key": record_key(record)}
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
        """Add one line, flushed to disk; a failed write (a full disk) is one line naming the
        manifest, and the manifest is cut back to what it was (no half line)."""
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            with open(self.path, "a+b") as stream:
                stream.seek(0, os.SEEK_END)
                size = stream.tell()
                try:
                    if size > 0:
                        stream.seek(-1, os.SEEK_END)
                        if stream.read(1) != b"\n":
                            stream.write(b"\n")
                    stream.write(line.encode("utf-8"))
                    stream.flush()
                    os.fsync(stream.fileno())
                except OSError:
                    stream.truncate(size)
                    raise
        except OSError as error:
            raise TextureError(
                f"Cannot write the manifest '{self.path}': {reason(error)}."
            ) from error


# --------------------------------------------------------------------------------------------
# Manifest lines
# --------------------------------------------------------------------------------------------


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
        "notes": list(job.notes),
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
        "key": file_key(source.relpath),
        "file": source.relpath,
        "asset": None,
        "source": source.path,
        "status": FAILED,
        "error": error,
        "worker": worker_name(),
        "finished": now_iso(),
    }
