"""Will a run fit in memory? Checked before anything is read, so a huge texture or view is
refused with the size it would need instead of being killed by the system minutes later.

No bpy. The costs per texel and per view pixel are measured peaks of whole runs (UV layout,
texel record, texture arrays, margin, images; Z-buffer, depth planes, pictures), with room
to spare.
"""

from __future__ import annotations

import logging
import os
import sys

from .errors import TextureError

log = logging.getLogger(__name__)

# Measured: 107-147 bytes per texel (1024^2 to 4096^2 textures), ~170 per view pixel.
BYTES_PER_TEXEL = 160
BYTES_PER_VIEW_PIXEL = 220
_GB = 1024**3


def available_memory() -> int | None:
    """Bytes the system can give this process now, or None where that cannot be read."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/meminfo", encoding="ascii") as meminfo:
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError):
            return None
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_fits(texture_size: int, view_pixels: int, available: int | None = None) -> None:
    """Refuse a run whose texture and largest view would not fit in the memory available."""
    available = available_memory() if available is None else available
    if available is None:
        return
    texture = texture_size * texture_size * BYTES_PER_TEXEL
    view = view_pixels * BYTES_PER_VIEW_PIXEL
    if texture + view <= available:
        return
    if texture >= view:
        raise TextureError(
            f"A {texture_size}x{texture_size} texture needs about {texture / _GB:.1f} GB of "
            f"memory and {available / _GB:.1f} GB is free: choose a smaller texture size."
        )
    raise TextureError(
        f"A view of {view_pixels / 1e6:.0f} million pixels needs about {view / _GB:.1f} GB of "
        f"memory and {available / _GB:.1f} GB is free: lower the resolution, or make the "
        "render resolution less elongated."
    )
