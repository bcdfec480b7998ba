"""Arrays to Blender images and back, the texture's material, and where images are saved."""

from __future__ import annotations

import logging
import os

import bpy
import numpy as np

log = logging.getLogger(__name__)

TEXTURE_FOLDER = "textures"


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


def save_depth_png(depth: np.ndarray, path: str, scene: bpy.types.Scene) -> str:
    """Write a [0, 1] depth map as a 16-bit grayscale PNG (exact to 1/65535)."""
    image = array_to_image("SD Depth (export)", depth, is_data=True, float_buffer=True)
    settings = scene.render.image_settings
    saved = (settings.file_format, settings.color_depth, settings.color_mode)
    try:
        settings.file_format = "PNG"
        settings.color_depth = "16"
        settings.color_mode = "BW"
        image.save_render(path, scene=scene)
    finally:
        settings.file_format, settings.color_depth, settings.color_mode = saved
        bpy.data.images.remove(image)
    return path


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


def unused_path(path: str) -> str:
    """``path`` if no file is there, else the first free ``<stem>_2<ext>``, ``<stem>_3<ext>``...

    For runs that keep every earlier texture file: Blender's undo restores an image datablock
    with the path it had, and reads its pixels from that file again, so the file must still
    hold that run's pixels.
    """
    stem, extension = os.path.splitext(path)
    number = 1
    while os.path.exists(path):
        number += 1
        path = f"{stem}_{number}{extension}"
    return path


def store_texture(
    image: bpy.types.Image, blend_path: str | None = None, keep_previous: bool = False
) -> str:
    """Save the texture as PNG beside the .blend (``//textures/``), or pack it if there is none.

    ``blend_path`` is the .blend about to be written (command line); default the open one. The
    image's path is relative, so the .blend and its textures move together. ``keep_previous``:
    never overwrite a file, write the next free name (:func:`unused_path`).
    """
    image.file_format = "PNG"
    blend_path = blend_path or bpy.data.filepath
    if not blend_path:
        image.pack()
        return "packed in the .blend"
    filename = bpy.path.clean_name(image.name) + ".png"
    path = os.path.join(os.path.dirname(os.path.abspath(blend_path)), TEXTURE_FOLDER, filename)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if keep_previous:
        path = unused_path(path)
    image.filepath_raw = path
    image.save()
    if image.packed_file is not None:
        image.unpack(method="REMOVE")
    image.filepath_raw = relative_to_open_file(path)
    return path
