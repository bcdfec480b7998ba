"""PBR maps from one picture with diffusers' ``MarigoldIntrinsicsPipeline`` (no bpy).

The appearance model predicts albedo (the surface colour with the lighting taken out) and a
material image whose channels hold roughness and metallicity; its ``target_properties`` say
which target and channel holds what and in which space, so they are read, not assumed. Albedo
comes back as sRGB (like every colour here); roughness and metallic as linear data in [0, 1].
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..bake.color import linear_to_srgb
from ..errors import TextureError
from .device import out_of_memory

logger = logging.getLogger(__name__)

#: The maps a run asks for -> the name the model's ``target_properties`` give them.
MODEL_NAMES = {"albedo": "albedo", "roughness": "roughness", "metallic": "metallicity"}


def _where(properties: dict, name: str) -> tuple[int, int | None, str]:
    """(target index, channel or None for all three, prediction space) of ``name``."""
    targets = list(properties.get("target_names") or [])
    if name in targets:
        space = (properties.get(name) or {}).get("prediction_space", "srgb")
        return targets.index(name), None, space
    for index, target in enumerate(targets):
        subs = (properties.get(target) or {}).get("sub_target_names") or []
        if name in subs:
            space = (properties.get(name) or {}).get("prediction_space", "linear")
            return index, subs.index(name), space
    raise KeyError(name)


def check_maps_model(pipe, wanted: tuple[str, ...], source: str) -> None:
    """Refuse a maps model that does not estimate every map asked for, in one line."""
    properties = getattr(pipe, "target_properties", None) or {}
    missing = []
    for name in wanted:
        try:
            _where(properties, MODEL_NAMES[name])
        except KeyError:
            missing.append(name)
    if missing:
        has = ", ".join(properties.get("target_names") or []) or "nothing"
        raise TextureError(
            f"The maps model {source} does not estimate {', '.join(missing)} (it estimates "
            f"{has}): choose the appearance model or fewer maps."
        )


def estimate_maps(
    pipe, picture: np.ndarray, wanted: tuple[str, ...], seed: int
) -> dict[str, np.ndarray]:
    """Each map of ``wanted`` for an (H, W, 3) sRGB picture in [0, 1], at the picture's size:
    ``albedo`` (H, W, 3) sRGB, ``roughness`` and ``metallic`` (H, W) linear."""
    image = torch.from_numpy(np.ascontiguousarray(picture[..., :3], dtype=np.float32))
    image = image.permute(2, 0, 1)[None].clamp(0.0, 1.0)
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    with out_of_memory("estimating the maps"), torch.inference_mode():
        output = pipe(image, generator=generator, output_type="np", match_input_resolution=True)
    prediction = np.asarray(output.prediction, dtype=np.float32)  # (targets, H, W, 3)
    properties = pipe.target_properties
    maps = {}
    for name in wanted:
        target, channel, space = _where(properties, MODEL_NAMES[name])
        values = prediction[target] if channel is None else prediction[target][..., channel]
        if name == "albedo" and space == "linear":
            values = linear_to_srgb(values)
        maps[name] = np.clip(values, 0.0, 1.0).astype(np.float32, copy=False)
    return maps
