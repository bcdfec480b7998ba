"""Arrays to Blender images and back, the texture's material, and where images are saved."""

from __future__ import annotations

import logging
import os

import bpy
import numpy as np

from ..core.bake import png

log = logging.getLogger(__name__)

PACKED = "packed in the .blend"  # where a texture of an unsaved file is stored
_NOT_FILE_IMAGES = {"RENDER_RESULT", "COMPOSITING"}  # images that are never read from a file


def array_to_image(
    name: str, pixels: np.ndarray, *, is_data: bool = False, float_buffer: bool = False
) -> bpy.types.Image:
    """Create or update the image ``name`` from an (H, W, C) array in [0, 1], row 0 at the top.

    An existing image of another size is rescaled in place, so materials that use it keep it.
    """
    height, width = pixels.shape[:2]
    rgba = np.ones((height, width, 4), dtype=np.float32)
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    source = pixels.reshape(height, width, channels)
    rgba[..., :3] = source[..., :3] if channels >= 3 else source[..., :1]
    if channels == 4:
        rgba[..., 3] = source[..., 3]
    image = bpy.data.images.get(name)
    reusable = image is not None and image.library is None and bool(image.is_float) == float_buffer
    if not reusable:
        image = bpy.data.images.new(
            name, width, height, alpha=True, float_buffer=float_buffer, is_data=is_data
        )
    # Settings first: changing the colour space reloads the buffer (at its old size).
    image.colorspace_settings.name = "Non-Color" if is_data else "sRGB"
    # Alpha records coverage, not transparency: it must not cut holes in the shaded colour.
    image.alpha_mode = "CHANNEL_PACKED"
    if tuple(image.size) != (width, height):
        image.scale(width, height)
    # Blender stores rows bottom first.
    image.pixels.foreach_set(np.ascontiguousarray(rgba[::-1]).ravel())
    image.update()
    return image


def image_to_array(image: bpy.types.Image) -> np.ndarray:
    """An image's pixels as (H, W, 4) float32, row 0 at the top, as stored (sRGB for 8-bit)."""
    width, height = image.size
    flat = np.empty(width * height * 4, dtype=np.float32)
    image.pixels.foreach_get(flat)
    return flat.reshape(height, width, 4)[::-1].copy()


def save_depth_png(depth: np.ndarray, path: str, scene: bpy.types.Scene | None = None) -> str:
    """Write a [0, 1] depth map as a 16-bit grayscale PNG (exact to 1/65535), straight from the
    array and whole (:func:`..core.bake.png.write_png`): Blender's ``save_render`` on a full disk
    writes an empty file and reports nothing. ``scene`` is not needed any more."""
    levels = np.rint(np.clip(np.asarray(depth, dtype=np.float64), 0.0, 1.0) * 65535)
    return png.write_png(path, levels.astype(np.uint16))


def relative_to_open_file(path: str) -> str:
    """``path`` as a ``//`` path relative to the open .blend (absolute if there is none).

    Saving elsewhere with ``relative_remap`` then carries it to the new folder, exactly as it
    does the file's own relative paths.
    """
    if not bpy.data.filepath:
        return path
    try:
        relative = os.path.relpath(path, os.path.dirname(bpy.data.filepath))
    except ValueError:  # another drive: stays absolute
        return path
    return "//" + relative.replace(os.sep, "/")


def write_png(pixels: np.ndarray, path: str) -> str:
    """Write an (H, W, 3) array in [0, 1] as the 8-bit sRGB PNG Blender would store, straight
    from the array (:mod:`..core.bake.png`): the texture's file is written before its image is
    touched (see :meth:`..flow.Run.finish`), and no Blender image is filled pixel by pixel."""
    return png.write_png(path, pixels)


def texture_image(name: str, texture: np.ndarray, path: str | None) -> tuple[bpy.types.Image, str]:
    """The image ``name`` showing the texture whose PNG is already written at ``path``, or, for
    None (an unsaved file), the texture packed into the .blend. Returns the image and where the
    texture is stored.

    The image reads its file lazily, so nothing is decoded until the texture is shown or read.
    An existing image of that name is reloaded in place, so materials that use it keep it. Its
    path is relative, so the .blend and its textures move together.
    """
    image = _file_image(name, path)
    if path is None:
        data = png.encode_png(texture)
        image.pack(data=data, data_len=len(data))
        image.buffers_free()  # any pixels it held are stale: read the packed PNG on use
        return image, PACKED
    return image, path


def _file_image(name: str, path: str | None) -> bpy.types.Image:
    """The image ``name`` made to read the PNG at ``path`` (by a relative path) or, for None,
    the packed data about to be given; nothing is loaded yet."""
    image = bpy.data.images.get(name)
    if image is None or image.library is not None or image.type in _NOT_FILE_IMAGES:
        if path is None:
            image = bpy.data.images.new(name, 1, 1)
        else:
            image = bpy.data.images.load(path, check_existing=False)
            image.name = name
    if image.packed_file is not None:
        image.unpack(method="REMOVE")  # drops the packed copy; the new PNG replaces it
    image.source = "FILE"
    image.filepath_raw = relative_to_open_file(path) if path is not None else ""
    image.file_format = "PNG"
    image.colorspace_settings.name = "sRGB"
    image.alpha_mode = "CHANNEL_PACKED"
    if path is not None:
        image.reload()
    return image
