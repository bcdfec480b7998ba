"""Where a view's picture comes from: the diffusion model, or images the user already has.

No bpy. Both are :data:`~.bake.paint.PictureMaker` functions, the one signature every run
paints with, and both add what they made to the run record (:class:`~.record.RunRecord`): the
prompt and seed each view was really sent, or the image that was projected. torch and
diffusers are imported only when a model is used, so projecting images works in a Blender
without them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence

import numpy as np

from .bake.paint import PictureMaker, ViewRequest
from .diffusion.settings import GenerationSettings
from .errors import TextureError
from .geometry.views import View
from .progress import Progress
from .record import GENERATED, PROJECTED, RunRecord, ViewRecord, camera_record, sha256_of_file

log = logging.getLogger(__name__)

# What a generated view's record keeps of the settings it was sent.
_RECORDED = ("prompt", "negative_prompt", "seed", "steps", "guidance", "scheduler")
# ... and, where a ControlNet carried the depth, how strongly and over which steps.
_CONTROL_RECORDED = ("conditioning_scale", "control_start", "control_end")
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


def _view_record(request: ViewRequest, origin: str, **fields) -> ViewRecord:
    view = request.view
    return ViewRecord(
        label=request.label,
        origin=origin,
        targets=list(request.targets),
        width=view.width,
        height=view.height,
        camera=camera_record(view.world_to_view, view.projection),
        **fields,
    )


def given_pictures(
    pictures: Sequence[np.ndarray], record: RunRecord | None = None, sources: Sequence[str] = ()
) -> PictureMaker:
    """Images the user has, one per view in view order (their aspect was checked up front);
    ``sources``: the files they were read from, recorded by name and sha256."""
    hashes: dict[int, dict] = {}

    def make(request: ViewRequest) -> np.ndarray:
        if request.index not in hashes and request.index < len(sources):
            path = sources[request.index]
            hashes[request.index] = {
                "name": os.path.basename(path),
                "sha256": sha256_of_file(path),
            }
        if record is not None:
            image = hashes.get(request.index)
            record.views.append(_view_record(request, PROJECTED, image=image))
        return pictures[request.index]

    return make


def view_settings(
    settings: GenerationSettings, request: ViewRequest, view_prompts: bool
) -> GenerationSettings:
    """What one view is really sent: its own seed (base seed + view number) and, with
    ``view_prompts`` and an automatic view, its direction appended to the prompt."""
    prompt = settings.prompt
    if view_prompts and request.prompt_hint:
        prompt = f"{prompt}, {request.prompt_hint}"
    return dataclasses.replace(settings, prompt=prompt, seed=settings.seed + request.index)


def diffusion_pictures(
    pipe,
    settings: GenerationSettings,
    view_prompts: bool,
    record: RunRecord,
    progress: Progress | None = None,
) -> PictureMaker:
    """The loaded model (any backend) per view, holding what earlier views painted
    (``request.keep``)."""
    from .diffusion.backends import backend_of
    from .diffusion.generate import generate

    backend = backend_of(pipe)
    controlled = backend.controlnet_kind is not None
    recorded = _RECORDED + (_CONTROL_RECORDED if controlled else ())

    def make(request: ViewRequest) -> np.ndarray:
        sent = view_settings(settings, request, view_prompts)
        kept = (request.known, request.keep) if request.keep.any() else None
        picture = generate(pipe, request.depth, sent, progress=progress, kept=kept)
        fields = {name: getattr(sent, name) for name in recorded}
        # What really ran: a family's own scheduler, and no negative prompt where it takes none.
        fields["scheduler"] = backend.own_scheduler or sent.scheduler
        if not backend.takes_negative_prompt:
            fields["negative_prompt"] = None
        record.views.append(_view_record(request, GENERATED, **fields))
        return picture

    return make
