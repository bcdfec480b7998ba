"""The .blend block walk (:mod:`sd_depth_texture.blender.blend_check`) on files Blender saved:
every format it writes passes, and a file cut short or padded with zeros is one line."""

from __future__ import annotations

import os
import re
import struct
import time
from pathlib import Path

import bpy
import pytest

from sd_depth_texture.blender import blend_check
from sd_depth_texture.blender.blend_check import check_blend
from sd_depth_texture.core.errors import TextureError


@pytest.fixture(scope="module")
def saved(tmp_path_factory, addon) -> dict[str, Path]:
    """The same small scene saved compressed and uncompressed."""
    folder = tmp_path_factory.mktemp("blends")
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.mesh.primitive_monkey_add()
    paths = {"plain": folder / "plain.blend", "compressed": folder / "compressed.blend"}
    for name, path in paths.items():
        bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True, compress=name == "compressed")
    return paths


@pytest.mark.parametrize("kind", ["plain", "compressed"])
def test_files_blender_saves_pass(kind, saved):
    check_blend(str(saved[kind]))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[: len(data) // 2], "runs past the end|ends before"),
        (lambda data: data[:17] + bytes(4096), "is not a block"),
        (lambda data: data[:-40], "runs past the end|ends before"),
        (lambda data: b"BLENDIR" + data[7:], "does not start with a .blend header"),
    ],
    ids=["half", "zeros after the header", "no ENDB", "not a header"],
)
def test_a_damaged_plain_file_is_one_line(damage, message, saved, tmp_path):
    broken = tmp_path / "broken.blend"
    broken.write_bytes(damage(saved["plain"].read_bytes()))
    with pytest.raises(TextureError, match=f"^Blender cannot open '{broken}': ") as error:
        check_blend(str(broken))
    assert "\n" not in str(error.value)
    assert re.search(message, str(error.value))


def test_a_compressed_file_cut_short_is_one_line(saved, tmp_path):
    pytest.importorskip("zstandard")
    broken = tmp_path / "broken.blend"
    broken.write_bytes(saved["compressed"].read_bytes()[:-200])
    with pytest.raises(TextureError, match=f"^Blender cannot open '{broken}': "):
        check_blend(str(broken))


def test_a_sound_file_damaged_later_is_walked_again(saved, tmp_path):
    """A file found sound is not walked twice while it is unchanged; damaged in place since
    (same size, its modification time put back: only its change time tells), it is refused."""
    copy = tmp_path / "copy.blend"
    data = saved["plain"].read_bytes()
    copy.write_bytes(data)
    check_blend(str(copy))
    check_blend(str(copy))  # remembered: the same file, unchanged
    before = copy.stat()
    time.sleep(0.01)  # a change time of its own, also on coarse clocks
    copy.write_bytes(data[:17] + bytes(len(data) - 17))
    os.utime(copy, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert copy.stat().st_size == before.st_size
    with pytest.raises(TextureError, match="is not a block"):
        check_blend(str(copy))


def _seekable(data: bytes, frame: int = 1 << 16, sizes: list[int] | None = None) -> bytes:
    """``data`` in zstd's seekable format as Blender writes it: independent frames, then the
    seek table in a skippable frame; ``sizes`` replaces the decompressed sizes it lists."""
    zstandard = pytest.importorskip("zstandard")
    frames = [
        zstandard.ZstdCompressor().compress(data[start : start + frame])
        for start in range(0, len(data), frame)
    ]
    sizes = sizes or [min(frame, len(data) - start) for start in range(0, len(data), frame)]
    entries = b"".join(
        struct.pack("<II", len(body), size) for body, size in zip(frames, sizes, strict=True)
    )
    table = entries + struct.pack("<IBI", len(frames), 0, 0x8F92EAB1)
    return b"".join(frames) + struct.pack("<II", 0x184D2A5E, len(table)) + table


def test_blenders_compressed_files_are_walked_frame_by_frame(saved, tmp_path):
    """Blender writes zstd's seekable format: its seek table accounts for every byte, so only
    the frames holding block headers are decompressed; a file of our own in that format passes
    the same walk."""
    pytest.importorskip("zstandard")
    path = saved["compressed"]
    with open(path, "rb") as raw:
        table = blend_check._seek_table(raw, path.stat().st_size)
    assert table and len(table) >= 1
    own = tmp_path / "own.blend"
    own.write_bytes(_seekable(saved["plain"].read_bytes()))
    blend_check._walk_file(str(own))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: _seekable(data[:17] + bytes(4096) + data[4113:]), "is not a block"),
        (lambda data: _seekable(data[: len(data) // 2]), "runs past the end|ends before"),
        (
            lambda data: _seekable(data, sizes=[100] + [1 << 16] * (len(data) // (1 << 16))),
            "not what its seek table says|compressed data is damaged",
        ),
    ],
    ids=["zeros after the header", "half", "a seek table that lies"],
)
def test_a_damaged_seekable_file_is_one_line(damage, message, saved, tmp_path):
    pytest.importorskip("zstandard")
    broken = tmp_path / "broken.blend"
    broken.write_bytes(damage(saved["plain"].read_bytes()))
    with pytest.raises(TextureError, match=f"^Blender cannot open '{broken}': ") as error:
        blend_check._walk_file(str(broken))
    assert re.search(message, str(error.value))
