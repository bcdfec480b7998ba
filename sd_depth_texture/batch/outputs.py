"""Where a batch writes, and what it refuses to write over. No bpy.

Every path a run writes is named here (the output .blend, its texture folder, the previews and
the staging place beside each; the texture files in that folder are named by the flow's one
rule, :func:`..blender.outputs.texture_path`), so the planner can check them all before any
work and the worker writes exactly those. The rules, each a one-line refusal before anything
is written:

* ``--out`` is a folder this process can write, and neither lies in a source folder nor holds
  one (its outputs would land on sources), unless ``--in-place``, which writes into the
  sources by design (with backups);
* no output is a source file;
* no existing file the run would write was written by something other than a batch: an output
  .blend without an in-file batch record, a preview no batch record names, a
  contact sheet the batch did not make (the manifest checks itself,
  :meth:`.records.Manifest.verify`);
* one batch at a time per ``--out``: :class:`OutLock`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core.disk import not_a_file, reason, refuse_not_a_file
from ..core.errors import TextureError
from .records import FileTask, SourceFile, now_iso
from .sources import is_within

log = logging.getLogger(__name__)

LOCK_NAME = ".batch.lock"
#: Staged files wait here, beside their final place, until the record naming them is committed.
STAGING = ".staging"
# Blender's bpy.path.clean_name keeps these (and every character from U+00FF up).
_NAME_SAFE = frozenset("-_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# A file name holds at most 255 bytes; the batch names an asset's preview '<name>.png', written
# first as '.<name>.partial.png' (its textures are named by the flow, which fits them itself).
_ASSET_NAME_BYTES = 255 - len("..partial.png")


# --------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------


def file_safe_name(name: str) -> str:
    """``name`` with the characters that trouble file systems replaced by '_', exactly as
    Blender's ``bpy.path.clean_name`` does (the texturing flow names its images that way)."""
    return "".join(c if c in _NAME_SAFE or ord(c) >= 0xFF else "_" for c in name)


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


def asset_file_name(asset: str, tagged: bool = False) -> str:
    """The asset's name for its preview: cleaned, and tagged with a hash of the exact name where
    cleaning changed it (or ``tagged``), so assets such as ``A.B`` and ``A_B`` in one file never
    share a file (and each keeps its name across runs). A name too long for the file system
    (counted in UTF-8 bytes, with the extension) is shortened at a whole character and tagged
    too. :func:`asset_file_names` makes the names of one file's assets unique."""
    safe = file_safe_name(asset)
    encoded = safe.encode("utf-8", "surrogateescape")
    if safe == asset and len(encoded) <= _ASSET_NAME_BYTES and not tagged:
        return safe
    tag = hashlib.sha1(asset.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    kept = encoded[: _ASSET_NAME_BYTES - len(tag) - 4].decode("utf-8", "ignore")
    return f"{kept}-{tag}"


def asset_file_names(assets: Iterable[str]) -> dict[str, str]:
    """Every asset of one file with a file name no other asset of it has (compared as a
    case-insensitive file system does), the same for the same assets on every run.

    An asset literally named after another's tagged name (``A_B-1a2b3c4d`` beside ``A.B``) is
    tagged with its own hash; a clash left after that (two hashes alike) is numbered in name
    order."""
    names = {asset: asset_file_name(asset) for asset in sorted(assets)}
    clashing = _clashes(names)
    for asset in clashing:
        names[asset] = asset_file_name(asset, tagged=True)
    taken: set[str] = set()
    for asset, name in names.items():
        candidate, number = name, 2
        while candidate.lower() in taken:
            candidate, number = f"{name}-{number}", number + 1
        names[asset] = candidate
        taken.add(candidate.lower())
    return names


def _clashes(names: Mapping[str, str]) -> list[str]:
    """The assets whose name another asset also has, case folded."""
    count: dict[str, int] = {}
    for name in names.values():
        count[name.lower()] = count.get(name.lower(), 0) + 1
    return [asset for asset, name in names.items() if count[name.lower()] > 1]


def preview_path(task: FileTask, asset: str, file_name: str = "") -> str:
    """``file_name``: the asset's unique name in its file (:func:`asset_file_names`)."""
    return os.path.join(task.preview_dir, (file_name or asset_file_name(asset)) + ".png")


def staged_path(final: str) -> str:
    """Where ``final`` is written first: a hidden folder beside it (same disk, so the move into
    place is a rename, and never a half-written file under the real name)."""
    return os.path.join(os.path.dirname(final), STAGING, os.path.basename(final))


def record_paths(record: Mapping[str, Any]) -> list[str]:
    """The files a manifest line (or an in-file record entry) says a batch wrote."""
    paths = [record.get("output"), record.get("preview"), *(record.get("textures") or {}).values()]
    return [os.path.normpath(path) for path in paths if isinstance(path, str) and path]


# --------------------------------------------------------------------------------------------
# Refusals before any work
# --------------------------------------------------------------------------------------------


def check_out_folder(out: str) -> None:
    """``--out`` must be a folder, or a path where one can be made, that this process can write."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise TextureError(f"--out '{out}' is a file, not a folder.")
    existing = out
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise TextureError(f"--out '{out}' cannot be made: '{existing}' is a file, not a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise TextureError(
            f"--out '{out}' is not writable: '{existing}' is read-only for this user."
        )


def refuse_overlap(out: str, manifest: str, folders: Sequence[str]) -> None:
    """Neither ``--out`` nor the manifest may lie in a source folder, and ``--out`` may not hold
    one: outputs mirror the sources' layout and would land on them."""
    manifest_folder = os.path.dirname(os.path.realpath(manifest))
    for folder in folders:
        if is_within(out, folder):
            raise TextureError(
                f"--out would overwrite the source folder '{folder}': '{out}' lies inside it. "
                "Choose a folder outside the sources, or pass --in-place to texture the "
                "sources themselves."
            )
        if is_within(folder, out):
            raise TextureError(
                f"--out would overwrite the source folder '{folder}': it lies inside '{out}'. "
                "Choose a folder outside the sources, or pass --in-place to texture the "
                "sources themselves."
            )
        if is_within(manifest_folder, folder):
            raise TextureError(
                f"--manifest '{manifest}' lies inside the source folder '{folder}': choose a "
                "place outside the sources."
            )


def refuse_writing_sources(outputs: Iterable[str], sources: Sequence[SourceFile]) -> None:
    """No output may be a source file (through any folder or link)."""
    real = {os.path.realpath(source.path): source for source in sources}
    for output in outputs:
        source = real.get(os.path.realpath(output))
        if source is not None:
            raise TextureError(
                f"--out would overwrite the source '{source.path}': choose another folder, "
                "or pass --in-place to texture the sources themselves."
            )


def _foreign(path: str) -> TextureError:
    return TextureError(
        f"'{path}' exists and was not written by a batch: it was left as it is. "
        "Choose another --out, or move that file away."
    )


def refuse_foreign_files(
    tasks: Sequence[FileTask],
    manifest_records: Iterable[Mapping[str, Any]],
    read_record: Callable[[str], Mapping[str, Any] | None],
    in_place: bool,
    sheet: str | None = None,
    is_sheet: Callable[[str], bool] = lambda _path: True,
) -> None:
    """Refuse the run if any file it would write exists and no batch wrote it.

    A batch's own files are known from its records: an output .blend carries an in-file record
    (``read_record(path)``, None when there is none), and every texture and preview is named by
    a manifest line or by that in-file record before it is moved into place.
    """
    owned = {path for record in manifest_records for path in record_paths(record)}
    for task in tasks:
        if not task.jobs:
            continue
        refuse_not_a_file(task.output, "the output")
        if task.backup:
            refuse_not_a_file(task.backup, "the backup")
        if not in_place and os.path.exists(task.output):
            record = read_record(task.output) if os.path.isfile(task.output) else None
            if record is None:
                raise TextureError(
                    f"'{task.output}' exists and was not written by a batch (it has no batch "
                    "record): it was left as it is. Choose another --out, or move that file away."
                )
            owned.update(path for entry in record.values() for path in record_paths(entry))
        elif in_place and os.path.isfile(task.output):
            record = read_record(task.output) or {}
            owned.update(path for entry in record.values() for path in record_paths(entry))
        for job in task.jobs:
            # Textures need no check here: the flow names them, refuses a planned path that is
            # not a file, and never writes over a file the output does not own.
            path = preview_path(task, job.asset, job.file_name)
            refuse_not_a_file(path, "the file")
            if os.path.lexists(path) and os.path.normpath(path) not in owned:
                raise _foreign(path)
    if sheet is not None:
        refuse_not_a_file(sheet, "the contact sheet")
        if os.path.lexists(sheet) and not is_sheet(sheet):
            raise _foreign(sheet)


# --------------------------------------------------------------------------------------------
# One batch at a time
# --------------------------------------------------------------------------------------------


def _alive(host: str, pid: int) -> bool:
    """Whether the lock's holder may still run: always, unless it is gone from this host."""
    if host != socket.gethostname():
        return True  # another machine's processes cannot be seen from here
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


class OutLock:
    """The lock on an ``--out`` folder: a file made with O_CREAT|O_EXCL holding host, pid and
    start time. A lock whose process is gone from this host is taken over; a live one, or one
    from another host, refuses the run naming its holder.

    Entering makes the folder if needed; leaving removes the lock and any folder entering made
    that is still empty, so a run refused before any work leaves nothing behind.
    """

    def __init__(self, out: str) -> None:
        self.out = out
        self.path = os.path.join(out, LOCK_NAME)
        self.content: bytes | None = None
        self.created: list[str] = []

    def busy(self, holder: Mapping[str, Any]) -> TextureError:
        """The refusal while another live process holds the lock, naming it."""
        return TextureError(
            f"Another batch is writing to '{self.out}': {holder['host']} pid {holder['pid']} "
            f"since {holder.get('started', '?')} holds '{self.path}' (if it is not running "
            "any more, delete that file)."
        )

    def __enter__(self) -> OutLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def acquire(self) -> None:
        missing = []
        folder = self.out
        while not os.path.isdir(folder):
            missing.append(folder)
            folder = os.path.dirname(folder)
        os.makedirs(self.out, exist_ok=True)
        self.created = missing
        content = json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "started": now_iso()}
        ).encode()
        try:
            for _ in range(5):
                try:
                    descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    self._take_over_if_stale()
                    continue
                try:
                    with os.fdopen(descriptor, "wb") as stream:
                        stream.write(content)
                        stream.flush()
                        os.fsync(stream.fileno())
                except OSError as error:  # an empty lock would refuse every later run
                    os.unlink(self.path)
                    raise TextureError(f"Cannot write '{self.path}': {reason(error)}.") from error
                self.content = content
                return
            raise TextureError(f"Cannot take the lock '{self.path}': other batches keep taking it.")
        except BaseException:
            self._remove_created()
            raise

    def _holder(self) -> tuple[bytes, dict[str, Any]] | None:
        """The lock's bytes and holder; None when it vanished meanwhile."""
        kind = not_a_file(self.path)
        if kind is not None:  # never opened: a FIFO would block, a device never end
            raise TextureError(
                f"'{self.path}' is {kind}, not a lock: if no run is writing to '{self.out}', "
                "delete it."
            )
        try:
            with open(self.path, "rb") as stream:
                data = stream.read()
        except FileNotFoundError:
            return None
        try:
            holder = json.loads(data.decode("utf-8"))
            if not isinstance(holder, dict):
                raise ValueError("not an object")
            holder = {**holder, "host": str(holder["host"]), "pid": int(holder["pid"])}
        except (ValueError, KeyError, TypeError) as error:
            raise TextureError(
                f"'{self.path}' is not a batch lock that can be read: if no batch is writing to "
                f"'{self.out}', delete it."
            ) from error
        return data, holder

    def _take_over_if_stale(self) -> None:
        found = self._holder()
        if found is None:
            return  # released meanwhile: try again
        data, holder = found
        if _alive(holder["host"], holder["pid"]):
            raise self.busy(holder)
        # Move the stale lock aside, and only delete it if it is still the one judged stale:
        # another process may have taken it over in between.
        aside = f"{self.path}.{socket.gethostname()}.{os.getpid()}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        with open(aside, "rb") as stream:
            moved = stream.read()
        if moved == data:
            log.warning(
                "Taking over the lock of %s pid %s, which is no longer running",
                holder["host"],
                holder["pid"],
            )
            os.unlink(aside)
            return
        with contextlib.suppress(FileExistsError):
            os.link(aside, self.path)  # someone else's live lock: put it back
        os.unlink(aside)

    def release(self) -> None:
        if self.content is not None:
            try:
                with open(self.path, "rb") as stream:
                    if stream.read() == self.content:
                        os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.content = None
        self._remove_created()

    def _remove_created(self) -> None:
        for folder in self.created:  # deepest first
            try:
                os.rmdir(folder)
            except OSError:
                break  # not empty: the run wrote something there
        self.created = []


class SourceLock(OutLock):
    """The lock on a .blend rewritten in place (``texture --in-place``, ``batch --in-place``):
    ``.<name>.lock`` beside it, taken as :class:`OutLock` takes ``--out``'s, so two runs never
    rewrite one file at once (the second would back up and overwrite a file the first is
    writing, and one run's result would be lost)."""

    def __init__(self, blend: str) -> None:
        # The file itself, not a link to it: runs given two names for one file share a lock.
        self.blend = os.path.realpath(blend)
        super().__init__(os.path.dirname(self.blend))
        self.path = os.path.join(self.out, f".{os.path.basename(self.blend)}.lock")

    def busy(self, holder: Mapping[str, Any]) -> TextureError:
        return TextureError(
            f"Another run is writing into '{self.blend}': {holder['host']} pid {holder['pid']} "
            f"since {holder.get('started', '?')} holds '{self.path}' (if it is not running any "
            "more, delete that file)."
        )


@contextlib.contextmanager
def in_place_locks(blends: Iterable[str]) -> Iterator[None]:
    """Hold a :class:`SourceLock` on every .blend that exists among ``blends`` (the files a run
    rewrites in place) for the run; a missing one is refused by the run itself."""
    with contextlib.ExitStack() as stack:
        for blend in blends:
            folder = os.path.dirname(os.path.realpath(blend))
            # A read-only folder cannot be rewritten either: the run refuses it in its words.
            if os.path.isfile(blend) and os.access(folder, os.W_OK | os.X_OK):
                stack.enter_context(SourceLock(blend))
        yield


def source_locks(
    sources: Sequence[SourceFile], in_place: bool
) -> contextlib.AbstractContextManager:
    """A batch's locks on its sources: all of them with ``--in-place``, none otherwise."""
    return in_place_locks([source.path for source in sources] if in_place else [])
