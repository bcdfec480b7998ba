"""Meshes as arrays: one object's evaluated mesh in world space, and the scene's triangle soup.

No bpy: the Blender side fills these from evaluated meshes (:mod:`..blender.scene`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class MeshArrays:
    """One evaluated mesh object (modifiers applied) in world space."""

    name: str
    vertices: np.ndarray  # (V, 3) float64, world space
    triangles: np.ndarray  # (F, 3) int64 vertex indices
    uv: np.ndarray | None  # (L, 2) float64 per-corner UVs of the active UV map
    uv_triangles: np.ndarray  # (F, 3) int64 corner indices, same triangle order


@dataclass
class SceneGeometry:
    """All visible meshes as one triangle soup, remembering which object each triangle is from."""

    vertices: np.ndarray
    triangles: np.ndarray
    owner: np.ndarray  # (F,) index into ``names``
    names: list[str]


def scene_geometry(meshes: list[MeshArrays]) -> SceneGeometry:
    """Concatenate meshes into one soup so other objects occlude the target as they do on screen."""
    if not meshes:
        empty = np.zeros((0, 3))
        return SceneGeometry(empty, empty.astype(np.int64), np.zeros(0, dtype=np.int32), [])
    offsets = np.cumsum([0] + [m.vertices.shape[0] for m in meshes[:-1]])
    return SceneGeometry(
        vertices=np.concatenate([m.vertices for m in meshes]),
        triangles=np.concatenate([m.triangles + o for m, o in zip(meshes, offsets, strict=True)]),
        owner=np.repeat(
            np.arange(len(meshes), dtype=np.int32), [m.triangles.shape[0] for m in meshes]
        ),
        names=[m.name for m in meshes],
    )
