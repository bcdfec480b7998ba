"""Image files as pictures to project: read through Blender, so every format it reads works."""

from __future__ import annotations

import logging
import os

import bpy
import numpy as np

from ..core.bake.color import linear_to_srgb
from ..core.disk import refuse_not_a_file
from ..core.errors import TextureError
from . import images

log = logging.getLogger(__name__)


def load_picture(path: str) -> np.ndarray:
    """Read an image file as (H, W, 3) sRGB float32, leaving no image behind in the .blend."""
    refuse_not_a_file(path, "the image")  # a FIFO or a device is named as what it is
    if not os.path.isfile(path):
        raise TextureError(f"There is no image file at '{path}'.")
    try:
        image = bpy.data.images.load(path, check_existing=False)
    except RuntimeError as error:
        raise TextureError(
            f"'{os.path.basename(path)}' is not an image Blender can read."
        ) from error
    try:
        if image.size[0] == 0 or image.size[1] == 0 or not image.has_data:
            raise TextureError(f"'{os.path.basename(path)}' is not an image Blender can read.")
        pixels = images.image_to_array(image)[..., :3]
        if image.is_float and image.colorspace_settings.name not in ("sRGB", "Non-Color"):
            pixels = linear_to_srgb(pixels)
    finally:
        bpy.data.images.remove(image)
    return np.clip(pixels, 0.0, 1.0)
