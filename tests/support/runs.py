"""Runs of the one flow as tests need them: project given pictures, from given views."""

from __future__ import annotations

import numpy as np

from sd_depth_texture.blender import flow
from sd_depth_texture.core.geometry.orbit import NamedView
from sd_depth_texture.request import OutputOptions, TextureRequest, ViewSource


def project(
    names: list[str] | None,
    pictures: list[np.ndarray],
    *,
    views: list[NamedView] = (),
    orbit: int = 0,
    cameras: tuple[str, ...] = (),
    resolution: int = 512,
    texture_size: int = 256,
    margin: int = 16,
) -> flow.Outcome:
    """Project ``pictures`` through the flow: from given ``views``, an ``orbit`` or ``cameras``."""
    request = TextureRequest(
        views=ViewSource(resolution=resolution, given=tuple(views), orbit=orbit, cameras=cameras),
        targets=tuple(names) if names is not None else None,
        pictures=tuple(pictures),
        output=OutputOptions(texture_size=texture_size, margin=margin),
    )
    return flow.prepare(request).run()
