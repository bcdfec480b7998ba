"""The FLUX.1 Depth backend on a real tiny random-weight ``FluxControlPipeline`` built offline,
saved with ``save_pretrained`` and loaded back through the add-on's loader."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import FluxControlPipeline
from diffusers.utils.torch_utils import randn_tensor
from safetensors.torch import save_file
from support.fake_hub import FakeHub, hub_environment

from sd_depth_texture.core.diffusion.backends import backend_of, choose
from sd_depth_texture.core.diffusion.backends.base import control_image
from sd_depth_texture.core.diffusion.backends.flux import FLUX_DEPTH
from sd_depth_texture.core.diffusion.cache import free_pipeline, load_model
from sd_depth_texture.core.diffusion.flux_tiny import build_tiny_flux_pipeline
from sd_depth_texture.core.diffusion.generate import generate
from sd_depth_texture.core.diffusion.kept_regions import keep_regions_hook
from sd_depth_texture.core.diffusion.settings import (
    GenerationSettings,
    LoraSpec,
    ModelSpec,
    looks_like_flux,
)
from sd_depth_texture.core.diffusion.sources import check_model_folder, load_source
from sd_depth_texture.core.errors import (
    CancelledError,
    ModelUnavailableError,
    SettingError,
    TextureError,
)
from sd_depth_texture.core.progress import Progress
from sd_depth_texture.defaults import (
    FLUX_DEPTH_LORA_ID,
    FLUX_DEPTH_MODEL_ID,
    FLUX_LICENCE,
    MODEL_ID,
)
from sd_depth_texture.messages import CLI, UI, word

SETTINGS = GenerationSettings(prompt="weathered bronze", steps=3, seed=7, guidance=10.0)
SIZE = (64, 96)


def make_depth(height: int = SIZE[0], width: int = SIZE[1]) -> np.ndarray:
    """A ramp plus a bump, near = bright."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    bump = np.exp(-(((x - width / 2) / 12) ** 2 + ((y - height / 2) / 12) ** 2))
    depth = 0.3 * x / (width - 1) + 0.6 * bump
    return (depth / depth.max()).astype(np.float32)


def steps_progress(seen: list[str], cancel_after: int | None = None) -> Progress:
    def on_change(_fraction: float, message: str) -> None:
        seen.append(message)
        if cancel_after is not None and len(seen) >= cancel_after:
            progress.cancel()

    progress = Progress(on_change)
    return progress


@pytest.fixture(scope="module")
def flux_dir(tiny_flux_dir: Path) -> Path:
    return tiny_flux_dir


@pytest.fixture(scope="module")
def base_dir(tiny_flux_base_dir: Path) -> Path:
    return tiny_flux_base_dir


@pytest.fixture(scope="module")
def depth_lora(tiny_flux_depth_lora: Path) -> Path:
    return tiny_flux_depth_lora


@pytest.fixture(scope="module")
def pipe(flux_dir: Path) -> FluxControlPipeline:
    return load_source(ModelSpec(source=str(flux_dir), device="cpu"), torch.float32, Progress())[0]


def load(spec: ModelSpec):
    return load_source(spec, torch.float32, Progress())


def test_the_saved_folder_loads_through_the_loader_with_its_record(flux_dir, pipe) -> None:
    index = json.loads((flux_dir / "model_index.json").read_text())
    assert index["_class_name"] == "FluxControlPipeline"
    loaded, record = load(ModelSpec(source=str(flux_dir)))
    assert isinstance(loaded, FluxControlPipeline) and backend_of(loaded) is FLUX_DEPTH
    assert (record.backend, record.pipeline, record.licence) == (
        "flux-depth",
        "FluxControlPipeline",
        FLUX_LICENCE,
    )
    assert record.loras == []
    assert pipe.transformer.config.in_channels == 128


def test_depth_becomes_the_packed_latents_of_a_near_white_rgb_image(pipe) -> None:
    depth = make_depth()
    rgb = control_image(depth)  # near = white, the same in every channel
    assert tuple(rgb.shape) == (1, 3, *SIZE)
    np.testing.assert_array_equal(rgb[0, 1].numpy(), depth)
    control = FLUX_DEPTH.conditioning(pipe, depth, SETTINGS)["control_image"]
    vae = pipe.vae
    with torch.no_grad():
        mean = vae.encode(rgb * 2 - 1).latent_dist.mean
    grid = (mean - vae.config.shift_factor) * vae.config.scaling_factor
    channels = vae.config.latent_channels
    packed = pipe._pack_latents(grid, 1, channels, SIZE[0] // 8, SIZE[1] // 8)
    torch.testing.assert_close(control, packed)  # (1, tokens, 64): beside the latents


def test_the_depth_map_steers_the_picture_and_seeds_reproduce(pipe) -> None:
    depth = make_depth()
    first = generate(pipe, depth, SETTINGS)
    assert first.shape == (*SIZE, 3) and first.dtype == np.float32
    assert first.min() >= 0.0 and first.max() <= 1.0
    np.testing.assert_array_equal(first, generate(pipe, depth, SETTINGS))
    other_seed = GenerationSettings(prompt=SETTINGS.prompt, steps=3, seed=8, guidance=10.0)
    assert np.abs(first - generate(pipe, depth, other_seed)).max() > 1e-3
    flipped = np.ascontiguousarray(depth[:, ::-1])
    assert np.abs(first - generate(pipe, flipped, SETTINGS)).max() > 1e-3


def test_the_start_is_pure_seeded_noise_and_the_scheduler_stays(pipe) -> None:
    """The transformer's first input: the seeded noise exactly, then the packed depth image;
    an SD scheduler setting does not replace FLUX's flow-matching scheduler."""
    inputs: list[torch.Tensor] = []
    handle = pipe.transformer.register_forward_pre_hook(
        lambda _module, _args, kwargs: inputs.append(kwargs["hidden_states"].clone()),
        with_kwargs=True,
    )
    ddim = GenerationSettings(prompt=SETTINGS.prompt, steps=3, seed=7, scheduler="ddim")
    try:
        generate(pipe, make_depth(), ddim)
    finally:
        handle.remove()
    assert type(pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    channels = pipe.vae.config.latent_channels
    height, width = SIZE[0] // 8, SIZE[1] // 8
    noise = randn_tensor(
        (1, channels, height, width), generator=torch.Generator().manual_seed(SETTINGS.seed)
    )
    packed = pipe._pack_latents(noise, 1, channels, height, width)
    torch.testing.assert_close(inputs[0][..., : channels * 4], packed)
    control = FLUX_DEPTH.conditioning(pipe, make_depth(), SETTINGS)["control_image"]
    torch.testing.assert_close(inputs[0][..., channels * 4 :], control)
    assert len(inputs) == SETTINGS.steps


def test_progress_rises_and_cancel_stops_within_a_step(pipe) -> None:
    seen: list[str] = []
    generate(pipe, make_depth(), SETTINGS, progress=steps_progress(seen))
    assert seen == ["Step 1/3", "Step 2/3", "Step 3/3"]
    seen.clear()
    calls: list[int] = []
    handle = pipe.transformer.register_forward_hook(lambda *_: calls.append(1))
    five = GenerationSettings(prompt=SETTINGS.prompt, steps=5, seed=1)
    try:
        with pytest.raises(CancelledError):
            generate(pipe, make_depth(), five, progress=steps_progress(seen, cancel_after=2))
    finally:
        handle.remove()
    assert seen == ["Step 1/5", "Step 2/5"] and len(calls) == 2


def test_kept_cells_end_exactly_as_the_known_picture(pipe) -> None:
    """Unpack, blend, repack: the kept half of the final latents is the known picture's."""
    known = np.zeros((*SIZE, 3), np.float32)
    known[..., 0] = 0.8
    known[..., 1] = np.linspace(0.0, 1.0, SIZE[1])[None]
    keep = np.zeros(SIZE, np.float32)
    keep[:, : SIZE[1] // 2] = 1.0
    hook = keep_regions_hook(pipe, known, keep, seed=3)
    finals: list[torch.Tensor] = []

    def recording(done: int, latents: torch.Tensor) -> torch.Tensor:
        finals.append(hook(done, latents))
        return finals[-1]

    generate(pipe, make_depth(), SETTINGS, on_latents=recording)
    vae = pipe.vae
    with torch.no_grad():
        image = torch.from_numpy(known.transpose(2, 0, 1).copy())[None] * 2 - 1
        expected = (vae.encode(image).latent_dist.mean - vae.config.shift_factor) * (
            vae.config.scaling_factor
        )
    assert finals[-1].ndim == 3  # packed tokens, as the pipeline keeps them
    final = pipe._unpack_latents(finals[-1], SIZE[0], SIZE[1], pipe.vae_scale_factor)
    half = SIZE[1] // 16
    torch.testing.assert_close(final[..., :half], expected[..., :half], atol=1e-5, rtol=0)
    assert not torch.allclose(final[..., half:], expected[..., half:], atol=1e-2)


def test_what_flux_cannot_take_is_refused_before_it_runs(pipe) -> None:
    calls: list[int] = []
    handle = pipe.transformer.register_forward_hook(lambda *_: calls.append(1))
    negative = GenerationSettings(prompt="stone", negative_prompt="blurry", steps=2)
    try:
        with pytest.raises(SettingError, match="no negative prompt") as raised:
            generate(pipe, make_depth(), negative)
        assert raised.value.key == "negative_prompt"
        with pytest.raises(TextureError, match="multiple of 16"):
            generate(pipe, make_depth(56, 64), SETTINGS)
        with pytest.raises(TextureError, match="init image"):
            generate(pipe, make_depth(), SETTINGS, init_image=np.zeros((*SIZE, 3), np.float32))
    finally:
        handle.remove()
    assert calls == []


def test_the_base_runs_with_its_depth_lora_and_records_it(base_dir, depth_lora, flux_dir) -> None:
    with pytest.raises(SettingError, match="without depth control: give the depth LoRA") as raised:
        load(ModelSpec(source=str(base_dir)))
    assert "with --depth-lora" in word(raised.value, CLI)  # each door names its own field
    assert "with 'FLUX Depth LoRA'" in word(raised.value, UI)
    base, record = load(ModelSpec(source=str(base_dir), depth_lora=str(depth_lora)))
    assert base.transformer.config.in_channels == 128  # the LoRA widened the input
    [lora] = record.loras
    assert lora["role"] == "depth control" and len(lora["sha256"]) == 64
    picture = generate(base, make_depth(), SETTINGS)
    np.testing.assert_array_equal(picture, generate(base, make_depth(), SETTINGS))
    with pytest.raises(SettingError, match="already a FLUX depth model"):
        load(ModelSpec(source=str(flux_dir), depth_lora=str(depth_lora)))


def test_wrong_loras_and_pickles_are_refused_unopened(base_dir, tiny_model_dir, tmp_path) -> None:
    pickle_lora = tmp_path / "depth.pt"
    pickle_lora.write_bytes(b"not opened")
    with pytest.raises(TextureError, match="pickle weights"):
        load(ModelSpec(source=str(base_dir), depth_lora=str(pickle_lora)))
    style_lora = tmp_path / "style.safetensors"
    save_file(
        {
            "transformer.x_embedder.lora_A.weight": torch.zeros(4, 64),
            "transformer.x_embedder.lora_B.weight": torch.zeros(32, 4),
        },
        str(style_lora),
    )
    with pytest.raises(TextureError, match="not a FLUX depth control LoRA"):
        load(ModelSpec(source=str(base_dir), depth_lora=str(style_lora)))
    for other in (str(tiny_model_dir), "random"):
        with pytest.raises(SettingError, match=r"goes with the FLUX\.1-dev base only"):
            load(ModelSpec(source=other, depth_lora=str(style_lora)))


def test_other_variants_controlnets_and_pickled_folders_are_refused(flux_dir, tmp_path) -> None:
    controlnet = {"_class_name": "ControlNetModel"}
    with pytest.raises(SettingError, match="takes the depth map itself and no ControlNet"):
        choose({"_class_name": "FluxControlPipeline"}, None, controlnet, "x")

    fill = tmp_path / "fill"
    shutil.copytree(flux_dir, fill)
    config_path = fill / "transformer" / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "in_channels": 384}))
    with pytest.raises(TextureError, match=r"inpainting \(Fill\)"):
        check_model_folder(fill, torch.float32)

    pickled = tmp_path / "pickled"
    shutil.copytree(flux_dir, pickled)
    for weights in (pickled / "transformer").glob("*.safetensors"):
        weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(TextureError, match="pickle weights"):
        check_model_folder(pickled, torch.float32)


def test_flux_from_the_hub_downloads_its_components_then_loads_offline(
    flux_dir: Path, tmp_path: Path
) -> None:
    """A Hub imitation on 127.0.0.1 serves the tiny FLUX as FLUX.1-Depth-dev, with the
    single-file checkpoint the real repository also holds at its top (never fetched)."""
    commit = "f" * 40
    card = b"---\nlicense: other\nlicense_name: flux-1-dev-non-commercial-license\n---\n"
    extras = {"flux1-depth-dev.safetensors": b"never downloaded", "README.md": card}
    server = FakeHub.from_folder(FLUX_DEPTH_MODEL_ID, commit, flux_dir, **extras)
    online = ModelSpec(source=FLUX_DEPTH_MODEL_ID, cache_dir=str(tmp_path), allow_online=True)
    with server, hub_environment(HF_HOME=str(tmp_path / "home"), HF_ENDPOINT=server.endpoint):
        pipe, record = load(online)
    downloaded = server.downloaded()
    assert isinstance(pipe, FluxControlPipeline)
    assert (record.kind, record.revision, record.licence) == ("hub", commit, FLUX_LICENCE)
    assert any(name.startswith("text_encoder_2/") for name in downloaded)
    assert any(name.startswith("tokenizer_2/") for name in downloaded)
    assert "flux1-depth-dev.safetensors" not in downloaded
    offline = ModelSpec(source=FLUX_DEPTH_MODEL_ID, cache_dir=str(tmp_path))
    with hub_environment(HF_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="1"):
        _pipe, again = load(offline)
        assert again.revision == commit
        lora = ModelSpec(source=FLUX_DEPTH_MODEL_ID, depth_lora=FLUX_DEPTH_LORA_ID)
        with pytest.raises(ModelUnavailableError, match="not cached and online access is off"):
            load(lora)


def test_the_doors_can_tell_a_flux_choice_without_torch(flux_dir, tiny_model_dir) -> None:
    assert looks_like_flux(str(flux_dir)) and looks_like_flux(FLUX_DEPTH_MODEL_ID)
    assert looks_like_flux("/any/model", depth_lora="lora.safetensors")
    assert not looks_like_flux(str(tiny_model_dir)) and not looks_like_flux(MODEL_ID)


def test_the_hub_base_without_its_depth_lora_downloads_no_weights(
    base_dir: Path, tmp_path: Path
) -> None:
    server = FakeHub.from_folder("black-forest-labs/FLUX.1-dev", "e" * 40, base_dir)
    spec = ModelSpec(
        source="black-forest-labs/FLUX.1-dev", cache_dir=str(tmp_path), allow_online=True
    )
    home = hub_environment(HF_HOME=str(tmp_path / "home"), HF_ENDPOINT=server.endpoint)
    with server, home, pytest.raises(SettingError, match="without depth control"):
        load(spec)
    fetched = server.downloaded()
    assert "transformer/config.json" in fetched
    assert not any(name.endswith(".safetensors") for name in fetched)


def test_a_style_lora_on_flux_dev_changes_the_picture_and_its_depth_lora_stays(
    base_dir: Path, depth_lora: Path, tmp_path: Path
) -> None:
    """The run's LoRAs come and go on the loaded FLUX.1-dev; its depth LoRA is the model's."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    donor = build_tiny_flux_pipeline(seed=0).transformer
    targets = ["to_q", "to_k", "to_v"]
    donor.add_adapter(LoraConfig(r=4, target_modules=targets, init_lora_weights=False))
    FluxControlPipeline.save_lora_weights(
        str(tmp_path),
        transformer_lora_layers=get_peft_model_state_dict(donor),
        weight_name="bronze.safetensors",
    )
    plain_spec = ModelSpec(source=str(base_dir), depth_lora=str(depth_lora), device="cpu")
    styled_spec = replace(plain_spec, loras=(LoraSpec(str(tmp_path / "bronze.safetensors")),))
    free_pipeline()
    try:
        plain = generate(load_model(plain_spec).pipe, make_depth(), SETTINGS)
        styled_model = load_model(styled_spec)
        assert styled_model.record.loaded is False  # the base was reused, not reloaded
        roles = [lora.get("role") for lora in styled_model.record.loras]
        assert roles == ["depth control", None]
        styled = generate(styled_model.pipe, make_depth(), SETTINGS)
        assert np.abs(styled - plain).max() > 1e-3
        np.testing.assert_array_equal(
            styled, generate(load_model(styled_spec).pipe, make_depth(), SETTINGS)
        )
        np.testing.assert_array_equal(
            plain, generate(load_model(plain_spec).pipe, make_depth(), SETTINGS)
        )
    finally:
        free_pipeline()


def test_steps_and_guidance_left_unset_take_the_models_recommended_values(pipe) -> None:
    """FLUX.1 Depth's card: 28 steps at guidance 10 (SD2-depth's 20 and 7.5 would be wrong for
    it); a value given is used as given."""
    guidance: list[float] = []

    def record_guidance(_module, _args, kwargs):
        guidance.append(float(kwargs["guidance"].flatten()[0]))

    handle = pipe.transformer.register_forward_pre_hook(record_guidance, with_kwargs=True)
    try:
        seen: list[str] = []
        unset = GenerationSettings(prompt=SETTINGS.prompt, seed=1)
        generate(pipe, make_depth(), unset, progress=steps_progress(seen))
        assert seen[-1] == "Step 28/28" and set(guidance) == {10.0}
        seen.clear(), guidance.clear()
        given = GenerationSettings(prompt=SETTINGS.prompt, seed=1, steps=2, guidance=3.5)
        generate(pipe, make_depth(), given, progress=steps_progress(seen))
        assert seen[-1] == "Step 2/2" and set(guidance) == {3.5}
    finally:
        handle.remove()
    assert FLUX_DEPTH.settle(unset).steps == 28 and FLUX_DEPTH.settle(given).steps == 2
