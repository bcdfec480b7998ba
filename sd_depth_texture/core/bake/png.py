"""8-bit PNG files written straight from arrays, deflated in parallel (no bpy).

A texture used to go through Blender: its float pixels set on an 8-bit image through RNA, then
``Image.save`` encoding the PNG, about 0.2 s for a 2048^2 texture on one thread (0.5 s on a
loaded machine). Here the rows are rounded to 8 bits exactly as Blender stores them
(:func:`.color.to_8bit`), given PNG's Up filter (each byte minus the one above, which leaves
small numbers on smooth pictures) and deflated with zlib's run-length strategy in blocks on
worker threads: zlib releases the GIL, each block ends on a byte boundary (``Z_SYNC_FLUSH``) so
the blocks join into one stream, as pigz does, and their Adler-32 checksums are combined: 35 ms
on one thread, 20 ms on two. On 2048^2 textures the run-length strategy was both faster and
smaller than level 1 (a projected picture: 25 ms of CPU, 0.45 MB; a noisy one: 122 ms, 7.9 MB,
against 209 ms and 8.7 MB), and the file is smaller than Blender's own (0.66 MB for the first).
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..disk import write_bytes_whole
from .color import to_8bit

log = logging.getLogger(__name__)

SIGNATURE = b"\x89PNG\r\n\x1a\n"
LEVEL = 1  # deflate level (the run-length strategy below does not search for matches)
STRATEGY = zlib.Z_RLE
UP_FILTER = 2  # PNG filter type: each byte minus the byte above it
_BYTES_PER_BLOCK = 1 << 20  # raw bytes deflated per task: fits in cache, enough tasks to share
_ADLER_BASE = 65521
_COLOUR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type (grey, RGB, RGBA)


def adler32_combine(first: int, second: int, second_length: int) -> int:
    """The Adler-32 of two byte strings joined, from theirs (zlib's ``adler32_combine``).

    With A = 1 + the sum of the bytes and B = the sum of the running A's, joining appends the
    second's sums, its B shifted by the first's A - 1 for each of its bytes.
    """
    a1, b1 = first & 0xFFFF, first >> 16
    a2, b2 = second & 0xFFFF, second >> 16
    a = (a1 + a2 - 1) % _ADLER_BASE
    b = (b1 + b2 + second_length * (a1 - 1)) % _ADLER_BASE
    return (b << 16) | a


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return b"".join([struct.pack(">I", len(data)), kind, data, struct.pack(">I", crc)])


def _filtered_rows(pixels: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows ``start`` to ``stop`` as PNG scanlines: the Up filter byte, then each row's bytes
    minus those of the row above (the row above the first is zero)."""
    width = pixels.shape[1] * pixels.shape[2]
    first = max(start - 1, 0)
    source = pixels[first:stop].reshape(stop - first, width)
    if source.dtype == np.uint16:  # 16-bit samples, most significant byte first
        rows = source.astype(">u2").view(np.uint8)
        width *= 2
    else:
        rows = source if source.dtype == np.uint8 else to_8bit(source)
    lines = np.empty((stop - start, width + 1), dtype=np.uint8)
    lines[:, 0] = UP_FILTER
    if start == 0:
        lines[0, 1:] = rows[0]
        np.subtract(rows[1:], rows[:-1], out=lines[1:, 1:])
    else:
        np.subtract(rows[1:], rows[:-1], out=lines[:, 1:])
    return lines


def _deflate_block(pixels: np.ndarray, start: int, stop: int, last: bool, level: int):
    """One block of scanlines as raw deflate data, with its Adler-32 and length."""
    lines = _filtered_rows(pixels, start, stop)
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15, 8, STRATEGY)
    body = compressor.compress(lines)
    body += compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)
    return body, zlib.adler32(lines), lines.size


def text_chunk(key: str, text: str) -> bytes:
    """An ``iTXt`` chunk (UTF-8 text, deflated) that image viewers and Pillow read as
    ``key: text``; the key is Latin-1, 1 to 79 characters, as PNG requires."""
    name = key.encode("latin-1")
    if not 1 <= len(name) <= 79 or b"\0" in name:
        raise ValueError(f"{key!r} is not a PNG text key")
    body = zlib.compress(text.encode("utf-8"), 9)
    # key, NUL, compressed (1), method 0, no language tag, NUL, no translated key, NUL, text
    return _chunk(b"iTXt", name + b"\0\x01\x00\0\0" + body)


def encode_png(
    pixels: np.ndarray,
    *,
    text: dict[str, str] | None = None,
    level: int = LEVEL,
    workers: int | None = None,
) -> bytes:
    """An (H, W, C) image, row 0 at the top, as the bytes of an 8-bit PNG file.

    C is 1 (grey), 3 (RGB) or 4 (RGBA). uint8 is stored as is, uint16 as a 16-bit PNG (the
    depth map); float in [0, 1] is rounded to 8 bits the way Blender stores it in an 8-bit
    image, block by block, so no full-size copy is made. ``text``: key -> text chunks written
    before the pixels. ``workers``: deflate threads (default: one per CPU core, at most 8).
    """
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    height, width, channels = pixels.shape
    if channels not in _COLOUR_TYPES or height < 1 or width < 1:
        raise ValueError(f"cannot write an image of shape {pixels.shape} as PNG")
    bits = 16 if pixels.dtype == np.uint16 else 8
    rows_per_block = max(1, _BYTES_PER_BLOCK // (width * channels * bits // 8 + 1))
    starts = list(range(0, height, rows_per_block))
    workers = workers or min(os.cpu_count() or 1, 8)
    tasks = [
        (pixels, start, min(start + rows_per_block, height), start == starts[-1], level)
        for start in starts
    ]
    if workers > 1 and len(tasks) > 1:
        with ThreadPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
            blocks = list(pool.map(lambda task: _deflate_block(*task), tasks))
    else:
        blocks = [_deflate_block(*task) for task in tasks]
    checksum = 1
    for _, adler, length in blocks:
        checksum = adler32_combine(checksum, adler, length)
    # A zlib header for a 32 KiB window and the fastest level; the header's check bits make it
    # a multiple of 31.
    stream = b"".join([b"\x78\x01", *(body for body, _, _ in blocks), struct.pack(">I", checksum)])
    header = struct.pack(">IIBBBBB", width, height, bits, _COLOUR_TYPES[channels], 0, 0, 0)
    texts = [text_chunk(key, value) for key, value in (text or {}).items()]
    return b"".join(
        [
            SIGNATURE,
            _chunk(b"IHDR", header),
            *texts,
            _chunk(b"IDAT", stream),
            _chunk(b"IEND", b""),
        ]
    )


def write_png(path: str, pixels: np.ndarray, **options) -> str:
    """Write :func:`encode_png` to ``path`` whole: a temporary name, fsync, then renamed into
    place; a failed write (a full disk) raises its OSError and leaves no temporary file."""
    return write_bytes_whole(path, encode_png(pixels, **options))
