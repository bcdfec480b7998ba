"""Meshes as arrays: one object's evaluated mesh in world space, and the scene's triangle soup.

No bpy: the Blender side fills these from evaluated meshes (:mod:`..blender.scene`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..errors import TextureError


@dataclass
class MeshArrays:
    """One evaluated surface (modifiers applied) in world space.

    Either a mesh object of the file, named after it, which can be a texturing target; or
    something else that renders as triangles (text, curves, metaballs, instances), which only
    occludes: ``target`` is False and its name is never an object's name.
    """

    name: str
    vertices: np.ndarray  # (V, 3) float64, world space
    triangles: np.ndarray  # (F, 3) int64 vertex indices
    uv: np.ndarray | None  # (L, 2) float64 per-corner UVs of the active UV map
    uv_triangles: np.ndarray  # (F, 3) int64 corner indices, same triangle order
    target: bool = True
    # Digests of what the arrays were made from, so caches need not hash them again (None:
    # unknown, hash the arrays): the mesh as read and its transform (vertices, triangles,
    # corners), and its UVs as read.
    digest: bytes | None = None
    uv_digest: bytes | None = None


def require_uv(mesh: MeshArrays) -> MeshArrays:
    """``mesh`` if it has UVs to paint into; otherwise one clear :class:`TextureError`.

    A modifier stack can leave the evaluated mesh without the UV map its object has (geometry
    nodes that build a new mesh, for one), and a texture then has nowhere to go.
    """
    if mesh.uv is None:
        raise TextureError(
            f"'{mesh.name}' has no UV map after its modifiers, so a texture has nowhere to go: "
            "keep or store one in the modifiers (in geometry nodes, store the UV Map as a 2D "
            "Vector on the Face Corner domain, named as the object's UV map) or apply them."
        )
    return mesh


@dataclass
class SceneGeometry:
    """All visible meshes as one triangle soup, remembering which object each triangle is from."""

    vertices: np.ndarray
    triangles: np.ndarray
    owner: np.ndarray  # (F,) index into ``names``
    names: list[str]
    digest: bytes | None = None  # of its meshes' digests, in order; None if one is unknown


def scene_geometry(meshes: list[MeshArrays]) -> SceneGeometry:
    """Concatenate meshes into one soup so other objects occlude the target as they do on screen."""
    if not meshes:
        empty = np.zeros((0, 3))
        return SceneGeometry(empty, empty.astype(np.int64), np.zeros(0, dtype=np.int32), [])
    if len(meshes) == 1:  # the usual case: the mesh's own arrays, not a 36 MB copy of them
        only = meshes[0]
        return SceneGeometry(
            vertices=only.vertices,
            triangles=np.asarray(only.triangles, dtype=np.int64),
            owner=np.zeros(only.triangles.shape[0], dtype=np.int32),
            names=[only.name],
            digest=_combined_digest(meshes),
        )
    offsets = np.cumsum([0] + [m.vertices.shape[0] for m in meshes[:-1]])
    return SceneGeometry(
        vertices=np.concatenate([m.vertices for m in meshes]),
        triangles=np.concatenate([m.triangles + o for m, o in zip(meshes, offsets, strict=True)]),
        owner=np.repeat(
            np.arange(len(meshes), dtype=np.int32), [m.triangles.shape[0] for m in meshes]
        ),
        names=[m.name for m in meshes],
        digest=_combined_digest(meshes),
    )


def digest_arrays(arrays: Sequence[np.ndarray]) -> bytes:
    """One digest of the arrays' contents, dtypes and shapes, hashed on two threads (hashlib
    releases the GIL): a 1M-triangle mesh's arrays in about half the time of one."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return b"".join(pool.map(_array_digest, arrays))


def _array_digest(array: np.ndarray) -> bytes:
    contiguous = np.ascontiguousarray(array)
    digest = hashlib.sha1(str((contiguous.dtype, contiguous.shape)).encode())
    digest.update(contiguous.view(np.uint8))
    return digest.digest()


def _combined_digest(meshes: list[MeshArrays]) -> bytes | None:
    """The soup's digest from its meshes' own, in order (their vertex counts included)."""
    if any(mesh.digest is None for mesh in meshes):
        return None
    combined = hashlib.sha1()
    for mesh in meshes:
        combined.update(mesh.digest)
        combined.update(str(mesh.vertices.shape).encode())
    return combined.digest()
