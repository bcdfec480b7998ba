"""The PNG writer without Blender: valid zlib streams, checksums, Blender's 8-bit rounding."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest

from sd_depth_texture.core.bake import png
from sd_depth_texture.core.bake.color import to_8bit


def decode(data: bytes) -> tuple[dict, np.ndarray]:
    """IHDR fields and the scanlines of a PNG this writer made (Up filter undone)."""
    assert data[:8] == png.SIGNATURE
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks.append((kind, body))
        at += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour, *_ = struct.unpack(">IIBBBBB", chunks[0][1])
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    lines = np.frombuffer(raw, dtype=np.uint8).reshape(height, -1)
    assert (lines[:, 0] == png.UP_FILTER).all()
    rows = np.add.accumulate(lines[:, 1:], axis=0, dtype=np.uint8)
    header = {"width": width, "height": height, "depth": depth, "colour": colour}
    return header, rows.reshape(height, width, -1)


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("workers", [1, 3])
def test_blocks_join_into_one_valid_stream(monkeypatch, channels, workers):
    monkeypatch.setattr(png, "_BYTES_PER_BLOCK", 200)  # many blocks, some of one row
    pixels = np.random.default_rng(channels).integers(0, 256, (41, 23, channels), np.uint8)
    header, rows = decode(png.encode_png(pixels, workers=workers))
    assert header == {"width": 23, "height": 41, "depth": 8, "colour": png._COLOUR_TYPES[channels]}
    np.testing.assert_array_equal(rows, pixels)


def test_float_pixels_are_stored_as_their_8_bit_rounding(monkeypatch):
    monkeypatch.setattr(png, "_BYTES_PER_BLOCK", 500)
    pixels = np.random.default_rng(0).random((30, 17, 3), dtype=np.float32)
    _, rows = decode(png.encode_png(pixels))
    np.testing.assert_array_equal(rows, to_8bit(pixels))


def test_adler32_combine_matches_zlib():
    first, second = bytes(range(256)) * 300, b"\xff" * 70_001
    combined = png.adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second))
    assert combined == zlib.adler32(first + second)
    assert png.adler32_combine(1, zlib.adler32(second), len(second)) == zlib.adler32(second)


def test_to_8bit_rounds_half_up_and_clamps():
    values = np.array([-1.0, 0.0, 0.5 / 255 - 1e-6, 0.5 / 255, 0.5, 254.5 / 255, 1.0, 7.0])
    assert to_8bit(values).tolist() == [0, 0, 0, 1, 128, 255, 255, 255]
    assert to_8bit(np.array([np.nan, 0.2], dtype=np.float32)).tolist() == [0, 51]


def test_text_chunks_are_read_by_pillow_and_refuse_bad_keys():
    from PIL import Image

    data = png.encode_png(np.zeros((2, 3, 3), np.uint8), text={"k:record": '{"a": "é"}'})
    with Image.open(io.BytesIO(data)) as image:
        assert image.text == {"k:record": '{"a": "é"}'} and image.size == (3, 2)
    for key in ("", "x" * 80, "a\0b", "ключ"):
        with pytest.raises(ValueError):
            png.text_chunk(key, "text")
