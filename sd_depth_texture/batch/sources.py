"""Which .blend files the SOURCE arguments name, and the asset catalogs that apply to them.

No bpy: asset libraries come in as a name -> folder mapping (the worker reads Blender's
preferences), and only file names and catalog text files are read here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..core.errors import TextureError
from ..core.text import shown
from .records import SourceFile

log = logging.getLogger(__name__)

CATALOG_FILE = "blender_assets.cats.txt"


def is_within(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies below it (both real, absolute paths)."""
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # different drives
        return False


def _blend_files(root: str, exclude: Sequence[str]) -> list[str]:
    """Every .blend below ``root``; hidden files and folders (temporary writes) and ``exclude``
    (the output folder, so a rerun never takes its own results for sources) are left out.

    Symbolic links to .blend files are listed under the link's own name; linked folders are not
    followed (a link to a parent folder would loop).
    """
    found = []
    for folder, folders, files in os.walk(root):
        folders[:] = sorted(
            name
            for name in folders
            if not name.startswith(".")
            and not any(is_within(os.path.join(folder, name), ex) for ex in exclude)
        )
        found += [
            os.path.join(folder, name)
            for name in sorted(files)
            if name.lower().endswith(".blend") and not name.startswith(".")
        ]
    return found


def source_folders(sources: Sequence[str], libraries: Mapping[str, str]) -> list[str]:
    """The folders (real paths) among the SOURCE arguments: folders and asset libraries."""
    folders = []
    for source in sources:
        if os.path.isdir(source):
            folders.append(os.path.realpath(source))
        elif not os.path.isfile(source) and source in libraries:
            folders.append(os.path.realpath(libraries[source]))
    return folders


def resolve_sources(
    sources: Sequence[str], libraries: Mapping[str, str], exclude: Sequence[str] = ()
) -> list[SourceFile]:
    """Turn SOURCE arguments (folders, .blend files, asset library names) into files.

    A file reachable from two sources keeps the identity from the outermost folder, so the
    order of the arguments never changes a seed; reachable twice in one folder (a link beside
    its target), the real file's own name wins. A link is otherwise named after itself, where
    the user sees it. Two files with one identity are refused: their outputs would overwrite
    each other.
    """
    exclude = [os.path.realpath(path) for path in exclude]
    # real file -> [(root, relpath)]: where it appears, the root a real folder
    candidates: dict[str, list[tuple[str, str]]] = {}
    for source in sources:
        if os.path.isdir(source):
            root = os.path.realpath(source)
            places = _blend_files(root, exclude)
            if not places:
                raise TextureError(f"There are no .blend files in the folder '{source}'.")
        elif os.path.isfile(source):
            if not source.lower().endswith(".blend"):
                raise TextureError(f"'{source}' is not a .blend file.")
            root = os.path.realpath(os.path.dirname(os.path.abspath(source)))
            places = [os.path.join(root, os.path.basename(source))]
        elif source in libraries:
            root = os.path.realpath(libraries[source])
            if not os.path.isdir(root):
                raise TextureError(
                    f"The asset library '{source}' points to '{libraries[source]}', "
                    "which is not a folder."
                )
            places = _blend_files(root, exclude)
        else:
            raise TextureError(
                f"'{source}' is not a folder, a .blend file or an asset library in Blender's "
                "preferences (File Paths > Asset Libraries)."
            )
        for place in places:
            if not os.path.isfile(place):
                log.warning("'%s' is a link to nothing; skipped", shown(place))
                continue
            relpath = Path(os.path.relpath(place, root)).as_posix()
            candidates.setdefault(os.path.realpath(place), []).append((root, relpath))
    files: dict[str, SourceFile] = {}
    for path, places in candidates.items():
        root, relpath = min(
            places,
            key=lambda place: (
                len(place[0]),
                place[0],
                os.path.islink(os.path.join(place[0], *Path(place[1]).parts)),
                place[1],
            ),
        )
        if relpath in files:
            raise TextureError(
                f"'{path}' and '{files[relpath].path}' would both be written as '{relpath}': "
                "batch them into separate --out folders."
            )
        files[relpath] = SourceFile(path=path, relpath=relpath, root=root)
    if not files:
        raise TextureError("There are no .blend files to texture in the given sources.")
    return [files[relpath] for relpath in sorted(files)]


# --------------------------------------------------------------------------------------------
# Catalogs
# --------------------------------------------------------------------------------------------


def read_catalogs(path: str) -> dict[str, str]:
    """Catalog UUID -> catalog path from a ``blender_assets.cats.txt`` (``UUID:path:name``).

    A file that is not UTF-8 text is a :class:`TextureError`: the caller skips the catalog
    rather than the assets.
    """
    try:
        with open(path, "rb") as stream:
            data = stream.read()
        text = data.decode("utf-8-sig")
    except OSError as error:
        raise TextureError(f"Cannot read the asset catalogs '{path}': {error.strerror}.") from error
    except UnicodeDecodeError as error:
        raise TextureError(
            f"The asset catalogs '{path}' are not UTF-8 text (byte {error.start}); "
            "their catalog names were left out of the prompts."
        ) from error
    if "\x00" in text:
        raise TextureError(
            f"The asset catalogs '{path}' are not a text file; "
            "their catalog names were left out of the prompts."
        )
    catalogs = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("VERSION"):
            continue
        parts = line.split(":", 2)
        if len(parts) >= 2:
            catalogs[parts[0].strip().lower()] = parts[1].strip()
    return catalogs


def catalog_file(source: SourceFile) -> str | None:
    """The nearest ``blender_assets.cats.txt`` in the file's folder or a parent, up to its source
    folder (the asset library root), as the library shows it (a link's folder, not its target's).
    """
    folder = os.path.dirname(source.location)
    while True:
        candidate = os.path.join(folder, CATALOG_FILE)
        if os.path.isfile(candidate):
            return candidate
        if folder == source.root or not is_within(folder, source.root):
            return None
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def find_catalogs(source: SourceFile) -> dict[str, str]:
    """The catalog definitions that apply to a file (empty when there is no catalog file)."""
    path = catalog_file(source)
    return read_catalogs(path) if path else {}
