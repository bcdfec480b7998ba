"""Every path a run writes, decided and checked before anything runs.

A run writes up to four kinds of file: the output .blend (command line), one PNG per textured
object, the JSON report and the depth PNG (``depth``, Capture Depth). :func:`plan_run` and
:func:`plan_depth` decide each path and check them all, before the diffusion runs, against
the file being read, against each other and against files this add-on did not write, so a
bad path is one clear line and nothing is written. :mod:`.files` then writes them whole.

Where textures go is one rule, :func:`texture_path`: ``textures/<blend stem>/`` beside the
.blend, one file per object named after it, so two .blend files in one folder never share a
texture file. A file already there is this output's only when the .blend references it as
that object's texture; any other file is left alone and the object gets the next free name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field

import bpy

from ..core.disk import refuse_not_a_file
from ..core.errors import TextureError
from ..request import OutputOptions
from .blend_check import check_blend
from .targets import foreign_name_notes, owner_of_texture, texture_name

log = logging.getLogger(__name__)

TEXTURE_FOLDER = "textures"
TEXTURE_SUFFIX = "_SD_Texture.png"
BACKUP_TAG = ".backup"
_TEXTURE_IMAGE = texture_name("")  # an image named "<object> SD Texture" is that object's
_BLEND_NAME = re.compile(r"\.blend\d*$", re.IGNORECASE)  # .blend and Blender's .blend1 backups
_BLEND_MAGIC = b"BLENDER"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_REPORT_KEYS = {"schema", "settings", "objects"}
_REPORT_MAX_BYTES = 64 << 20
_MAX_CANDIDATES = 1000
# A file name holds at most 255 bytes, and a texture's longest temporary name is 17 bytes
# longer ('.<stem>.partial.png', itself written first as '<that>.partial').
_NAME_BYTES = 255 - len("..partial.partial")


@dataclass(frozen=True)
class Plan:
    """Where one run writes; every path absolute and checked."""

    blend: str | None  # the .blend the textures belong to; None: an unsaved file (packed)
    textures: dict[str, str]  # object name -> its PNG (empty when packed)
    report: str | None = None
    backup: str | None = None  # in place: where the file the output replaces is copied first
    notes: dict[str, list[str]] = field(default_factory=dict)  # per object, for the report
    replaces: frozenset[str] = frozenset()  # planned files already there (this output's own)
    # Object name -> map name -> its PNG, beside the object's texture (empty when packed).
    maps: dict[str, dict[str, str]] = field(default_factory=dict)

    def recheck(self) -> None:
        """Check again just before writing: a panel run takes minutes, and a file that
        appeared at a planned path meanwhile, or a folder made read-only, is not written over."""
        for name, path in self.textures.items():
            if path not in self.replaces and os.path.lexists(path):
                raise TextureError(
                    f"'{path}' appeared while the texture of '{name}' was made: nothing was "
                    "written (run again to pick a free name)."
                )
            check_file(path, "the texture")
        for paths in self.maps.values():
            for path in paths.values():
                check_file(path, "the map")
        if self.report:
            check_report(self.report)


# --- Texture file names -------------------------------------------------------------------


def texture_folder(blend_path: str) -> str:
    """``<folder>/textures/<stem>/`` for ``<folder>/<stem>.blend``: a folder per .blend."""
    folder, name = os.path.split(os.path.abspath(blend_path))
    return os.path.join(folder, TEXTURE_FOLDER, os.path.splitext(name)[0])


def _candidates(object_name: str) -> Iterator[str]:
    """The file names an object's texture may take, in order of preference.

    The plain cleaned name first; then one tagged with a hash of the exact object name (stable
    across runs and machines), for names that clean to the same file name (``A.B``, ``A_B``)
    or whose plain name is someone else's file; then numbered ones after that. A name too
    long for the file system (counted in UTF-8 bytes) is shortened and always tagged, so two
    long names that share their start still get files of their own.
    """
    base = bpy.path.clean_name(object_name)
    tag = hashlib.sha1(object_name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    if _fits(base + TEXTURE_SUFFIX):
        yield base + TEXTURE_SUFFIX
    yield _shortened(base, f"-{tag}{TEXTURE_SUFFIX}")
    number = 2
    while True:
        yield _shortened(base, f"-{tag}-{number}{TEXTURE_SUFFIX}")
        number += 1


def _fits(name: str) -> bool:
    return len(name.encode("utf-8", "surrogateescape")) <= _NAME_BYTES


def _shortened(base: str, tail: str) -> str:
    """``base + tail``, ``base`` cut at a whole character so the name fits :data:`_NAME_BYTES`."""
    room = _NAME_BYTES - len(tail.encode("utf-8", "surrogateescape"))
    kept = base.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")
    return kept + tail


def texture_path(
    blend_path: str,
    object_name: str,
    unavailable: Collection[str] = (),
    current: str | None = None,
    folder: str | None = None,
) -> str:
    """The one naming rule for texture files: where ``object_name``'s PNG goes for the .blend
    ``blend_path``.

    ``unavailable``: file names (lower case: case-insensitive file systems) the object must not
    take: other objects' textures of this output and files there that are not its own.
    ``current``: the file name this output's .blend already uses for the object; it is kept
    when it is one of the object's names, so a rerun writes the same file.
    ``folder``: the texture folder when it is not the .blend's own (:func:`texture_folder`).
    """
    folder = folder or texture_folder(blend_path)
    names = _candidates(object_name)
    own = [next(names) for _ in range(_MAX_CANDIDATES)]
    keep = current is not None and current.lower() in {name.lower() for name in own}
    if keep and current.lower() not in unavailable:
        return os.path.join(folder, current)
    for name in own:
        if name.lower() not in unavailable:
            return os.path.join(folder, name)
    raise TextureError(f"No free file name for the texture of '{object_name}' in '{folder}'.")


def texture_references(blend_path: str) -> dict[str, str]:
    """Object name -> absolute path of the texture file the .blend at ``blend_path`` uses.

    The open file answers from memory. Another existing .blend is read through a temporary
    library link in throwaway data, so nothing of it enters the open file; a file Blender cannot
    read references nothing.
    """
    if bpy.data.filepath and same_file(blend_path, bpy.data.filepath):
        return {
            _texture_owner(image): _normal(bpy.path.abspath(image.filepath))
            for image in bpy.data.images
            if image.library is None and _texture_owner(image) and image.filepath
        }
    if not os.path.isfile(blend_path):
        return {}
    references = {}
    try:
        check_blend(blend_path)  # a damaged file is never handed to Blender's reader
        with bpy.data.temp_data() as temp:
            with temp.libraries.load(blend_path, link=True) as (source, target):
                target.images = [name for name in source.images if _TEXTURE_IMAGE in name]
            for image in target.images:
                if image is not None and image.filepath and _texture_owner(image):
                    path = bpy.path.abspath(image.filepath, library=image.library)
                    references[_texture_owner(image)] = _normal(path)
    except (OSError, RuntimeError, ValueError, TextureError) as error:
        log.warning("Cannot read the textures '%s' uses: %s", blend_path, error)
        return {}
    return references


def _texture_owner(image: bpy.types.Image) -> str | None:
    """The object whose texture ``image`` is: as the add-on marked it, else (images of earlier
    versions) from the name ``<object> SD Texture``."""
    owner = owner_of_texture(image)
    if owner is None and image.name.endswith(_TEXTURE_IMAGE):
        owner = image.name[: -len(_TEXTURE_IMAGE)]
    return owner


def has_textures(blend_path: str) -> bool:
    """Whether an existing .blend holds a texture of this add-on (an earlier output, or a file
    textured from the panel): only the names are read, nothing is loaded."""
    try:
        check_blend(blend_path)  # a damaged file is never handed to Blender's reader
        with bpy.data.temp_data() as temp, temp.libraries.load(blend_path) as (source, _):
            return any(name.endswith(_TEXTURE_IMAGE) for name in source.images)
    except (OSError, RuntimeError, ValueError, TextureError):
        return False


def plan_textures(
    blend_path: str,
    object_names: Iterable[str],
    keep_previous: bool = False,
    folder: str | None = None,
) -> tuple[dict, dict]:
    """Each object's PNG for ``blend_path`` (see :func:`texture_path`), and notes for objects
    whose plain name is taken by a file this output does not own.

    ``keep_previous``: never reuse a file, not even the object's own earlier texture, so an
    undo step (the panel's runs) still finds the pixels the image it restores points at.
    ``folder``: where the textures go instead of :func:`texture_folder` (a batch's own).
    """
    folder = os.path.abspath(folder) if folder else texture_folder(blend_path)
    try:
        present = {name.lower() for name in os.listdir(folder)} if os.path.isdir(folder) else set()
    except OSError as error:
        raise TextureError(
            f"Cannot read the texture folder '{folder}': {error.strerror}."
        ) from error
    owned = {
        name: os.path.basename(path)
        for name, path in (texture_references(blend_path) if blend_path else {}).items()
        if os.path.dirname(path) == _normal(folder)
    }
    chosen: dict[str, str] = {}
    notes: dict[str, list[str]] = {}
    for name in object_names:
        current = owned.get(name)
        others = {file.lower() for other, file in owned.items() if other != name}
        others |= {os.path.basename(path).lower() for path in chosen.values()}
        foreign = present - {current.lower()} if current and not keep_previous else present
        path = texture_path(
            blend_path, name, others | foreign, None if keep_previous else current, folder
        )
        chosen[name] = path
        plain = next(_candidates(name))
        own_earlier = keep_previous and current is not None
        if os.path.basename(path) != plain and plain.lower() in foreign and not own_earlier:
            notes.setdefault(name, []).append(
                f"'{os.path.join(folder, plain)}' is not this file's texture of '{name}' and "
                f"was left alone; the texture is '{os.path.basename(path)}'"
            )
    return chosen, notes


# --- Checks ---------------------------------------------------------------------------------


def user_path(path: str, what: str) -> str:
    """The absolute path of a path typed in Blender, where ``//`` means "beside the .blend".

    In a file never saved there is no such folder, and Blender would resolve ``//`` against
    the process's working directory, wherever Blender was started: refused in one line.
    """
    if path.startswith("//") and not bpy.data.filepath:
        raise TextureError(
            f"{what[:1].upper()}{what[1:]} '{path}' is relative to the .blend file ('//'), "
            "which is not saved yet: save the file first, or give a full path."
        )
    return os.path.abspath(bpy.path.abspath(path))


def _normal(path: str) -> str:
    return os.path.normcase(os.path.realpath(os.path.abspath(path)))


def same_file(first: str, second: str) -> bool:
    """Whether two paths name one file (links and case-insensitive systems included)."""
    try:
        return os.path.samefile(first, second)
    except OSError:
        return _normal(first) == _normal(second)


def _starts_with(path: str, magic: bytes) -> bool:
    try:
        with open(path, "rb") as stream:
            return stream.read(len(magic)) == magic
    except OSError:
        return False


def is_blend(path: str) -> bool:
    """A .blend by its name (``.blend``, ``.blend1``...) or by its first bytes."""
    return bool(_BLEND_NAME.search(path)) or _starts_with(path, _BLEND_MAGIC)


def is_report(path: str) -> bool:
    """A JSON report this add-on wrote (an object with its schema, settings and objects)."""
    try:
        if os.path.getsize(path) > _REPORT_MAX_BYTES:
            return False
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and data.keys() >= _REPORT_KEYS


def is_depth_png(path: str) -> bool:
    """A 16-bit greyscale PNG, as the depth maps this add-on writes are."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(26)
    except OSError:
        return False
    # The IHDR chunk follows the signature: length, type, width, height, bit depth, colour type.
    return head.startswith(_PNG_MAGIC) and head[12:16] == b"IHDR" and head[24:26] == b"\x10\x00"


def check_folder(folder: str, what: str) -> None:
    """``what`` can be written in ``folder``: it is a writable folder, or the nearest part of
    it that exists is one (missing folders are created when the file is written)."""
    probe = os.path.abspath(folder)
    while not os.path.lexists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise TextureError(f"Cannot write {what}: '{probe}' is a file, not a folder.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise TextureError(f"Cannot write {what}: the folder '{probe}' is read-only.")


def check_file(path: str, what: str) -> None:
    """``path`` can be written whole as ``what``: not a folder, in a writable folder, and not a
    read-only file."""
    if os.path.isdir(path):
        raise TextureError(f"{what.capitalize()} '{path}' is a folder: give a file name.")
    refuse_not_a_file(path, what)
    check_folder(os.path.dirname(path), f"{what} '{path}'")
    if os.path.lexists(path) and not os.access(path, os.W_OK):
        raise TextureError(f"{what.capitalize()} '{path}' is read-only.")


def backup_path(path: str) -> str:
    """Where a file about to be replaced is kept: ``NAME.backup.ext``, else the first free
    ``NAME.backup-N.ext``, so no earlier backup is ever replaced."""
    stem, extension = os.path.splitext(path)
    candidate, number = f"{stem}{BACKUP_TAG}{extension}", 2
    while os.path.lexists(candidate):
        candidate, number = f"{stem}{BACKUP_TAG}-{number}{extension}", number + 1
    return candidate


def check_blend_output(path: str, source: str | None, in_place: bool) -> str | None:
    """Check the .blend a command writes; returns where to back up the file it replaces when
    that is the file being read (``in_place``), else None.

    An existing output is replaced only when it holds this add-on's textures (an earlier run's
    output): any other .blend there is someone's work, and is left alone.
    """
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise TextureError(f"The output '{path}' is a folder: give a .blend file name.")
    if not path.lower().endswith(".blend"):
        raise TextureError(
            f"The output '{path}' is not a .blend file name: the output is a .blend, with its "
            "textures beside it."
        )
    check_file(path, "the output")
    if source and same_file(path, source):
        if not in_place:
            raise TextureError(
                f"The output '{path}' is the file being read: give another --output, or "
                "--in-place to write into it (a backup is kept)."
            )
        return backup_path(path)
    if os.path.lexists(path) and not has_textures(path):
        raise TextureError(
            f"The output '{path}' is an existing .blend without textures of this add-on: "
            "choose another --output (it is left as it is)."
        )
    return None


def check_report(
    path: str | None, inputs: Iterable[str | None] = (), outputs: Iterable[str | None] = ()
) -> str | None:
    """The report's absolute path, checked: a file of its own that is not an input, another
    output, a .blend, or any existing file but an earlier report."""
    if not path:
        return None
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise TextureError(
            f"The report '{path}' is a folder: give a file name such as report.json."
        )
    refuse_not_a_file(path, "the report")  # before anything reads it: a FIFO would block
    for other in inputs:
        if other and same_file(path, other):
            raise TextureError(
                f"The report '{path}' is a file the run reads: choose a .json path of its own."
            )
    for other in outputs:
        if other and same_file(path, other):
            raise TextureError(
                f"The report '{path}' is also a file the run writes: choose a .json path "
                "of its own."
            )
    if is_blend(path):
        raise TextureError(f"The report '{path}' is a .blend file name: choose a .json path.")
    if os.path.lexists(path) and not is_report(path):
        raise TextureError(
            f"The report '{path}' exists and is not a report of this add-on: choose another "
            "path (it is left as it is)."
        )
    check_file(path, "the report")
    return path


def map_path(texture_path: str, map_name: str) -> str:
    """Where a map of a texture goes: beside it, ``<stem>_SD_Albedo.png`` for the texture
    ``<stem>_SD_Texture.png``, so it follows the texture's one naming rule."""
    stem = texture_path.removesuffix(TEXTURE_SUFFIX)
    if stem == texture_path:
        stem = os.path.splitext(texture_path)[0]
    return f"{stem}_SD_{map_name.capitalize()}.png"


def plan_run(output: OutputOptions, object_names: Iterable[str]) -> Plan:
    """Every path a texturing run writes, checked (see the module): called by
    :func:`..flow.prepare` once the targets are known, before anything is generated.

    ``output.blend_path`` set: the run's .blend is written there (the command line saves it);
    unset: the textures belong to the open file (the panel), packed when it was never saved.
    """
    source = bpy.data.filepath or None
    names = list(object_names)
    backup = None
    if output.blend_path:
        blend = os.path.abspath(output.blend_path)
        backup = check_blend_output(blend, source, output.in_place)
    else:
        blend = os.path.abspath(source) if source else None
    # In place, the backup is the file as it was and references its textures where they are:
    # a new file for each texture, so no backup ever points at pixels a later run replaced.
    keep_previous = output.keep_previous_files or backup is not None
    textures, notes = ({}, {})
    if blend or output.texture_folder:
        textures, notes = plan_textures(blend, names, keep_previous, output.texture_folder)
    for name, extra in foreign_name_notes(names).items():
        notes.setdefault(name, []).extend(extra)
    for path in textures.values():
        check_file(path, "the texture")
    maps = {
        name: {kind: map_path(path, kind) for kind in output.estimated_maps}
        for name, path in textures.items()
    }
    map_files = [path for paths in maps.values() for path in paths.values()]
    for path in map_files:
        check_file(path, "the map")
    written = [blend if output.blend_path else None, *textures.values(), *map_files]
    report = check_report(output.report_path, inputs=[source], outputs=written)
    planned = [*textures.values(), *map_files]
    replaces = frozenset(path for path in planned if os.path.lexists(path))
    return Plan(blend, textures, report, backup, notes, replaces, maps)


def plan_depth(
    path: str, source: str | None, force: bool, door: str = "cli"
) -> tuple[str, str | None]:
    """The depth PNG's absolute path, checked, and where to back up the file it replaces.

    An earlier depth map (a 16-bit greyscale PNG) is replaced; any other existing file, the
    file being read above all, only with ``force`` (the command line's ``--force``), and then
    it is kept as a backup first.
    """
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise TextureError(f"The depth PNG '{path}' is a folder: give a .png file name.")
    check_file(path, "the depth PNG")
    if not os.path.lexists(path) or is_depth_png(path):
        _require_png_name(path)
        return path, None
    if source and same_file(path, source):
        kind = "the file being read"
    elif is_blend(path):
        kind = "a .blend file"
    else:
        kind = "a file that is not a depth map"
    if not force:
        remedy = (
            "give --output another .png name, or --force to replace it (a backup is kept)"
            if door == "cli"
            else "choose another .png file"
        )
        raise TextureError(f"The depth PNG '{path}' is {kind}: {remedy}.")
    _require_png_name(path)
    return path, backup_path(path)


def _require_png_name(path: str) -> None:
    """The depth map is PNG bytes: under another name (``d.jpg``, even with ``--force``) it
    would be a file that lies about what it holds."""
    if not path.lower().endswith(".png"):
        raise TextureError(
            f"The depth PNG '{path}' is not a .png file name: the depth map is written as PNG, "
            "give a name ending in .png."
        )
