"""Where a view's picture comes from: the diffusion model, or images the user already has.

No bpy. Both are :data:`~.bake.paint.PictureMaker` functions, the one signature every run
paints with. torch and diffusers are imported only when a model is used, so projecting images
works in a Blender without them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np

from .bake.paint import PictureMaker, ViewRequest
from .diffusion.settings import GenerationSettings
from .errors import TextureError
from .geometry.views import View
from .progress import Progress

log = logging.getLogger(__name__)

# An image whose aspect differs from the view's by more than this would be projected stretched.
ASPECT_TOLERANCE = 0.01


def check_aspect(picture: np.ndarray, view: View, what: str = "The image") -> None:
    """Refuse a picture whose proportions differ from the view's: it would land stretched."""
    view_aspect = view.width / view.height
    aspect = picture.shape[1] / picture.shape[0]
    if abs(aspect / view_aspect - 1.0) > ASPECT_TOLERANCE:
        raise TextureError(
            f"{what}'s aspect ({aspect:.3f}) differs from the view's ({view_aspect:.3f}): "
            "set the render resolution to the image's proportions."
        )


def given_pictures(pictures: Sequence[np.ndarray]) -> PictureMaker:
    """Images the user has, one per view in view order (their aspect was checked up front)."""

    def make(request: ViewRequest) -> np.ndarray:
        return pictures[request.index]

    return make


def diffusion_pictures(
    pipe, settings: GenerationSettings, view_prompts: bool, progress: Progress | None = None
) -> PictureMaker:
    """SD2-depth per view, holding what earlier views painted (``request.keep``).

    Each view gets its own seed (base seed + view number) and, with ``view_prompts`` and an
    automatic view, its direction appended to the prompt ("..., back view").
    """
    from .diffusion.generate import generate
    from .diffusion.kept_regions import keep_regions_hook

    def make(request: ViewRequest) -> np.ndarray:
        prompt = settings.prompt
        if view_prompts and request.prompt_hint:
            prompt = f"{prompt}, {request.prompt_hint}"
        view_settings = dataclasses.replace(
            settings, prompt=prompt, seed=settings.seed + request.index
        )
        hook = None
        if request.keep.any():
            hook = keep_regions_hook(pipe, request.known, request.keep, view_settings.seed)
        return generate(pipe, request.depth, view_settings, progress=progress, on_latents=hook)

    return make
