"""PBR maps painted like the colour: the same views, visibility and blend (no bpy).

Each view's maps (estimated from its picture, :mod:`..diffusion.maps`) are projected by the one
painting path, :func:`.paint.paint_group`, over the views the colour was painted from, so every
map sees exactly the texels the colour saw, with the same facing weights, edge rule, fill and
margin. Albedo is one three-channel layer; roughness and metallic share another (red and
green). Visibility and weights do not depend on the pictures' values, so a texel's albedo
comes from the same views, in the same proportions, as its colour.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..geometry.depth import DepthCapture
from ..geometry.mesh import SceneGeometry
from ..geometry.orbit import NamedView
from .paint import PaintTarget, ViewRequest, paint_group

#: Painting layers: three-channel images holding these maps, in channel order.
LAYERS: dict[str, tuple[str, ...]] = {"albedo": ("albedo",), "material": ("roughness", "metallic")}
#: What a one-view run paints a material over where it has no map yet: mid roughness, no metal.
MATERIAL_START = (0.5, 0.0, 0.0)


def _layer_picture(maps: dict[str, np.ndarray], names: tuple[str, ...]) -> np.ndarray:
    """One view's maps of a layer as an (H, W, 3) picture (unused channels 0)."""
    if names == ("albedo",):
        return maps["albedo"]
    first = maps[next(name for name in names if name in maps)]
    picture = np.zeros((*first.shape[:2], 3), dtype=np.float32)
    for channel, name in enumerate(names):
        if name in maps:
            picture[..., channel] = maps[name]
    return picture


def _start(target: PaintTarget, layer: str) -> np.ndarray | None:
    """What a one-view run paints a layer over: its colour texture for the albedo (the best
    guess where the run has no albedo yet), a neutral material for the rest."""
    if target.start is None:
        return None
    if layer == "albedo":
        return target.start
    return np.tile(np.asarray(MATERIAL_START, dtype=np.float32), (target.start.shape[0], 1))


def paint_maps(
    targets: list[PaintTarget],
    views: list[NamedView],
    geometry: SceneGeometry,
    estimated: dict[int, dict[str, np.ndarray]],
    *,
    fill: bool,
    margin: int,
    captures: dict[int, DepthCapture] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Each target's maps: ``albedo`` (S, S, 3) sRGB, ``roughness`` and ``metallic`` (S, S).

    ``estimated``: per view number, the maps made from that view's picture (views skipped by
    the colour pass have none, and are skipped here for the same reason). ``captures``: the
    colour pass's depth captures, reused.
    """
    wanted = {name for maps in estimated.values() for name in maps}
    results: dict[str, dict[str, np.ndarray]] = {target.name: {} for target in targets}
    for layer, names in LAYERS.items():
        if not wanted.intersection(names):
            continue
        pictures = {index: _layer_picture(maps, names) for index, maps in estimated.items()}

        def given(request: ViewRequest, pictures=pictures) -> np.ndarray:
            return pictures[request.index]

        layer_targets = [dataclasses.replace(t, start=_start(t, layer)) for t in targets]
        painted, _ = paint_group(
            layer_targets, views, geometry, given, fill=fill, margin=margin, captures=captures,
            derived=True,
        )  # fmt: skip
        for target in targets if layer == "material" else ():
            if target.start is None:  # island texels no view painted: no metal, mid roughness
                result = painted[target.name]
                unpainted = target.surface.mask & ~result.painted
                result.texture[unpainted] = MATERIAL_START
        for name, result in painted.items():
            for channel, map_name in enumerate(names):
                if map_name not in wanted:
                    continue
                texture = result.texture
                results[name][map_name] = texture if layer == "albedo" else texture[..., channel]
    return results
