"""Keep what earlier views painted while a new view is denoised (per-step latent blending).

After each denoising step the latents of the kept region are replaced by the known picture's
latents noised to the next timestep (as the original SD inpainting demos and TEXTure do), under
a soft mask, so the model generates the rest in harmony with what is kept. At the last step the
kept region is the known picture's latents themselves.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as functional

from .device import out_of_memory


@torch.no_grad()
def keep_regions_hook(
    pipe, known: np.ndarray, keep: np.ndarray, seed: int
) -> Callable[[int, torch.Tensor], torch.Tensor]:
    """An ``on_latents`` hook that holds ``known`` (H, W, 3 sRGB) where ``keep`` (H, W) is 1."""
    vae = pipe.vae
    image = torch.from_numpy(np.ascontiguousarray(known[..., :3].transpose(2, 0, 1)))[None]
    # The pipeline's execution device, not the VAE's: with CPU offload the VAE waits in host
    # memory (or on the meta device) until its hook moves it.
    image = image.to(device=pipe._execution_device, dtype=vae.dtype) * 2.0 - 1.0
    with out_of_memory("encoding the parts earlier views painted"):
        known_latents = vae.encode(image).latent_dist.mean * vae.config.scaling_factor
    factor = image.shape[-1] // known_latents.shape[-1]
    mask = torch.from_numpy(np.ascontiguousarray(keep, dtype=np.float32))[None, None]
    mask = functional.avg_pool2d(mask, factor)  # fraction of kept pixels per latent cell
    noise = torch.randn(known_latents.shape, generator=torch.Generator().manual_seed(seed + 1))

    def hook(steps_done: int, latents: torch.Tensor) -> torch.Tensor:
        cell_mask = mask.to(device=latents.device, dtype=latents.dtype)
        target = known_latents.to(device=latents.device, dtype=latents.dtype)
        timesteps = pipe.scheduler.timesteps
        if steps_done < len(timesteps):
            step = timesteps[steps_done : steps_done + 1]
            target = pipe.scheduler.add_noise(target, noise.to(target), step)
        return cell_mask * target + (1.0 - cell_mask) * latents

    return hook
