"""Padding UV islands outward so mip-mapping and filtering never pull in unpainted texels.

No bpy.
"""

from __future__ import annotations

import numpy as np


def dilate_margin(texture: np.ndarray, filled: np.ndarray, margin: int) -> np.ndarray:
    """Pad UV islands outward by ``margin`` texels with their edge colours (Blender's bake margin).

    Each ring takes the mean of its already-filled 8-neighbours. The ring is found with a
    separable 3x3 dilation (four shifted ORs), and only its texels are gathered and written.
    """
    if margin <= 0:
        return texture
    channels = texture.shape[2]
    done = np.pad(filled, 1)  # a border that never fills keeps neighbours in range
    padded = np.pad(np.asarray(texture, dtype=np.float32), ((1, 1), (1, 1), (0, 0)))
    stride = done.shape[1]
    flat_done, flat_colour = done.reshape(-1), padded.reshape(-1, channels)
    offsets = [dy * stride + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    for _ in range(margin):
        vertical = done.copy()
        vertical[1:] |= done[:-1]
        vertical[:-1] |= done[1:]
        grown = vertical.copy()
        grown[:, 1:] |= vertical[:, :-1]
        grown[:, :-1] |= vertical[:, 1:]
        grown[[0, -1], :] = False
        grown[:, [0, -1]] = False
        ring = np.flatnonzero(grown & ~done)
        if ring.size == 0:
            break
        total = np.zeros((ring.size, channels), dtype=np.float32)
        count = np.zeros((ring.size, 1), dtype=np.float32)
        for offset in offsets:
            neighbour = ring + offset
            known = flat_done[neighbour][:, None]
            total += np.take(flat_colour, neighbour, axis=0) * known
            count += known
        flat_colour[ring] = total / count
        flat_done[ring] = True
    return padded[1:-1, 1:-1]
