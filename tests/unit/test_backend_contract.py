"""The contract every backend keeps (as diffusers' PipelineTesterMixin does for its pipelines):
a tiny random-weight model of each registered family, saved to disk and loaded through the
add-on's loader, must follow the depth, start from pure noise, keep the kept regions, reproduce
its seeds, report rising progress, stop within a step of a cancel and load safetensors only."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.utils.torch_utils import randn_tensor
from support.backends import TINY_MODELS, denoiser

from sd_depth_texture.core.diffusion.backends import backend_of, backends
from sd_depth_texture.core.diffusion.cache import free_pipeline, load_model
from sd_depth_texture.core.diffusion.generate import generate
from sd_depth_texture.core.diffusion.kept_regions import keep_regions_hook
from sd_depth_texture.core.diffusion.settings import GenerationSettings
from sd_depth_texture.core.errors import CancelledError, TextureError
from sd_depth_texture.core.progress import Progress

HEIGHT, WIDTH = 64, 96
SETTINGS = GenerationSettings(prompt="weathered red brick", steps=3, seed=5, scheduler="ddim")
NAMES = [backend.name for backend in backends()]


def test_every_registered_backend_has_a_tiny_model_here() -> None:
    assert sorted(TINY_MODELS) == sorted(NAMES)


def ramp(flip: bool = False) -> np.ndarray:
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    depth = 0.1 + 0.8 * x / (WIDTH - 1) + 0.1 * y / (HEIGHT - 1)
    return (depth[:, ::-1] if flip else depth).copy() / depth.max()


@pytest.fixture(scope="module", params=NAMES)
def model(request, tmp_path_factory):
    """(backend name, the spec, the loaded pipeline) of one family."""
    spec = TINY_MODELS[request.param](tmp_path_factory.mktemp(request.param))
    loaded = load_model(spec)
    yield request.param, spec, loaded.pipe
    free_pipeline()


def test_it_is_loaded_as_its_own_backend_and_recorded(model) -> None:
    name, spec, pipe = model
    assert backend_of(pipe).name == name
    record = load_model(spec).record
    assert record.backend == name and record.pipeline == type(pipe).__name__
    assert (record.controlnet is not None) == (spec.controlnet is not None)
    if spec.controlnet:
        assert record.controlnet["source"] == spec.controlnet


def test_the_picture_follows_the_depth_and_bad_depth_is_refused(model) -> None:
    _, _, pipe = model
    near_right, near_left = generate(pipe, ramp(), SETTINGS), generate(pipe, ramp(True), SETTINGS)
    assert near_right.shape == (HEIGHT, WIDTH, 3) and near_right.dtype == np.float32
    assert near_right.min() >= 0.0 and near_right.max() <= 1.0
    assert np.abs(near_right - near_left).mean() > 1e-3
    with pytest.raises(TextureError, match="constant"):
        generate(pipe, np.full((HEIGHT, WIDTH), 0.5, np.float32), SETTINGS)
    with pytest.raises(TextureError, match="NaN"):
        generate(pipe, np.where(ramp() > 0.5, np.nan, ramp()).astype(np.float32), SETTINGS)


def test_the_start_is_the_seeds_pure_noise(model) -> None:
    """The denoiser's first input is the seeded Gaussian itself: no image leaks into it."""
    _, _, pipe = model
    backend = backend_of(pipe)
    seen: list[torch.Tensor] = []

    def first_input(_module, args, kwargs):
        sample = args[0] if args else kwargs.get("sample", kwargs.get("hidden_states"))
        seen.append(sample.detach().clone())

    handle = denoiser(pipe).register_forward_pre_hook(first_input, with_kwargs=True)
    try:
        generate(pipe, ramp(), SETTINGS)
    finally:
        handle.remove()
    channels = pipe.vae.config.latent_channels
    first = seen[0][:1]
    first = first[:, :channels] if first.ndim == 4 else first[..., : channels * 4]
    grid = backend.unpack(pipe, first, HEIGHT, WIDTH)
    noise = randn_tensor(
        tuple(grid.shape), generator=torch.Generator().manual_seed(SETTINGS.seed)
    ) * float(getattr(pipe.scheduler, "init_noise_sigma", 1.0))  # flow matching: sigma 1
    torch.testing.assert_close(grid, noise.to(grid.dtype), atol=1e-5, rtol=1e-5)


def test_kept_cells_end_exactly_as_the_known_picture(model) -> None:
    _, _, pipe = model
    backend = backend_of(pipe)
    known = np.zeros((HEIGHT, WIDTH, 3), np.float32)
    known[..., 0], known[..., 1] = 0.8, np.linspace(0, 1, WIDTH)[None]
    keep = np.zeros((HEIGHT, WIDTH), np.float32)
    keep[:, : WIDTH // 2] = 1.0
    hook = keep_regions_hook(pipe, known, keep, seed=SETTINGS.seed)
    last: list[torch.Tensor] = []
    generate(
        pipe,
        ramp(),
        SETTINGS,
        on_latents=lambda done, lat: last.append(hook(done, lat)) or last[-1],
    )
    with torch.no_grad():
        image = torch.from_numpy(known.transpose(2, 0, 1).copy())[None] * 2 - 1
        expected = backend.encode(pipe, image)
    final = backend.unpack(pipe, last[-1], HEIGHT, WIDTH)
    half = final.shape[-1] // 2
    torch.testing.assert_close(final[..., :half], expected[..., :half], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(final[..., half:], expected[..., half:], atol=1e-2)
    # Through the flow's own argument, too: the kept half of the picture differs less.
    plain = generate(pipe, ramp(), SETTINGS)
    held = generate(pipe, ramp(), SETTINGS, kept=(known, keep))
    assert np.abs(held - plain)[:, : WIDTH // 2].mean() > 1e-3


def test_seeds_reproduce(model) -> None:
    _, _, pipe = model
    first, again = generate(pipe, ramp(), SETTINGS), generate(pipe, ramp(), SETTINGS)
    np.testing.assert_array_equal(first, again)
    other = generate(pipe, ramp(), GenerationSettings(**{**SETTINGS.__dict__, "seed": 6}))
    assert np.abs(first - other).mean() > 1e-3


def test_progress_rises_and_a_cancel_stops_within_a_step(model) -> None:
    _, _, pipe = model
    seen: list[float] = []
    generate(pipe, ramp(), SETTINGS, progress=Progress(lambda fraction, _m: seen.append(fraction)))
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) == SETTINGS.steps

    calls: list[int] = []
    progress = Progress(lambda *_: progress.cancel() if len(calls) >= 2 else None)
    handle = denoiser(pipe).register_forward_hook(lambda *_: calls.append(1))
    try:
        with pytest.raises(CancelledError):
            generate(pipe, ramp(), GenerationSettings(**{**SETTINGS.__dict__, "steps": 6}),
                     progress=progress)  # fmt: skip
    finally:
        handle.remove()
    assert len(calls) == 2  # one denoiser call per step (the guidance batch is one call)


def test_pickle_weights_are_refused_unopened(model, tmp_path: Path) -> None:
    _, spec, pipe = model
    folder = tmp_path / "copy"
    shutil.copytree(spec.source, folder)
    component = backend_of(pipe).weight_components[0]
    for weights in (folder / component).glob("*.safetensors"):
        weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(TextureError, match=r"Refusing to load .*pickle"):
        load_model(spec.__class__(**{**spec.__dict__, "source": str(folder)}))
    if spec.controlnet:
        controlnet = tmp_path / "controlnet"
        shutil.copytree(spec.controlnet, controlnet)
        for weights in controlnet.glob("*.safetensors"):
            weights.rename(weights.with_suffix(".bin"))
        with pytest.raises(TextureError, match=r"Refusing to load .*pickle"):
            load_model(spec.__class__(**{**spec.__dict__, "controlnet": str(controlnet)}))
