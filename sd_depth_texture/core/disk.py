"""Files written whole and paths that are not files, with no bpy (the batch and the flow share it).

A write goes to a hidden temporary name beside the file, is flushed and fsynced, and only then
renamed over the old one, so a full disk or a kill leaves the old file and no temporary behind.
A path a run reads or writes must be a regular file (or not exist yet): a FIFO blocks forever
when opened, ``/dev/zero`` never ends, ``/dev/full`` and ``/dev/null`` swallow what is written,
so each is refused by its name before anything opens it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from typing import BinaryIO

from .errors import TextureError

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
    (stat.S_ISSOCK, "a socket"),
)


def reason(error: BaseException) -> str:
    """Why a read or write failed, in words for one line: a full disk says so (the bare
    ``strerror`` of a failed rename after a full disk can read "No such file or directory")."""
    if isinstance(error, OSError) and error.errno in _DISK_FULL:
        return "the disk is full"
    text = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    if any(os.strerror(number) in text for number in _DISK_FULL):  # Blender's "Error: ..."
        return "the disk is full"
    return " ".join(text.split()).rstrip(".")


def partial_path(path: str) -> str:
    """The temporary name ``path`` is written under: hidden, beside it, same extension
    (``out.blend`` -> ``.out.partial.blend``), so a rename within one folder puts it in place."""
    folder, name = os.path.split(os.path.abspath(path))
    stem, extension = os.path.splitext(name)
    return os.path.join(folder, f".{stem}.partial{extension}")


def remove_quietly(path: str) -> None:
    """Remove a temporary file if it is there; cleaning up must not hide the error that made it
    necessary."""
    with contextlib.suppress(OSError):
        os.remove(path)


def write_stream_whole(path: str, write: Callable[[BinaryIO], object]) -> str:
    """Write ``path`` whole with ``write(stream)``: a temporary name, flush, fsync, rename.

    Raises the OSError of a failed write (a full disk) with the old file untouched and no
    temporary file left.
    """
    partial = partial_path(path)
    try:
        with open(partial, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(partial, path)
    except BaseException:
        remove_quietly(partial)
        raise
    return path


def write_bytes_whole(path: str, data: bytes) -> str:
    """Write ``data`` to ``path`` whole (see :func:`write_stream_whole`)."""
    return write_stream_whole(path, lambda stream: stream.write(data))


def not_a_file(path: str) -> str | None:
    """Why ``path`` cannot be read or written as a file: a link to nothing, a FIFO, a device, a
    socket; None for a regular file, a folder or a path that does not exist. Never opens it."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    if stat.S_ISLNK(mode):
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            return f"a link to '{os.readlink(path)}', which does not exist"
        except OSError as error:
            return f"a link that cannot be followed ({reason(error)})"
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return None


def refuse_not_a_file(path: str, what: str) -> None:
    """One line for ``what`` at ``path`` when it is not a regular file (see :func:`not_a_file`)."""
    kind = not_a_file(path)
    if kind is not None:
        raise TextureError(
            f"{what[:1].upper()}{what[1:]} '{path}' is {kind}: give the path of a regular file."
        )
