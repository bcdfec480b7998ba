"""The one interface every model family implements, so the flow above never branches on one.

No bpy. A :class:`Backend` says which diffusers pipeline it drives and which saved pipelines
(``model_index.json``'s ``_class_name``) and ControlNets it takes, loads them, turns the depth map
into its conditioning, describes its latent layout (channels, VAE factor, packing) for the
kept-region blend, and names its native size, recommended settings and licence.
:mod:`..generate` and :mod:`..kept_regions` ask the backend of the pipeline they are given
(:func:`.backend_of`); :mod:`..sources` asks the registry which backend a folder needs before any
weights load (:func:`.choose`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as functional

from ...errors import SettingError, TextureError
from ..settings import GenerationSettings


@dataclass(frozen=True)
class Recommended:
    """What the backend's model card recommends: the steps and guidance of a run that leaves
    them unset (:meth:`Backend.settle`), and the guide's advice."""

    steps: int
    guidance: float
    scheduler: str


class Backend:
    """One model family. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]  # recorded as ModelRecord.backend, e.g. "sd2-depth"
    label: ClassVar[str]  # what messages call the family, e.g. "SD2-depth"
    pipeline_class: ClassVar[type]
    base_classes: ClassVar[frozenset[str]]  # model_index.json _class_name values it takes
    #: The ControlNet kind it needs (:func:`.controlnet_kind`), or None: it takes none.
    controlnet_kind: ClassVar[str | None] = None
    licence: ClassVar[str | None] = None  # the family's usual licence when the card names none
    recommended: ClassVar[Recommended] = Recommended(20, 7.5, "dpmpp")
    #: Components whose weights load, and tokenizer folders, in a diffusers folder.
    weight_components: ClassVar[tuple[str, ...]] = ("unet", "vae", "text_encoder")
    tokenizers: ClassVar[tuple[str, ...]] = ("tokenizer",)
    #: True: a view smaller than the native size is generated at the native size and scaled
    #: back (SDXL makes broken pictures well below it); False: at the view's own size.
    upscale_to_native: ClassVar[bool] = False
    #: Whether ``generate(init_image=...)`` (image-to-image) works with this pipeline.
    image_to_image: ClassVar[bool] = False
    #: The one scheduler the family runs with (recorded as such; the scheduler setting does
    #: not apply), or None: the user's choice of :data:`~sd_depth_texture.defaults.SCHEDULERS`.
    own_scheduler: ClassVar[str | None] = None
    #: Whether the pipeline takes a negative prompt (guidance-distilled models do not).
    takes_negative_prompt: ClassVar[bool] = True
    #: A line every door shows where this family's model is chosen (a licence that limits use).
    licence_notice: ClassVar[str | None] = None

    # ---- checks ---------------------------------------------------------------------------

    def settle(self, settings: GenerationSettings) -> GenerationSettings:
        """Steps and guidance left unset (None: the command line, the batch and scripts unless
        given) take this family's recommended values."""
        steps, guidance = settings.steps, settings.guidance
        return replace(
            settings,
            steps=self.recommended.steps if steps is None else steps,
            guidance=self.recommended.guidance if guidance is None else guidance,
        )

    def check_settings(self, settings: GenerationSettings) -> None:
        """Refuse what this family cannot take, before the pipeline runs."""
        if settings.negative_prompt and not self.takes_negative_prompt:
            raise SettingError(
                "negative_prompt", settings.negative_prompt, "empty",
                f"{self.label} takes no negative prompt (it is guidance-distilled): "
                "leave {name} empty",
            )  # fmt: skip

    #: Config files (beside ``model_index.json``) :meth:`check_depth_lora` reads.
    depth_lora_configs: ClassVar[tuple[str, ...]] = ()

    def check_depth_lora(
        self, where: str, configs: dict[str, dict[str, Any]], depth_lora: Any | None
    ) -> None:
        """A depth control LoRA (:mod:`..depth_loras`) fits only FLUX.1-dev: refuse it here.

        ``configs``: the model's :attr:`depth_lora_configs` by name (from a folder, or fetched
        from the Hub before any weights download)."""
        if depth_lora is not None:
            raise SettingError(
                "depth_lora", str(depth_lora.path), "empty",
                f"{where} is a {self.label} model: a depth LoRA goes with the FLUX.1-dev base "
                "only; leave {name} empty",
            )  # fmt: skip

    def record_licence(self, card_licence: str | None) -> str | None:
        """The licence to record: what the model card names (None where it names none)."""
        return card_licence

    # ---- loading --------------------------------------------------------------------------

    def check_base(self, folder: Path, unet_config: dict[str, Any]) -> None:
        """Refuse a saved pipeline of the right class but the wrong make (before weights load)."""

    def from_pretrained(self, folder: Path, dtype: torch.dtype, variant: str | None, **parts):
        """The pipeline from a checked diffusers folder; ``parts`` e.g. ``controlnet=``."""
        return self.pipeline_class.from_pretrained(
            str(folder),
            use_safetensors=True,
            local_files_only=True,
            dtype=dtype,
            variant=variant,
            **self.extra_parts(),
            **parts,
        )

    def extra_parts(self) -> dict[str, Any]:
        """Components saved pipelines may name that this backend never needs (set to None)."""
        return {}

    # ---- sizes ----------------------------------------------------------------------------

    def vae_scale_factor(self, pipe) -> int:
        return int(pipe.vae_scale_factor)

    def size_multiple(self, pipe) -> int:
        """Picture sides must be multiples of this (one latent cell, times any packing)."""
        return self.vae_scale_factor(pipe)

    def native_resolution(self, pipe) -> int:
        """The short side the model was trained at: the UNet's sample size times the VAE's
        factor (1024 for SDXL, 512 for SD 1.5 and SD2-depth; smaller for test models)."""
        return int(pipe.unet.config.sample_size) * self.vae_scale_factor(pipe)

    def generation_size(self, pipe, height: int, width: int) -> tuple[int, int]:
        """The size to generate a (height, width) view at (see :attr:`upscale_to_native`)."""
        native = self.native_resolution(pipe)
        if not self.upscale_to_native or min(height, width) >= native:
            return height, width
        multiple = self.size_multiple(pipe)
        scale = native / min(height, width)
        return tuple(  # type: ignore[return-value]
            max(multiple, round(side * scale / multiple) * multiple) for side in (height, width)
        )

    # ---- one call -------------------------------------------------------------------------

    def scheduler(self, pipe, name: str):
        """The sampler ``name`` (:data:`...defaults.SCHEDULERS`) built from the model's own noise
        schedule; a family with :attr:`own_scheduler` keeps the pipeline's."""
        if self.own_scheduler is not None:
            return pipe.scheduler
        from ..schedulers import make_scheduler

        return make_scheduler(pipe, name)

    def text_arguments(self, pipe, settings: GenerationSettings) -> dict[str, Any]:
        """The prompt and guidance keyword arguments (FLUX has no negative prompt)."""
        call = {"prompt": settings.prompt, "guidance_scale": float(settings.guidance)}
        if self.takes_negative_prompt:
            call["negative_prompt"] = settings.negative_prompt or None
        return call

    def conditioning(self, pipe, depth: np.ndarray, settings: GenerationSettings) -> dict[str, Any]:
        """The pipeline's keyword arguments that carry ``depth`` ((H, W) in [0, 1], near = 1)."""
        raise NotImplementedError

    def start(
        self, pipe, height: int, width: int, init_image: torch.Tensor | None, strength: float
    ) -> dict[str, Any]:
        """The keyword arguments that set the start: pure noise, or ``init_image`` (B,3,H,W)."""
        if init_image is not None:
            raise TextureError(
                f"Image-to-image (an init image) is not available with {self.label}: texturing "
                "runs start from pure noise"
            )
        return {"height": height, "width": width}

    @contextlib.contextmanager
    def pure_noise(self, pipe) -> Iterator[None]:
        """Around a call without an init image: make its start pure noise (most already do)."""
        yield

    # ---- latents, for the kept-region blend ----------------------------------------------

    def encode(self, pipe, image: torch.Tensor) -> torch.Tensor:
        """(1,3,H,W) in [-1, 1] -> the latents the denoiser sees, as a (1,C,h,w) grid."""
        vae = pipe.vae
        upcast = bool(getattr(vae.config, "force_upcast", False)) and vae.dtype == torch.float16
        dtype = torch.float32 if upcast else vae.dtype
        with _vae_as(vae, dtype):
            # The pipeline's execution device, not the VAE's: with CPU offload the VAE waits in
            # host memory (or on the meta device) until its hook moves it.
            device = pipe._execution_device
            latents = vae.encode(image.to(device=device, dtype=dtype)).latent_dist.mean
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return (latents - shift) * vae.config.scaling_factor

    def unpack(self, pipe, latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The step's latents as a (B,C,h,w) grid (FLUX packs 2x2 patches into tokens)."""
        return latents

    def pack(self, pipe, grid: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Inverse of :meth:`unpack`."""
        return grid

    def noised(
        self, pipe, target: torch.Tensor, noise: torch.Tensor, steps_done: int
    ) -> torch.Tensor:
        """``target`` noised to the level the latents have after ``steps_done`` steps."""
        timesteps = pipe.scheduler.timesteps
        if steps_done >= len(timesteps):
            return target
        return pipe.scheduler.add_noise(target, noise, timesteps[steps_done : steps_done + 1])


@contextlib.contextmanager
def _vae_as(vae, dtype: torch.dtype) -> Iterator[None]:
    """Run the VAE in ``dtype`` for one call (SDXL's VAE overflows in fp16) and put it back."""
    original = vae.dtype
    if original == dtype:
        yield
        return
    vae.to(dtype=dtype)
    try:
        yield
    finally:
        vae.to(dtype=original)


def control_image(depth: np.ndarray) -> torch.Tensor:
    """A depth ControlNet's input: (1,3,H,W) RGB in [0, 1], near = white (as DPT/MiDaS give)."""
    tensor = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))
    return tensor[None, None].expand(1, 3, *depth.shape).contiguous()


def resize(tensor: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B,C,H,W) resized: bilinear up, area-averaged down (no aliasing)."""
    if tuple(tensor.shape[-2:]) == (height, width):
        return tensor
    if height <= tensor.shape[-2] and width <= tensor.shape[-1]:
        return functional.interpolate(tensor, size=(height, width), mode="area")
    return functional.interpolate(
        tensor, size=(height, width), mode="bilinear", align_corners=False
    )
