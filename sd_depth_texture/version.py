"""The extension's version, read from its manifest (no bpy), for the run record."""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
# Installed, the manifest sits beside __init__.py; in the source tree, one folder up.
_MANIFESTS = (_PACKAGE / "blender_manifest.toml", _PACKAGE.parent / "blender_manifest.toml")


@functools.cache
def extension_version() -> str:
    for manifest in _MANIFESTS:
        try:
            with open(manifest, "rb") as stream:
                return str(tomllib.load(stream)["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            continue
    return "unknown"
