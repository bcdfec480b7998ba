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
