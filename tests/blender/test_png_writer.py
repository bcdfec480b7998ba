"""Textures written as PNG from the array read back in Blender exactly as Blender's own path."""

from __future__ import annotations

import bpy
import numpy as np
import pytest

from sd_depth_texture.blender import images
from sd_depth_texture.core.bake import png
from sd_depth_texture.core.bake.color import to_8bit
from sd_depth_texture.core.disk import write_bytes_whole
from sd_depth_texture.core.record import RunRecord


def stored_bytes(image: bpy.types.Image) -> np.ndarray:
    """An 8-bit image's stored values as integers, (H, W, 4), row 0 at the top."""
    return np.rint(images.image_to_array(image) * 255).astype(np.int64)


def blender_png(tmp_path, texture: np.ndarray) -> np.ndarray:
    """What the texture was before: Blender's 8-bit image of the floats, saved as PNG, reread."""
    image = images.array_to_image("old path", texture)
    image.filepath_raw, image.file_format = str(tmp_path / "old.png"), "PNG"
    image.save()
    bpy.data.images.remove(image)
    return stored_bytes(bpy.data.images.load(str(tmp_path / "old.png"), check_existing=False))


@pytest.fixture
def texture() -> np.ndarray:
    """Values on and around every rounding boundary of 8 bits, and a margin out of range."""
    rng = np.random.default_rng(7)
    edges = np.repeat((np.arange(256, dtype=np.float32) + 0.5) / 255, 40)
    values = np.concatenate([edges + rng.normal(0, 2e-7, edges.size).astype(np.float32),
                             rng.uniform(-0.01, 1.01, 200 * 300 * 3 - edges.size)])  # fmt: skip
    return values.astype(np.float32).reshape(200, 300, 3)


def test_a_written_png_reads_back_as_blenders_own(addon, tmp_path, monkeypatch, texture):
    monkeypatch.setattr(png, "_BYTES_PER_BLOCK", 10_000)  # many blocks on several threads
    path = tmp_path / "new.png"
    write_bytes_whole(str(path), png.encode_png(texture))
    read = stored_bytes(bpy.data.images.load(str(path), check_existing=False))
    np.testing.assert_array_equal(read, blender_png(tmp_path, texture))
    np.testing.assert_array_equal(read[..., :3], to_8bit(texture))
    assert (read[..., 3] == 255).all()


def write_texture(name: str, texture: np.ndarray, path: str | None = None):
    """The flow's write path: the PNG from the array first, then the image that reads it."""
    data = images.texture_png(texture, RunRecord.begin("test", {}))
    if path is not None:
        write_bytes_whole(path, data)
    return images.texture_image(name, data, path)


def test_write_texture_reloads_the_image_in_place(addon, tmp_path, texture):
    bpy.ops.wm.read_homefile(use_empty=True)
    path = str(tmp_path / "T_SD_Texture.png")
    first, stored = write_texture("T SD Texture", texture, path)
    assert stored == path
    assert not first.has_data  # nothing decoded until it is used
    np.testing.assert_array_equal(stored_bytes(first)[..., :3], to_8bit(texture))

    again, _ = write_texture("T SD Texture", texture[::-1], path)
    assert again == first and len(bpy.data.images) == 1
    np.testing.assert_array_equal(stored_bytes(again)[..., :3], to_8bit(texture[::-1]))


def test_without_a_blend_path_the_texture_is_packed(addon, tmp_path, texture):
    bpy.ops.wm.read_homefile(use_empty=True)
    old = images.array_to_image("T SD Texture", np.zeros((4, 4, 3), np.float32))
    image, stored = write_texture("T SD Texture", texture)
    assert image == old and stored == "packed in the .blend"
    assert image.packed_file is not None
    np.testing.assert_array_equal(stored_bytes(image), blender_png(tmp_path, texture))
    again, _ = write_texture("T SD Texture", texture[::-1])  # packed over packed
    assert again == image
    np.testing.assert_array_equal(stored_bytes(image)[..., :3], to_8bit(texture[::-1]))
    image, _ = write_texture("T SD Texture", texture)

    image.use_fake_user = True
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "packed.blend"))
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "packed.blend"))
    reopened = bpy.data.images["T SD Texture"]
    assert reopened.packed_file is not None
    np.testing.assert_array_equal(stored_bytes(reopened)[..., :3], to_8bit(texture))
    assert not (tmp_path / "textures").exists()


def test_one_writer_gives_files_and_packed_images_the_same_png_with_its_run_record(
    addon, tmp_path, texture
):
    import json

    from PIL import Image

    from sd_depth_texture.core.record import RECORD_SCHEMA

    bpy.ops.wm.read_homefile(use_empty=True)
    data = images.texture_png(texture, RunRecord.begin("9.9.9", {"texture_size": 300}))
    path = tmp_path / "T_SD_Texture.png"
    write_bytes_whole(str(path), data)
    with Image.open(path) as written:
        record = json.loads(written.text[images.RECORD_KEY])
        np.testing.assert_array_equal(np.asarray(written.convert("RGB")), to_8bit(texture))
    assert record["schema"] == RECORD_SCHEMA and record["version"] == "9.9.9"
    assert record["settings"] == {"texture_size": 300} and record["origin"] is None
    image, _ = images.texture_image("P SD Texture", data, None)
    assert bytes(image.packed_file.data) == data  # the very same bytes, packed
