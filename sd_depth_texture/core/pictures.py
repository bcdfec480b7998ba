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
_RECORDED = ("prompt", "negative_prompt", "seed", "steps", "guidance", "scheduler", "upscale")
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
    upscaler=None,
) -> PictureMaker:
    """The loaded model (any backend) per view, holding what earlier views painted
    (``request.keep``); with an ``upscaler`` (settings' ``upscale`` 2 or 4), each picture is then
    upscaled, tiled, with the view's own prompt and seed, before it is projected."""
    from .diffusion.backends import backend_of
    from .diffusion.generate import generate
    from .diffusion.upscale import upscale_picture

    progress = progress or Progress()
    backend = backend_of(pipe)
    controlled = backend.controlnet_kind is not None
    recorded = _RECORDED + (_CONTROL_RECORDED if controlled else ())
    upscaling = upscaler is not None and settings.upscale > 1

    def make(request: ViewRequest) -> np.ndarray:
        sent = backend.settle(view_settings(settings, request, view_prompts))
        kept = (request.known, request.keep) if request.keep.any() else None
        with progress.span(0.0, 0.5 if upscaling else 1.0):
            picture = generate(pipe, request.depth, sent, progress=progress, kept=kept)
        if upscaling:
            with progress.span(0.5, 1.0, f"Upscaling x{sent.upscale}"):
                picture = upscale_picture(upscaler, picture, sent.upscale, sent, progress=progress)
        fields = {name: getattr(sent, name) for name in recorded}
        # What really ran: a family's own scheduler, and no negative prompt where it takes none.
        fields["scheduler"] = backend.own_scheduler or sent.scheduler
        if not backend.takes_negative_prompt:
            fields["negative_prompt"] = None
        record.views.append(_view_record(request, GENERATED, **fields))
        return picture

    return make


def with_maps(
    make: PictureMaker,
    pipe,
    wanted: tuple[str, ...],
    estimated: dict[int, dict[str, np.ndarray]],
    seed: int = 0,
    progress: Progress | None = None,
) -> PictureMaker:
    """``make``, and the maps of each picture it makes, estimated by the maps model ``pipe``
    (Marigold intrinsics) and kept in ``estimated`` by view number for :func:`.bake.maps.
    paint_maps`. Works with any picture maker: it needs only the picture."""
    from .diffusion.maps import estimate_maps

    progress = progress or Progress()

    def make_with_maps(request: ViewRequest) -> np.ndarray:
        picture = make(request)
        progress.check("before estimating the maps")
        estimated[request.index] = estimate_maps(pipe, picture, wanted, seed + request.index)
        progress.check("after estimating the maps")
        return picture

    return make_with_maps


def load_maps_model(request, record: RunRecord, progress: Progress, share: float):
    """The maps model when ``request`` (a :class:`~..request.TextureRequest`) asks for maps,
    else None; recorded in ``record``. Loaded only then, so only then are torch and diffusers
    needed; its load takes ``share`` of the progress bar."""
    wanted = request.output.estimated_maps
    if not wanted:
        return None
    from .diffusion.dependencies import missing_packages

    missing = missing_packages()
    if missing:
        raise TextureError(
            f"Estimating maps needs {', '.join(missing)}, not installed in this Blender's "
            "Python: see docs/install.md."
        )
    from .diffusion.auxiliary import MAPS, load_auxiliary
    from .diffusion.maps import check_maps_model

    spec = request.maps_model
    with progress.span(0.0, share, "Maps model"):
        loaded = load_auxiliary(MAPS, spec, progress)
    check_maps_model(loaded.pipe, wanted, spec.source)
    record.maps = list(wanted)
    record.maps_model = loaded.record
    return loaded.pipe


def load_upscaler(request, record: RunRecord, progress: Progress, share: float):
    """The upscaler of ``request``'s upscale factor, or None when it does not upscale; recorded
    in ``record``. Its load takes ``share`` of the progress bar."""
    if request.upscale_model is None:
        return None
    from .diffusion.auxiliary import UPSCALERS, load_auxiliary

    with progress.span(0.0, share, "Upscaler"):
        loaded = load_auxiliary(
            UPSCALERS[request.generation.upscale], request.upscale_model, progress
        )
    record.upscaler = loaded.record
    return loaded.pipe
