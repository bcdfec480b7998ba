"""Colour conventions of the textures: sRGB throughout, and the grey of texels nothing painted.

No bpy.
"""

from __future__ import annotations

import numpy as np

# What a texel no view painted (and no fill reached) shows: a neutral mid grey.
UNFILLED_GREY = 0.5


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """The sRGB transfer function, so float images are blended in the same space as 8-bit ones."""
    linear = np.clip(linear, 0.0, None)
    return np.where(
        linear <= 0.0031308, linear * 12.92, 1.055 * np.power(linear, 1 / 2.4) - 0.055
    ).astype(np.float32)


def to_8bit(values: np.ndarray) -> np.ndarray:
    """[0, 1] colours as uint8 exactly as Blender stores floats in an 8-bit image.

    Blender rounds half up in float32 and clamps (``unit_float_to_uchar_clamp``, NaN to 0);
    doing the same here means a PNG written from the result holds the bytes Blender itself would
    have written. Values already in [0, 1] (the usual case) skip the clamp, which costs more
    than the rest.
    """
    values = np.asarray(values, dtype=np.float32)
    scaled = np.multiply(values, np.float32(255))
    scaled += np.float32(0.5)
    if values.size and not (values.min() >= 0 and values.max() <= 1):
        np.nan_to_num(scaled, copy=False, nan=0.0)
        np.clip(scaled, 0, 255, out=scaled)
    return scaled.astype(np.uint8)
