"""The block structure of a .blend, checked before Blender reads it (no bpy).

Blender's reader trusts a file's blocks: a valid header followed by gigabytes of zeros (a
damaged download, a sparse file) is read to its end for minutes, or crashes the process, which
in a batch kills the whole batch on every rerun. The structure is cheap to check without
reading the data: a header, then blocks each giving its own length, up to ``ENDB``. Only the
block headers are read (seeks in between), so a file of gigabytes costs a few kilobytes.

Formats: ``BLENDER`` + pointer size (``_`` 4, ``-`` 8) + endianness (``v`` little, ``V`` big) +
version (12 bytes), then blocks of code(4) length(4) old pointer(4 or 8) SDNA index(4)
count(4); Blender 5.0's ``BLENDER17-01v0500`` (17 bytes) has blocks of code(4) SDNA index(4)
old pointer(8) length(8) count(8). Compressed files (zstd, gzip) are checked through their
decompressed stream where Python can read it (zstd needs the ``zstandard`` package). Blender
writes zstd in its seekable format (independent frames of about 1 MB and a seek table): there
only the frames that hold block headers are decompressed (13 of 70 for a 1M-triangle mesh,
0.05 s less); a zstd file without a seek table that accounts for every byte is read through.

One command checks the same files several times (the output before it is opened, again when
the run plans its paths, its texture references): a file found sound is remembered by its
identity (device, inode, size, modification and change times in ns), so a later check of the
very same, unchanged file returns at once. Any write to it, a replacement or a touch changes
that identity and the file is walked again. A .blend this process saved itself
(:func:`.files.save_blend_copy`) is remembered as sound too: Blender's writer made it.
"""

from __future__ import annotations

import bisect
import gzip
import os
import re
import struct
from typing import BinaryIO

from ..core.errors import TextureError

_OLD_HEADER = re.compile(rb"BLENDER([_-])([vV])(\d{3})")
_NEW_HEADER = re.compile(rb"BLENDER(\d\d)-(\d\d)([vV])(\d{4})")
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"
_CODE = re.compile(rb"[A-Z][A-Z0-9\x00]{3}")
_SKIP_CHUNK = 1 << 20
# Zstandard's seekable format, which Blender writes: independent frames, then a skippable frame
# holding the seek table (per frame its compressed and decompressed size) and this footer.
_SEEKABLE_MAGIC = 0x8F92EAB1
_SKIPPABLE_MAGIC = 0x184D2A5E
_SEEK_FOOTER = struct.Struct("<IBI")  # frame count, descriptor, magic
_SOUND_REMEMBERED = 64  # files remembered as sound; the oldest are forgotten first

# Path -> identity of the file when it was found sound (see the module's docstring).
_sound: dict[str, tuple[int, ...]] = {}


class _DamagedError(Exception):
    """What is wrong with the file's structure, for the one line."""


class _Stream:
    """A file, or a decompressed stream, read forward: block headers read, block data skipped
    (by seeking where the file allows it)."""

    def __init__(self, stream: BinaryIO, size: int | None) -> None:
        self.stream, self.size, self.position = stream, size, 0

    def read(self, count: int) -> bytes:
        data = self.stream.read(count)
        self.position += len(data)
        return data

    def skip(self, count: int) -> None:
        if self.size is not None:
            if self.position + count > self.size:
                raise _DamagedError("a block runs past the end of the file")
            self.stream.seek(count, os.SEEK_CUR)
            self.position += count
            return
        while count > 0:
            data = self.read(min(count, _SKIP_CHUNK))
            if not data:
                raise _DamagedError("a block runs past the end of the file")
            count -= len(data)


def _walk(stream: _Stream) -> None:
    """Read the header and every block header up to ``ENDB``; raise :class:`_DamagedError`."""
    head = stream.read(17)
    old, new = _OLD_HEADER.match(head), _NEW_HEADER.match(head)
    if new is not None and new.group(1) == b"17" and new.group(2) == b"01":
        endian = "<" if new.group(3) == b"v" else ">"
        layout, header_size = struct.Struct(endian + "4siQqq"), 17
        fields = ("code", "sdna", "old", "length", "count")
    elif old is not None:
        endian = "<" if old.group(2) == b"v" else ">"
        pointer = "I" if old.group(1) == b"_" else "Q"
        layout, header_size = struct.Struct(endian + "4si" + pointer + "ii"), 12
        fields = ("code", "length", "old", "sdna", "count")
    elif new is not None:
        return  # a newer file format than this add-on knows: Blender decides
    else:
        raise _DamagedError("it does not start with a .blend header")
    # The header read 17 bytes; an old-format file's first block started after 12.
    pending = head[header_size:]
    has_dna = False
    while True:
        raw = pending + stream.read(layout.size - len(pending))
        pending = b""
        if len(raw) < layout.size:
            raise _DamagedError("it ends before its last block (ENDB)")
        block = dict(zip(fields, layout.unpack(raw), strict=True))
        code = block["code"]
        if not _CODE.fullmatch(code) or block["length"] < 0 or block["count"] < 0:
            raise _DamagedError(f"a block at byte {stream.position - layout.size} is not a block")
        if code == b"ENDB":
            break
        has_dna = has_dna or code == b"DNA1"
        stream.skip(block["length"])
    if not has_dna:
        raise _DamagedError("it has no DNA block")


class _Frames:
    """A zstd .blend in the seekable format, read forward like :class:`_Stream`: only the
    frames that hold block headers are decompressed, so a mesh's megabytes of vertex data are
    skipped as in an uncompressed file (0.05 s of decompressing for a 1M-triangle mesh)."""

    def __init__(self, raw: BinaryIO, table: list[tuple[int, int]], decompressor) -> None:
        self.raw, self.decompressor, self.position = raw, decompressor, 0
        self.sizes = [size for _, size in table]
        self.compressed = [size for size, _ in table]
        self.offsets = [0]  # where each frame starts, compressed
        self.starts = [0]  # and decompressed
        for compressed, size in table:
            self.offsets.append(self.offsets[-1] + compressed)
            self.starts.append(self.starts[-1] + size)
        self.size = self.starts[-1]
        self._frame, self._data = -1, b""

    def read(self, count: int) -> bytes:
        pieces = []
        while count > 0 and self.position < self.size:
            frame = bisect.bisect_right(self.starts, self.position) - 1
            data = self._decompressed(frame)
            piece = data[self.position - self.starts[frame] :][:count]
            pieces.append(piece)
            self.position += len(piece)
            count -= len(piece)
        return b"".join(pieces)

    def skip(self, count: int) -> None:
        if self.position + count > self.size:
            raise _DamagedError("a block runs past the end of the file")
        self.position += count

    def _decompressed(self, frame: int) -> bytes:
        if frame != self._frame:
            self.raw.seek(self.offsets[frame])
            compressed = self.raw.read(self.compressed[frame])
            data = self.decompressor.decompress(compressed, max_output_size=self.sizes[frame])
            if len(compressed) != self.compressed[frame] or len(data) != self.sizes[frame]:
                raise _DamagedError("a compressed frame is not what its seek table says")
            self._frame, self._data = frame, data
        return self._data


def _seek_table(raw: BinaryIO, size: int) -> list[tuple[int, int]] | None:
    """Per frame (compressed size, decompressed size) from a zstd file's seek table, or None
    where the file has none that accounts for every byte of it (then it is read through)."""
    if size < 8 + _SEEK_FOOTER.size:
        return None
    raw.seek(size - _SEEK_FOOTER.size)
    count, descriptor, magic = _SEEK_FOOTER.unpack(raw.read(_SEEK_FOOTER.size))
    entry = 12 if descriptor & 0x80 else 8  # with a checksum per frame, or without
    table_size = count * entry + _SEEK_FOOTER.size
    if magic != _SEEKABLE_MAGIC or descriptor & 0x7F or size < 8 + table_size:
        return None
    raw.seek(size - table_size - 8)
    skippable, length = struct.unpack("<II", raw.read(8))
    entries = raw.read(count * entry)
    if skippable != _SKIPPABLE_MAGIC or length != table_size or len(entries) != count * entry:
        return None
    table = [struct.unpack_from("<II", entries, k * entry) for k in range(count)]
    if sum(compressed for compressed, _ in table) != size - table_size - 8:
        return None
    return table


def _decompressed(path: str, magic: bytes) -> BinaryIO | None:
    """The decompressed stream of a compressed .blend, or None where Python cannot read it."""
    if magic.startswith(_GZIP_MAGIC):
        return gzip.open(path, "rb")
    try:
        import zstandard
    except ImportError:
        return None
    return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), read_across_frames=True)


def check_blend(path: str) -> None:
    """Refuse a .blend whose block structure is damaged, with one line, before Blender reads it.

    Reads only block headers of an uncompressed file (seeks over the data, stops at ``ENDB``);
    a compressed one is read through once, where Python can decompress it. A file found sound
    before and unchanged since is not read again.
    """
    key = os.path.abspath(path)
    if _sound.get(key) is not None and _sound[key] == _identity(key):
        return
    _walk_file(path)
    remember_sound(key)


def remember_sound(path: str) -> None:
    """Remember the file at ``path``, as it is now, as sound: found so by :func:`check_blend`,
    or just written by Blender itself. Any later change to it makes it checked again."""
    key = os.path.abspath(path)
    identity = _identity(key)
    _sound.pop(key, None)
    if identity is not None:
        _sound[key] = identity
        while len(_sound) > _SOUND_REMEMBERED:
            del _sound[next(iter(_sound))]


def _identity(path: str) -> tuple[int, ...] | None:
    """What changes whenever a file's content can have changed; None when it cannot be read."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (
        status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns
    )  # fmt: skip


def _walk_file(path: str) -> None:
    """:func:`check_blend`'s walk, every time."""
    try:
        with open(path, "rb", buffering=0) as raw:  # unbuffered: only the headers are read
            magic = raw.read(4)
            size = os.fstat(raw.fileno()).st_size
            table = _seek_table(raw, size) if magic == _ZSTD_MAGIC else None
            if table is not None:
                try:
                    import zstandard
                except ImportError:
                    return  # zstd without the zstandard package: Blender decides
                _walk(_Frames(raw, table, zstandard.ZstdDecompressor()))
                return
            if magic.startswith(_GZIP_MAGIC) or magic == _ZSTD_MAGIC:
                stream = _decompressed(path, magic)
                if stream is None:
                    return  # zstd without the zstandard package: Blender decides
                with stream:
                    _walk(_Stream(stream, None))
                return
            raw.seek(0)
            _walk(_Stream(raw, size))
    except _DamagedError as damage:
        raise TextureError(f"Blender cannot open '{path}': it is damaged ({damage}).") from None
    except (OSError, EOFError) as error:
        text = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise TextureError(f"Blender cannot open '{path}': {text.rstrip('.')}.") from error
    except Exception as error:  # zstandard.ZstdError, gzip's BadGzipFile: damaged compression
        raise TextureError(
            f"Blender cannot open '{path}': its compressed data is damaged ({error})."
        ) from error
