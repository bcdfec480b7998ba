"""Files the runs write, each written whole: a temporary name beside it, fsync, then a rename.

Where files go is decided in :mod:`.outputs`; this module only writes them so that an error, a
Ctrl+C or a kill at any moment leaves either the old file or the new one, never a half-written
one, and takes back what it made (files, folders) when a write fails part-way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Iterator

import bpy

from ..core.disk import partial_path, reason, refuse_not_a_file
from ..core.errors import TextureError
from .blend_check import check_blend, remember_sound

log = logging.getLogger(__name__)


def open_blend(path: str) -> None:
    """Open a .blend; a clear line when it is missing or damaged (its block structure is
    checked first, :func:`.blend_check.check_blend`, so a file Blender's reader would crash on
    or read for minutes is refused without opening it)."""
    refuse_not_a_file(path, "the .blend")  # a FIFO or a device is named as what it is
    if not path.lower().endswith(".blend") or not os.path.isfile(path):
        raise TextureError(f"There is no .blend file at '{path}'.")
    check_blend(path)
    try:
        bpy.ops.wm.open_mainfile(filepath=os.path.abspath(path), load_ui=False)
    except RuntimeError as error:
        raise TextureError(f"Blender cannot open '{path}': it may be damaged.") from error


def fsync(path: str) -> None:
    """Flush a written file to disk before it is renamed into place."""
    with open(path, "rb") as stream:
        os.fsync(stream.fileno())


@contextlib.contextmanager
def writing(path: str) -> Iterator[None]:
    """Turn a failed write of ``path`` (a full disk, a folder that went away, Blender's "could
    not write image") into one line naming the file."""
    try:
        yield
    except (OSError, RuntimeError) as error:
        raise TextureError(f"Cannot write '{path}': {reason(error)}.") from error


def _aside_path(path: str) -> str:
    folder, name = os.path.split(path)
    stem, extension = os.path.splitext(name)
    return os.path.join(folder, f".{stem}.previous{extension}")


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError:  # cleaning up must not hide the error that made it necessary
        log.exception("Cannot remove '%s'", path)


def make_folders(folder: str) -> list[str]:
    """Create ``folder`` and any missing parents; returns those it created, outermost first."""
    missing = []
    probe = os.path.abspath(folder)
    while not os.path.isdir(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise TextureError(f"Cannot create the folder '{folder}': {error.strerror}.") from error
    return missing[::-1]


def remove_folders(folders: list[str]) -> None:
    """Remove folders :func:`make_folders` created, innermost first, where they are still empty."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def copy_whole(source: str, target: str) -> None:
    """Copy a file whole (a backup): never a half-copied ``target``."""
    partial = partial_path(target)
    try:
        shutil.copy2(source, partial)
        fsync(partial)
        os.replace(partial, target)
    except BaseException:
        _remove(partial)
        raise


class FileSet:
    """Files written under temporary names, then renamed into place together.

    ``stage(final)`` gives the name to write ``final`` under; :meth:`commit` renames every
    staged file over its final name, keeping each replaced file aside until :meth:`release`;
    :meth:`rollback` puts everything back as it was (replaced files restored, new ones and the
    folders made for them removed). Used as ``stage ... commit ... release`` with ``rollback``
    on any error, including a KeyboardInterrupt.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[str, str]] = []  # (partial, final)
        self._asides: list[tuple[str, str]] = []  # (aside, final)
        self._backups: list[str] = []
        self._folders: list[str] = []
        self.created: list[str] = []  # final paths that did not exist before this set

    def stage(self, final: str) -> str:
        """Make ``final``'s folder if needed; returns the temporary name to write it under."""
        self._folders += make_folders(os.path.dirname(os.path.abspath(final)))
        partial = partial_path(final)
        _remove(partial)  # a stale one from a run that was killed
        self._staged.append((partial, final))
        return partial

    def backup(self, final: str, backup: str) -> None:
        """Copy the file at ``final`` to ``backup`` when the set is committed (before renaming)."""
        copy_whole(final, backup)
        self._backups.append(backup)

    def commit(self) -> None:
        """Rename every staged file into place; on any error, undo the renames already done."""
        final = ""
        try:
            for partial, final in self._staged:
                fsync(partial)
                if os.path.lexists(final):
                    aside = _aside_path(final)
                    _remove(aside)
                    try:
                        os.link(final, aside)  # the old file, kept without copying it
                    except OSError:
                        shutil.copy2(final, aside)
                    self._asides.append((aside, final))
                else:
                    self.created.append(final)
                os.replace(partial, final)
        except BaseException as error:
            self.rollback()
            if isinstance(error, OSError):
                raise TextureError(f"Cannot write '{final}': {reason(error)}.") from error
            raise
        self._staged = []

    def release(self) -> None:
        """The set is final: drop the replaced files kept aside."""
        for aside, _ in self._asides:
            _remove(aside)
        self._asides = []

    def take_back(self) -> None:
        """After :meth:`release`, when the caller's next step failed (saving the .blend these
        files belong to): remove the files the set created and the folders made for them."""
        for final in self.created:
            _remove(final)
        remove_folders(self._folders)
        self.created, self._folders = [], []

    def rollback(self) -> None:
        """Leave the files as they were before the set: remove partials and new files, restore
        replaced ones, drop backups made for it and the folders it made."""
        for partial, _ in self._staged:
            _remove(partial)
        for final in self.created:
            _remove(final)
        for aside, final in reversed(self._asides):
            try:
                os.replace(aside, final)
            except OSError:  # keep undoing the rest; the old file is still there under aside
                log.exception("Cannot put '%s' back from '%s'", final, aside)
        for backup in self._backups:
            _remove(backup)
        remove_folders(self._folders)
        self._staged, self._asides, self._backups, self.created = [], [], [], []


def write_whole(path: str, write: Callable[[str], object], backup: str | None = None) -> None:
    """Write one file with ``write(temporary_path)`` and rename it into place; with ``backup``,
    the file it replaces is copied there first."""
    files = FileSet()
    try:
        with writing(path):
            write(files.stage(path))
        if backup is not None:
            with writing(backup):
                files.backup(path, backup)
        files.commit()
    except BaseException:
        files.rollback()
        raise
    files.release()


def save_blend_copy(path: str) -> None:
    """Write the open file to ``path`` atomically: a temporary name, fsync, then rename.

    A crash never leaves a half-written .blend, the open file keeps its own path, and relative
    paths are remapped to the new folder. No ``.blend1`` is left anywhere: Blender keeps one
    only when it saves over an existing file, and the temporary name is made fresh first (a
    kill during an earlier save leaves its partial and that partial's ``.blend1`` behind).
    """
    path = os.path.abspath(path)
    made = make_folders(os.path.dirname(path))
    partial = partial_path(path)
    stale = (partial, partial + "1")
    for leftover in stale:
        _remove(leftover)
    try:
        bpy.ops.wm.save_as_mainfile(
            filepath=partial, copy=True, relative_remap=True, check_existing=False
        )
        fsync(partial)
        os.replace(partial, path)
        remember_sound(path)  # Blender wrote it: a later command need not walk it again
    except BaseException as error:
        for leftover in stale:
            _remove(leftover)
        remove_folders(made)
        if isinstance(error, (RuntimeError, OSError)):
            raise TextureError(f"Cannot write '{path}': {reason(error)}.") from error
        raise
    _remove(partial + "1")
