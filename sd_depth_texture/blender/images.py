"""Arrays to Blender images and back, the texture's material, and where images are saved."""

from __future__ import annotations

import json
import logging
import os

import bpy
import numpy as np

from ..core import provenance
from ..core.bake import png
from ..core.provenance import Marking
from ..core.record import RunRecord, json_default
from .targets import OWNER, own_image

log = logging.getLogger(__name__)

#: The PNG text chunk that holds a texture's run record (``docs/record.md``).
RECORD_KEY = "sd_depth_texture:record"
#: The image datablock's custom property that holds the same record (JSON text): it travels
#: with the image through packing, copying, appending and linking.
RECORD_PROPERTY = "sd_depth_texture_record"
PACKED = "packed in the .blend"  # where a texture of an unsaved file is stored
DEPTH_IMAGE = "SD Depth"  # the depth map last sent to the model, kept in the .blend
DEPTH_MARK = "sd_depth_texture_depth"  # on the image that keeps it
_NOT_FILE_IMAGES = {"RENDER_RESULT", "COMPOSITING"}  # images that are never read from a file


def array_to_image(
    name: str,
    pixels: np.ndarray,
    *,
    is_data: bool = False,
    float_buffer: bool = False,
    reuse: bool = True,
) -> bpy.types.Image:
    """Create or update the image ``name`` from an (H, W, C) array in [0, 1], row 0 at the top.

    An existing image of another size is rescaled in place, so materials that use it keep it.
    ``reuse=False`` always makes a new image (Blender picks a free name): for a scratch image
    that is removed again, which must never be a user's image that happens to have its name.
    """
    height, width = pixels.shape[:2]
    rgba = np.ones((height, width, 4), dtype=np.float32)
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    source = pixels.reshape(height, width, channels)
    rgba[..., :3] = source[..., :3] if channels >= 3 else source[..., :1]
    if channels == 4:
        rgba[..., 3] = source[..., 3]
    image = bpy.data.images.get(name) if reuse else None
    reusable = image is not None and image.library is None and bool(image.is_float) == float_buffer
    if not reusable:
        image = bpy.data.images.new(
            name, width, height, alpha=True, float_buffer=float_buffer, is_data=is_data
        )
    # Settings first: changing the colour space reloads the buffer (at its old size).
    image.colorspace_settings.name = "Non-Color" if is_data else "sRGB"
    # Alpha records coverage, not transparency: it must not cut holes in the shaded colour.
    image.alpha_mode = "CHANNEL_PACKED"
    if tuple(image.size) != (width, height):
        image.scale(width, height)
    # Blender stores rows bottom first.
    image.pixels.foreach_set(np.ascontiguousarray(rgba[::-1]).ravel())
    image.update()
    return image


def image_to_array(image: bpy.types.Image) -> np.ndarray:
    """An image's pixels as (H, W, 4) float32, row 0 at the top, as stored (sRGB for 8-bit)."""
    width, height = image.size
    flat = np.empty(width * height * 4, dtype=np.float32)
    image.pixels.foreach_get(flat)
    return flat.reshape(height, width, 4)[::-1].copy()


def save_depth_png(depth: np.ndarray, path: str, scene: bpy.types.Scene | None = None) -> str:
    """Write a [0, 1] depth map as a 16-bit grayscale PNG (exact to 1/65535), straight from the
    array and whole (:func:`..core.bake.png.write_png`): Blender's ``save_render`` on a full disk
    writes an empty file and reports nothing. ``scene`` is not needed any more."""
    levels = np.rint(np.clip(np.asarray(depth, dtype=np.float64), 0.0, 1.0) * 65535)
    return png.write_png(path, levels.astype(np.uint16))


def relative_to_open_file(path: str) -> str:
    """``path`` as a ``//`` path relative to the open .blend (absolute if there is none).

    Saving elsewhere with ``relative_remap`` then carries it to the new folder, exactly as it
    does the file's own relative paths.
    """
    if not bpy.data.filepath:
        return path
    try:
        relative = os.path.relpath(path, os.path.dirname(bpy.data.filepath))
    except ValueError:  # another drive: stays absolute
        return path
    return "//" + relative.replace(os.sep, "/")


def record_text(record: RunRecord) -> str:
    """The record as every texture stores it (the PNG chunk, the image property)."""
    return json.dumps(record.to_dict(), sort_keys=True, default=json_default)


def texture_png(
    pixels: np.ndarray, record: RunRecord, marking: Marking | None = None, title: str = ""
) -> bytes:
    """The one PNG writer of textures, for files and packed images alike: an (H, W, 3) array
    in [0, 1] as the 8-bit sRGB PNG Blender would store, straight from the array
    (:mod:`..core.bake.png`), with the run record that made it and, for a generated texture,
    the A1111-style ``parameters`` line as text chunks, then the C2PA manifest signed with the
    ``marking``'s credentials (none: the manifest is skipped, the text is still there)."""
    text = {RECORD_KEY: record_text(record)}
    data = json.loads(text[RECORD_KEY])
    parameters = provenance.parameters_line(data)
    if parameters is not None:
        text[provenance.PARAMETERS_KEY] = parameters
    encoded = png.encode_png(pixels, text=text)
    if marking is None or marking.credentials is None:
        return encoded
    return provenance.sign_png(encoded, provenance.manifest(data, title), marking.credentials)


def image_record(image: bpy.types.Image) -> dict | None:
    """The run record an image carries as its property; None where it has none (or a damaged
    one, which is logged)."""
    text = image.get(RECORD_PROPERTY)
    if not isinstance(text, str):
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        log.warning("The record of the image '%s' is damaged; ignoring it", image.name)
        return None
    return record if isinstance(record, dict) else None


def texture_image(
    name: str, data: bytes, path: str | None, owner: str | None = None
) -> tuple[bpy.types.Image, str]:
    """The image ``name`` showing the texture whose PNG (``data``, from :func:`texture_png`) is
    already written at ``path``, or, for None (an unsaved file), packed into the .blend.
    Returns the image and where the texture is stored.

    The image reads its file lazily, so nothing is decoded until the texture is shown or read.
    An existing image of that name is reloaded in place, so materials that use it keep it. Its
    path is relative, so the .blend and its textures move together. ``owner``: the object the
    texture is for; then only the image this add-on made for it is reused (see
    :func:`.targets.own_image`), a user's image of that name is left alone and the new image
    gets a free name, and the image is marked as the add-on's.
    """
    image = _file_image(name, path, owner)
    if path is None:
        image.pack(data=data, data_len=len(data))
        image.buffers_free()  # any pixels it held are stale: read the packed PNG on use
        return image, PACKED
    return image, path


def _file_image(name: str, path: str | None, owner: str | None = None) -> bpy.types.Image:
    """The image ``name`` made to read the PNG at ``path`` (by a relative path) or, for None,
    the packed data about to be given; nothing is loaded yet."""
    image = own_image(owner) if owner is not None else bpy.data.images.get(name)
    if image is None or image.library is not None or image.type in _NOT_FILE_IMAGES:
        if path is None:
            image = bpy.data.images.new(name, 1, 1)
        else:
            image = bpy.data.images.load(path, check_existing=False)
            image.name = name  # Blender adds '.001' when a user's image holds the name
    if owner is not None:
        image[OWNER] = owner
    if image.packed_file is not None:
        image.unpack(method="REMOVE")  # drops the packed copy; the new PNG replaces it
    image.source = "FILE"
    image.filepath_raw = relative_to_open_file(path) if path is not None else ""
    image.file_format = "PNG"
    image.colorspace_settings.name = "sRGB"
    image.alpha_mode = "CHANNEL_PACKED"
    if path is not None:
        image.reload()
    return image


def depth_image() -> bpy.types.Image | None:
    """The image this add-on keeps the last depth map in, if any: the one it marked, or an
    unmarked ``SD Depth`` an earlier version kept (packed float data with a fake user). A user's
    own image of that name is not it."""
    for image in bpy.data.images:
        if image.library is None and image.get(DEPTH_MARK):
            return image
    image = bpy.data.images.get(DEPTH_IMAGE)
    earlier = image is not None and image.library is None and DEPTH_MARK not in image
    if earlier and image.is_float and image.use_fake_user and image.packed_file is not None:
        return image
    return None


def keep_depth(depth: np.ndarray) -> bpy.types.Image:
    """Keep the depth map that was sent as an image that survives saving (packed, used),
    marked as the add-on's; a user's image called ``SD Depth`` is left alone."""
    own = depth_image()
    image = array_to_image(
        own.name if own is not None else DEPTH_IMAGE, depth, is_data=True, float_buffer=True,
        reuse=own is not None,
    )  # fmt: skip
    image[DEPTH_MARK] = True
    image.use_fake_user = True
    image.pack()
    return image
