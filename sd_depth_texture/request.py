"""One texturing request: everything a run needs, built by every door (no bpy).

The operators, the panel, the command line and the batch worker each build a
:class:`TextureRequest` and hand it to the one flow (:func:`..blender.flow.prepare`). A single
view is a one-view request, not another pipeline. :meth:`TextureRequest.check` is the one
validation of every number and choice, run before anything is read, loaded or generated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from . import defaults
from .core.diffusion.settings import GenerationSettings, ModelSpec, validate_settings
from .core.errors import TextureError
from .core.geometry.orbit import NamedView
from .core.geometry.views import View

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


@dataclass(frozen=True)
class OutputOptions:
    """How and where a run writes."""

    texture_size: int = int(defaults.TEXTURE_SIZE.default)
    margin: int = int(defaults.MARGIN.default)
    blend_path: str | None = None  # the .blend textures are saved beside; None: the open file
    report_path: str | None = None  # a JSON report of the run
    uv_map: str | None = None  # the UV map to texture; None: each target's active one
    in_place: bool = False  # blend_path may be the file being read (it is backed up first)
    # Never overwrite a texture file: each run writes the next free name and the earlier files
    # stay, so an undo step (the operators') still finds the pixels it shows.
    keep_previous_files: bool = False


@dataclass(frozen=True)
class TextureRequest:
    """A whole run. ``generation`` (with ``model``) makes pictures; ``pictures`` projects images
    the user has instead, one per view."""

    views: ViewSource
    targets: tuple[str, ...] | None = None  # object names; None: every mesh the views see
    generation: GenerationSettings | None = None
    model: ModelSpec | None = None
    view_prompts: bool = True  # append "front view", "back view" to automatic views' prompts
    pictures: tuple[np.ndarray, ...] = field(default=(), repr=False, compare=False)
    output: OutputOptions = OutputOptions()

    def check(self, door: str = "cli") -> TextureRequest:
        """Refuse any bad number or choice in one line naming the option as ``door`` shows it
        ("cli": flags, "ui": panel fields). Reads and writes nothing; returns the request."""
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
        defaults.check_numbers(numbers, door)
        if (self.generation is None) == (not self.pictures):
            raise TextureError("A run either generates pictures or projects given ones.")
        if self.generation is not None:
            validate_settings(self.generation, has_init_image=False, door=door)
            if self.model is None:
                raise TextureError("A generating run needs a model.")
        if self.pictures and views.count != len(self.pictures):
            wanted = views.count or "one"
            raise TextureError(
                f"{len(self.pictures)} images need {len(self.pictures)} cameras, "
                f"not {wanted}: give one camera per image."
            )
        for picture in self.pictures:
            if picture.ndim != 3 or picture.shape[2] < 3 or min(picture.shape[:2]) < 1:
                raise TextureError(f"An image to project has the shape {picture.shape}.")
        if self.targets is not None and not self.targets:
            raise TextureError("Nothing to texture: name at least one object.")
        return self

    def settings_record(self) -> dict:
        """What the report records about the request (pictures and matrices left out)."""
        views = self.views
        record: dict = {
            "views": {
                "resolution": views.resolution,
                "kind": "given"
                if views.given
                else "cameras"
                if views.cameras
                else "collection"
                if views.collection
                else "orbit",
                "cameras": list(views.cameras) or [named.label for named in views.given],
                "collection": views.collection,
                "orbit": views.orbit,
            },
            "targets": list(self.targets) if self.targets is not None else None,
            "texture_size": self.output.texture_size,
            "margin": self.output.margin,
            "uv_map": self.output.uv_map,
            "view_prompts": self.view_prompts,
            "projected_images": len(self.pictures),
        }
        if self.generation is not None:
            record["generation"] = {
                name: getattr(self.generation, name)
                for name in self.generation.__dataclass_fields__
            }
        if self.model is not None:
            record["model"] = {
                "source": self.model.source,
                "config": self.model.config,
                "device": self.model.device,
                "precision": self.model.precision,
            }
        return record
