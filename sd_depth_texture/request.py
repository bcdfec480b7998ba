"""One texturing request: everything a run needs, built by every door with one builder (no bpy).

The operators, the panel, the command line and the batch each turn their settings into a
mapping of setting names to values (the names of :data:`.defaults.LIMITS` and
:data:`.defaults.NAMES`, shared by argparse and ``bpy.props``) and call :func:`build_request`,
which checks every value with the one validation (:mod:`.core.validation`) and builds a
:class:`TextureRequest` for the one flow (:func:`..blender.flow.prepare`). A single view is a
one-view request, not another pipeline; a batch builds one template request and each asset
only replaces its prompt, seed and targets (:meth:`TextureRequest.for_asset`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import defaults
from .core.diffusion.settings import GenerationSettings, ModelSpec, lora_specs, validate_settings
from .core.errors import SettingError, TextureError
from .core.geometry.orbit import NamedView
from .core.geometry.views import View
from .core.validation import check_settings

log = logging.getLogger(__name__)

SCENE_CAMERA = ""  # in ``ViewSource.cameras``: the scene's active camera


@dataclass(frozen=True)
class ViewSource:
    """Where a run looks from: exactly one of a given view, cameras, a collection or an orbit."""

    resolution: int = int(defaults.RESOLUTION.default)  # the generated picture's short side
    # Views given as matrices: the 3D viewport's (the panel), or any a script computes.
    given: tuple[NamedView, ...] = ()
    cameras: tuple[str, ...] = ()  # camera object names; SCENE_CAMERA is the scene's camera
    collection: str = ""  # every camera in this collection, in name order
    orbit: int = 0  # this many automatic views around each target

    @classmethod
    def choose(
        cls,
        views: int,
        *,
        resolution: int,
        collection: str = "",
        camera: str = SCENE_CAMERA,
        view: View | None = None,
    ) -> ViewSource:
        """The source the panel's and the command line's settings mean: a camera collection,
        else an orbit of ``views`` > 1, else ``view`` (the viewport's, when given) or the camera."""
        if collection:
            return cls(resolution=resolution, collection=collection)
        if views > 1:
            return cls(resolution=resolution, orbit=views)
        if view is not None:
            return cls(resolution=resolution, given=(NamedView("viewport", view),))
        return cls(resolution=resolution, cameras=(camera,))

    @property
    def count(self) -> int | None:
        """How many views each target gets, where that is known before reading the scene."""
        if self.given:
            return len(self.given)
        if self.cameras:
            return len(self.cameras)
        return self.orbit or None

    @property
    def several(self) -> bool:
        """Several views texture the whole object: unseen texels are filled."""
        return self.count != 1

    @property
    def kind(self) -> str:
        if self.given:
            return "given"
        if self.cameras:
            return "cameras"
        return "collection" if self.collection else "orbit"


@dataclass(frozen=True)
class OutputOptions:
    """How and where a run writes."""

    texture_size: int = int(defaults.TEXTURE_SIZE.default)
    margin: int = int(defaults.MARGIN.default)
    blend_path: str | None = None  # the .blend the run's output is saved as; None: the open file
    # Where texture files go; None: ``textures/<blend name>/`` beside the .blend.
    texture_folder: str | None = None
    report_path: str | None = None  # a JSON report of the run
    uv_map: str | None = None  # the UV map to texture; None: each target's active one
    in_place: bool = False  # blend_path may be the file being read (it is backed up first)
    # Never overwrite a texture file: each run writes the next free name and the earlier files
    # stay, so an undo step (the operators') still finds the pixels it shows.
    keep_previous_files: bool = False
    # How much of the run record each texture carries (defaults.PROVENANCE); never less than
    # the AI marking, the model and the licence.
    provenance: str = defaults.PROVENANCE[0]
    # A studio's certificate chain and key (PEM files) to sign C2PA manifests with; None: this
    # installation's own, made on first use.
    c2pa_cert: str | None = None
    c2pa_key: str | None = None
    # The texture maps to write (defaults.MAPS): the lit colour always, and any of albedo,
    # roughness and metallic, estimated by the maps model from each view's picture.
    maps: tuple[str, ...] = defaults.DEFAULT_MAPS

    @property
    def estimated_maps(self) -> tuple[str, ...]:
        """The maps the maps model estimates (all but the lit colour)."""
        return tuple(name for name in self.maps if name != "color")


@dataclass(frozen=True)
class TextureRequest:
    """A whole run. ``generation`` (with ``model``) makes pictures; ``pictures`` projects images
    the user has instead, one per view (``picture_sources``: the files they were read from)."""

    views: ViewSource
    targets: tuple[str, ...] | None = None  # object names; None: every mesh the views see
    generation: GenerationSettings | None = None
    model: ModelSpec | None = None
    view_prompts: bool = True  # append "front view", "back view" to automatic views' prompts
    # Fit each view's colours to what the views before it painted; None: generated runs do,
    # runs that project given images do not (see :attr:`colours_matched`).
    match_colors: bool | None = None
    pictures: tuple[np.ndarray, ...] = field(default=(), repr=False, compare=False)
    picture_sources: tuple[str, ...] = ()
    output: OutputOptions = OutputOptions()
    # The maps model (Marigold intrinsics), set when the output asks for estimated maps; its
    # device, precision and cache are the generating model's (or the defaults for a projection).
    maps_model: ModelSpec | None = None
    # The upscaler, set when the generation settings upscale (2 or 4): on the model's device.
    upscale_model: ModelSpec | None = None

    @property
    def colours_matched(self) -> bool:
        """Whether each view's colours are fitted to the views before it (core.bake.color_match)."""
        return self.generation is not None if self.match_colors is None else self.match_colors

    def check(self, *, prompt_required: bool = True) -> TextureRequest:
        """Refuse any bad number or choice with a structured error the door words. Reads and
        writes nothing; returns the request. ``prompt_required=False``: a batch's template,
        whose prompt each asset fills in."""
        views = self.views
        kinds = [bool(views.given), bool(views.cameras), bool(views.collection)]
        kinds.append(bool(views.orbit))
        if sum(kinds) != 1:
            raise TextureError("A run needs exactly one view source.")
        numbers = {
            "resolution": views.resolution,
            "texture_size": self.output.texture_size,
            "margin": self.output.margin,
        }
        if views.orbit:
            numbers["views"] = views.orbit
        check_settings({**numbers, "provenance": self.output.provenance})
        if (self.generation is None) == (not self.pictures):
            raise TextureError("A run either generates pictures or projects given ones.")
        if self.generation is not None:
            validate_settings(
                self.generation, has_init_image=False, prompt_required=prompt_required
            )
            if self.model is None:
                raise TextureError("A generating run needs a model.")
            self.model.check()
        if self.pictures and views.count != len(self.pictures):
            wanted = views.count or "one"
            raise TextureError(
                f"{len(self.pictures)} images need {len(self.pictures)} cameras, "
                f"not {wanted}: give one camera per image."
            )
        for picture in self.pictures:
            if picture.ndim != 3 or picture.shape[2] < 3 or min(picture.shape[:2]) < 1:
                raise TextureError(f"An image to project has the shape {picture.shape}.")
        if self.targets is not None:
            check_targets(self.targets)
        check_settings({"maps": self.output.maps})
        if self.output.estimated_maps and self.maps_model is None:
            raise TextureError("Estimated maps need a maps model.")
        if self.maps_model is not None:
            self.maps_model.check()
        upscale = self.generation.upscale if self.generation is not None else 1
        if (upscale > 1) != (self.upscale_model is not None):
            raise TextureError("An upscaling run needs an upscaler, and only it.")
        return self

    def for_asset(
        self,
        prompt: str,
        negative_prompt: str,
        seed: int,
        targets: tuple[str, ...],
        texture_folder: str | None = None,
    ) -> TextureRequest:
        """This template with one asset's prompt, seed, targets and texture folder, checked."""
        if self.generation is None:
            raise TextureError("Only a request that generates is a template for assets.")
        generation = dataclasses.replace(
            self.generation, prompt=prompt, negative_prompt=negative_prompt, seed=seed
        )
        output = dataclasses.replace(self.output, texture_folder=texture_folder)
        return dataclasses.replace(
            self, generation=generation, targets=targets, output=output
        ).check()

    def settings_record(self) -> dict:
        """What the report records about the request (pictures and matrices left out)."""
        views = self.views
        record: dict = {
            "views": {
                "resolution": views.resolution,
                "kind": views.kind,
                "cameras": list(views.cameras) or [named.label for named in views.given],
                "collection": views.collection,
                "orbit": views.orbit,
            },
            "targets": list(self.targets) if self.targets is not None else None,
            "texture_size": self.output.texture_size,
            "margin": self.output.margin,
            "uv_map": self.output.uv_map,
            "view_prompts": self.view_prompts,
            "match_colors": self.colours_matched,
            "projected_images": len(self.pictures),
            "provenance": self.output.provenance,
            "maps": list(self.output.maps),
        }
        if self.generation is not None:
            record["generation"] = dataclasses.asdict(self.generation)
        if self.maps_model is not None:
            record["maps_model"] = self.maps_model.pixel_record()
        if self.upscale_model is not None:
            record["upscale_model"] = self.upscale_model.pixel_record()
        if self.model is not None:
            record["model"] = {
                "source": self.model.source,
                "config": self.model.config,
                "controlnet": self.model.controlnet,
                "depth_lora": self.model.depth_lora,
                "device": self.model.device,
                "precision": self.model.precision,
                "offload": self.model.offload,
                "vae_tiling": self.model.vae_tiling,
                "loras": [dataclasses.asdict(lora) for lora in self.model.loras],
            }
        return record

    def pixel_record(self) -> dict:
        """Everything of the settings record that decides pixels apart from the prompt, seed
        and targets: a batch's identity for resuming (equal records, equal results)."""
        record = self.settings_record()
        del record["targets"], record["provenance"]
        if "generation" in record:
            for per_asset in ("prompt", "negative_prompt", "seed"):
                del record["generation"][per_asset]
        if self.model is not None:
            record["model"] = self.model.pixel_record()
        return record


def check_targets(targets: Sequence[str]) -> None:
    if not targets:
        raise TextureError("Nothing to texture: name at least one object.")
    seen: set[str] = set()
    for name in targets:
        if name in seen:
            raise SettingError(
                "objects", name, "each object once",
                f"'{name}' is named twice ({{name}}): name each object once.",
            )  # fmt: skip
        seen.add(name)


# Fields of the request's parts that a setting of the same name fills.
_GENERATION_FIELDS = {f.name for f in dataclasses.fields(GenerationSettings)}
_OUTPUT_FIELDS = {f.name for f in dataclasses.fields(OutputOptions)}


def build_request(
    settings: Mapping[str, Any],
    *,
    targets: Sequence[str] | None = None,
    model: ModelSpec | None = None,
    pictures: Sequence[np.ndarray] = (),
    picture_sources: Sequence[str] = (),
    viewport: View | None = None,
    frame_each_target: bool = False,
    prompt_required: bool = True,
) -> TextureRequest:
    """The one builder: a request from a mapping of setting names to values.

    Every door calls it. Names not known as settings are ignored, so a door may pass all it
    has (argparse's namespace, an operator's properties); a setting left out (or None) takes
    its default. Every value is checked with the one validation first, so each door refuses the
    same values with the same rule. A number setting reaches the field of the same name in
    :class:`GenerationSettings` or :class:`OutputOptions` (or the view source), so a new
    :class:`.defaults.Limit` needs no code here.

    ``model`` set: a generating request, with ``settings["loras"]`` (``FILE[:SCALE]`` texts
    or ``(path, scale)`` pairs) applied on top of it; ``pictures``: a projecting one, seen from
    ``settings["cameras"]`` (one camera name per picture). ``viewport``: the view a panel run
    sees. ``frame_each_target``: with no camera, collection or orbit asked for, one view framed
    on each target (the batch's default) instead of the scene camera.
    """
    values = check_settings({key: value for key, value in settings.items() if value is not None})

    def number(limit: defaults.Limit) -> Any:
        if limit.model_default:  # unset: the model family's recommended value, at load time
            return values.get(limit.key)
        kind = int if limit.integer else float
        return values.get(limit.key, kind(limit.default))

    resolution = number(defaults.RESOLUTION)
    views = number(defaults.VIEWS)
    collection = values.get("camera_collection") or ""
    camera = values.get("camera") or SCENE_CAMERA
    if pictures:
        cameras = tuple(values.get("cameras") or (camera,))
        view_source = ViewSource(resolution=resolution, cameras=cameras)
    elif frame_each_target and not (values.get("camera") or collection or views > 1):
        view_source = ViewSource(resolution=resolution, orbit=1)
    else:
        view_source = ViewSource.choose(
            views, resolution=resolution, collection=collection, camera=camera, view=viewport
        )
    limits = defaults.LIMITS.values()
    output = OutputOptions(
        **{limit.key: number(limit) for limit in limits if limit.key in _OUTPUT_FIELDS},
        blend_path=values.get("output"),
        texture_folder=values.get("texture_folder"),
        report_path=values.get("report") or None,
        uv_map=values.get("uv_map") or None,
        in_place=bool(values.get("in_place")),
        keep_previous_files=bool(values.get("keep_previous_files")),
        provenance=values.get("provenance") or defaults.PROVENANCE[0],
        c2pa_cert=values.get("c2pa_cert") or None,
        c2pa_key=values.get("c2pa_key") or None,
        maps=values.get("maps") or defaults.DEFAULT_MAPS,
    )
    maps_model = None
    if output.estimated_maps:
        maps_model = maps_model_spec(values.get("maps_model"), model, values)
    generation = None
    if model is not None:
        if values.get("loras") is not None:
            model = dataclasses.replace(model, loras=lora_specs(values["loras"]))
        generation = GenerationSettings(
            prompt=values.get("prompt", ""),
            negative_prompt=values.get("negative_prompt", ""),
            scheduler=values.get("scheduler", defaults.SCHEDULER),
            **{limit.key: number(limit) for limit in limits if limit.key in _GENERATION_FIELDS},
        )
    upscale_model = None
    if generation is not None and generation.upscale > 1:
        source = (values.get("upscale_model") or "").strip()
        source = source or defaults.UPSCALE_MODELS[generation.upscale][0]
        upscale_model = auxiliary_spec(model, source)
    request = TextureRequest(
        views=view_source,
        targets=tuple(targets) if targets is not None else None,
        generation=generation,
        model=model,
        view_prompts=bool(values.get("view_prompts", True)),
        match_colors=None if values.get("match_colors") is None else bool(values["match_colors"]),
        pictures=tuple(pictures),
        picture_sources=tuple(picture_sources),
        output=output,
        maps_model=maps_model,
        upscale_model=upscale_model,
    )
    return request.check(prompt_required=prompt_required)


def auxiliary_spec(model: ModelSpec, source: str) -> ModelSpec:
    """An auxiliary model's spec: ``source`` where ``model`` runs and is cached (its device,
    precision and online access), none of its ControlNet, LoRAs or memory settings."""
    return ModelSpec(
        source=source,
        device=model.device,
        precision=model.precision,
        cache_dir=model.cache_dir,
        allow_online=model.allow_online,
    )


def maps_model_spec(
    source: str | None, model: ModelSpec | None, values: Mapping[str, Any]
) -> ModelSpec:
    """The maps model: ``source`` (default :data:`.defaults.MAPS_MODEL_ID`) where the generating
    model runs and is cached; a projection (no ``model``) takes the device, precision and online
    access its settings give, else the defaults."""
    source = (source or "").strip() or defaults.MAPS_MODEL_ID
    if model is not None:
        return auxiliary_spec(model, source)
    return ModelSpec(
        source=source,
        device=values.get("device") or "auto",
        precision=values.get("precision") or "auto",
        cache_dir=values.get("cache_dir") or None,
        allow_online=bool(values.get("online")),
    )
