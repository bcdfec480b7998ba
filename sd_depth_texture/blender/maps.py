"""A run's PBR maps as PNGs and Blender images, beside the object's texture.

Each map is written through the one texture writer (:func:`.images.texture_png`, with the run
record) next to the texture (:func:`.outputs.map_path`), or packed into an unsaved file. Its
image is ``<object> SD Albedo`` (sRGB), ``SD Roughness`` or ``SD Metallic`` (Non-Color data),
marked as this add-on's map of that object, so a user's image of that name is left alone.
"""

from __future__ import annotations

import logging
import os

import bpy
import numpy as np

from ..core.provenance import Marking
from ..core.record import RunRecord
from .files import FileSet, writing
from .images import PACKED, RECORD_PROPERTY, record_text, texture_image, texture_png
from .targets import texture_name

log = logging.getLogger(__name__)

#: Set on a map's image: which map it is (its object is in :data:`.targets.OWNER`'s sibling).
MAP_KIND = "sd_depth_texture_map"
MAP_OF = "sd_depth_texture_map_of"
#: Maps that are data, not colour: Blender must not convert them from sRGB.
DATA_MAPS = ("roughness", "metallic")


def map_image_name(obj_name: str, kind: str) -> str:
    """``<object> SD Albedo`` and so on, beside ``<object> SD Texture``."""
    return texture_name(obj_name).removesuffix("Texture") + kind.capitalize()


def map_pngs(
    maps: dict[str, dict[str, np.ndarray]],
    record: RunRecord,
    marking: Marking,
    paths: dict[str, dict[str, str]],
) -> dict[str, dict[str, bytes]]:
    """Each object's maps encoded once, with the record, signed like its texture."""
    encoded: dict[str, dict[str, bytes]] = {}
    for name, kinds in maps.items():
        for kind, pixels in kinds.items():
            path = paths.get(name, {}).get(kind)
            title = os.path.basename(path) if path else map_image_name(name, kind)
            encoded.setdefault(name, {})[kind] = texture_png(
                pixels, record.for_targets([name]), marking, title
            )
    return encoded


def stage_files(
    pngs: dict[str, dict[str, bytes]], paths: dict[str, dict[str, str]], files: FileSet
) -> dict[str, dict[str, str]]:
    """Write each map's PNG under a temporary name in ``files``; where each is stored."""
    stored: dict[str, dict[str, str]] = {}
    for name, kinds in pngs.items():
        for kind, data in kinds.items():
            path = paths.get(name, {}).get(kind)
            if path is not None:
                with writing(path), open(files.stage(path), "wb") as stream:
                    stream.write(data)
            stored.setdefault(name, {})[kind] = path or PACKED
    return stored


def _own_map_image(obj_name: str, kind: str) -> bpy.types.Image | None:
    for image in bpy.data.images:
        if image.library is None and image.get(MAP_OF) == obj_name and image.get(MAP_KIND) == kind:
            return image
    return None


def map_images(
    obj_name: str,
    pngs: dict[str, bytes],
    paths: dict[str, str],
    record: RunRecord,
) -> dict[str, bpy.types.Image]:
    """The object's map images, reading their files (or packed), in the right colour space."""
    found = {}
    for kind, data in pngs.items():
        name = map_image_name(obj_name, kind)
        own = _own_map_image(obj_name, kind)
        if own is None:  # a new image, never a user's of the same name
            holder = bpy.data.images.new(name, 1, 1)
            holder[MAP_OF], holder[MAP_KIND] = obj_name, kind
            name = holder.name
        else:
            name = own.name
        image, _ = texture_image(name, data, paths.get(kind))
        image[MAP_OF], image[MAP_KIND] = obj_name, kind
        image[RECORD_PROPERTY] = record_text(record.for_targets([obj_name]))
        if kind in DATA_MAPS:
            image.colorspace_settings.name = "Non-Color"
        found[kind] = image
    return found
