"""Keep what earlier views painted while a new view is denoised (per-step latent blending).

After each denoising step the latents of the kept region are replaced by the known picture's
latents noised to the next timestep (as the original SD inpainting demos and TEXTure do), under
a soft mask, so the model generates the rest in harmony with what is kept. At the last step the
kept region is the known picture's latents themselves.

Any backend: the blend works on a (B, C, h, w) latent grid, so the pipeline's backend
(:mod:`.backends`) encodes the picture, unpacks the step's latents to that grid and packs the
blend back (FLUX packs 2x2 patches into tokens), and noises the target as its scheduler does.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as functional

from .backends import backend_of
from .device import out_of_memory


@torch.no_grad()
def keep_regions_hook(
    pipe, known: np.ndarray, keep: np.ndarray, seed: int
) -> Callable[[int, torch.Tensor], torch.Tensor]:
    """An ``on_latents`` hook that holds ``known`` (H, W, 3 sRGB) where ``keep`` (H, W) is 1."""
    backend = backend_of(pipe)
    height, width = keep.shape
    image = torch.from_numpy(np.ascontiguousarray(known[..., :3].transpose(2, 0, 1)))[None]
    with out_of_memory("encoding the parts earlier views painted"):
        known_latents = backend.encode(pipe, image.float() * 2.0 - 1.0)
    factor = width // known_latents.shape[-1]
    mask = torch.from_numpy(np.ascontiguousarray(keep, dtype=np.float32))[None, None]
    mask = functional.avg_pool2d(mask, factor)  # fraction of kept pixels per latent cell
    noise = torch.randn(known_latents.shape, generator=torch.Generator().manual_seed(seed + 1))

    def hook(steps_done: int, latents: torch.Tensor) -> torch.Tensor:
        grid = backend.unpack(pipe, latents, height, width)
        cell_mask = mask.to(device=grid.device, dtype=grid.dtype)
        target = known_latents.to(device=grid.device, dtype=grid.dtype)
        target = backend.noised(pipe, target, noise.to(target), steps_done)
        blended = cell_mask * target + (1.0 - cell_mask) * grid
        return backend.pack(pipe, blended, height, width)

    return hook
