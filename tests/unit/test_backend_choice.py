"""Which backend a model needs, decided from its configs before any weights load: every wrong
combination of model and ControlNet is one clear line (worded per door), and the ControlNet
sources (folder, single .safetensors beside its config) load strictly and are recorded."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from support.backends import TINY_MODELS

from sd_depth_texture.core.diffusion.backends import backend_of
from sd_depth_texture.core.diffusion.cache import free_pipeline, load_model
from sd_depth_texture.core.diffusion.generate import generate
from sd_depth_texture.core.diffusion.settings import GenerationSettings, ModelSpec
from sd_depth_texture.core.errors import TextureError
from sd_depth_texture.messages import CLI, UI, word


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, ModelSpec]:
    """The tiny model of every ControlNet family, SD2-depth and FLUX.1 Depth, saved once."""
    root = tmp_path_factory.mktemp("backends")
    names = ("sd2-depth", "sd15-controlnet", "sdxl-controlnet", "sdxl-union", "flux-depth")
    return {name: TINY_MODELS[name](root / name) for name in names}


@pytest.fixture(autouse=True)
def nothing_loaded():
    free_pipeline()
    yield
    free_pipeline()


def configs_only(spec: ModelSpec, folder: Path, **index_changes) -> str:
    """A copy of a base model with its configs and tokenizers but no weights at all: an error
    about the combination proves it came before any weights were opened."""
    source = Path(spec.source)
    for path in source.rglob("*"):
        if path.is_file() and not path.name.endswith(".safetensors"):
            target = folder / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    if index_changes:
        index = json.loads((folder / "model_index.json").read_text())
        (folder / "model_index.json").write_text(json.dumps({**index, **index_changes}))
    return str(folder)


def refused(spec: ModelSpec) -> TextureError:
    with pytest.raises(TextureError) as caught:
        load_model(spec)
    return caught.value


@pytest.mark.parametrize(
    ("base", "controlnet", "message"),
    [
        ("sd15-controlnet", "sdxl-controlnet", "is for SDXL, the model .* is Stable Diffusion 1.5"),
        ("sd15-controlnet", "sdxl-union", r"is for SDXL \(union\)"),
        ("sdxl-controlnet", "sd15-controlnet", "is for Stable Diffusion 1.5, the model .* is SDXL"),
        ("sd2-depth", "sd15-controlnet", "takes the depth map itself and no ControlNet"),
        ("flux-depth", "sdxl-controlnet", "FLUX.1 Depth takes the depth map itself"),
        ("sd15-controlnet", None, "follows depth through a Stable Diffusion 1.5 depth ControlNet"),
        ("sdxl-controlnet", None, "through an SDXL or SDXL \\(union\\) depth ControlNet"),
    ],
)
def test_a_wrong_combination_is_one_line_before_any_weights_load(
    models, tmp_path, base, controlnet, message
) -> None:
    spec = replace(
        models[base],
        source=configs_only(models[base], tmp_path / "base"),
        controlnet=models[controlnet].controlnet if controlnet else None,
    )
    error = refused(spec)
    assert re.search(message, str(error))
    cli, ui = word(error, CLI), word(error, UI)
    assert "--controlnet" in cli and "'ControlNet'" in ui and "\n" not in cli


def test_a_controlnet_with_the_random_test_model_is_refused(models) -> None:
    error = refused(ModelSpec(source="random", controlnet=models["sd15-controlnet"].controlnet))
    assert "takes the depth map itself" in str(error)


@pytest.mark.parametrize(
    ("changes", "unet_channels", "message"),
    [
        ({"_class_name": "StableDiffusionInpaintPipeline"}, None, "is an inpainting model"),
        ({}, 9, "is an inpainting model"),
        ({"_class_name": "FluxControlPipeline"}, None, "(?i)flux"),
        ({"_class_name": "KandinskyPipeline"}, None, "not a model this add-on can texture with"),
    ],
)
def test_models_no_backend_takes_are_refused_by_their_configs(
    models, tmp_path, changes, unet_channels, message
) -> None:
    spec = models["sd15-controlnet"]
    folder = Path(configs_only(spec, tmp_path / "base", **changes))
    if unet_channels:
        config = json.loads((folder / "unet" / "config.json").read_text())
        (folder / "unet" / "config.json").write_text(
            json.dumps({**config, "in_channels": unet_channels})
        )
    with pytest.raises(TextureError, match=message):
        load_model(replace(spec, source=str(folder)))


def test_a_controlnet_for_another_text_width_is_refused(models, tmp_path) -> None:
    spec = models["sd15-controlnet"]
    controlnet = tmp_path / "sd21_controlnet"
    shutil.copytree(spec.controlnet, controlnet)
    config = json.loads((controlnet / "config.json").read_text())
    (controlnet / "config.json").write_text(json.dumps({**config, "cross_attention_dim": 1024}))
    error = refused(replace(spec, controlnet=str(controlnet)))
    assert "text width 1024" in str(error)


def test_controlnet_sources_that_are_not_usable(models, tmp_path) -> None:
    spec = models["sd15-controlnet"]
    weights = Path(spec.controlnet) / "diffusion_pytorch_model.safetensors"
    alone = tmp_path / "alone" / "depth.safetensors"
    alone.parent.mkdir()
    shutil.copy(weights, alone)
    assert "needs its config.json beside it" in str(refused(replace(spec, controlnet=str(alone))))
    pickle = tmp_path / "depth.pth"
    pickle.write_bytes(b"not opened")
    assert "Refusing to load depth.pth" in str(refused(replace(spec, controlnet=str(pickle))))
    missing = refused(replace(spec, controlnet=str(tmp_path / "nope")))
    assert "ControlNet folder not found" in str(missing)
    offline = refused(replace(spec, controlnet="someone/depth-controlnet"))
    assert "ControlNet someone/depth-controlnet is not cached" in str(offline)
    unknown = tmp_path / "unknown"
    shutil.copytree(spec.controlnet, unknown)
    (unknown / "config.json").write_text(json.dumps({"_class_name": "T2IAdapter"}))
    assert "not a ControlNet this add-on knows" in str(
        refused(replace(spec, controlnet=str(unknown)))
    )


def test_a_single_file_controlnet_loads_strictly_and_is_recorded_by_its_hash(
    models, tmp_path
) -> None:
    spec = models["sd15-controlnet"]
    folder = tmp_path / "single"
    folder.mkdir()
    shutil.copy(Path(spec.controlnet) / "config.json", folder / "config.json")
    single = folder / "control_depth.safetensors"
    shutil.copy(Path(spec.controlnet) / "diffusion_pytorch_model.safetensors", single)
    loaded = load_model(replace(spec, controlnet=str(single)))
    record = loaded.record.controlnet
    assert record["kind"] == "file" and len(record["weights_sha256"]) == 64
    assert record["family"] == "sd" and record["model"] == "ControlNetModel"
    reference = load_model(spec).pipe.controlnet.state_dict()
    for key, value in loaded.pipe.controlnet.state_dict().items():
        torch.testing.assert_close(value, reference[key])


def test_sdxl_generates_a_small_view_at_its_native_size(models) -> None:
    pipe = load_model(models["sdxl-controlnet"]).pipe
    backend = backend_of(pipe)
    assert backend.native_resolution(pipe) == 64  # the tiny UNet's sample size 8 x VAE's 8
    seen: list[tuple[int, ...]] = []
    handle = pipe.unet.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape))
    depth = np.tile(np.linspace(0.1, 1.0, 48, dtype=np.float32), (32, 1))
    try:
        picture = generate(pipe, depth, GenerationSettings(prompt="stone", steps=1))
    finally:
        handle.remove()
    assert picture.shape == (32, 48, 3)
    assert seen[0][-2:] == (8, 12)  # 64 x 96 pixels: the native short side
    assert backend.generation_size(pipe, 128, 192) == (128, 192)  # larger views stay as they are


def test_a_file_that_is_no_checkpoint_is_refused_before_its_family_is_guessed(
    models, tmp_path
) -> None:
    """Single SD 1.5 and SDXL checkpoints load (tests/unit/test_single_file.py); the family
    comes from the file's header, so a file without one is refused as such."""
    spec = models["sd15-controlnet"]
    checkpoint = tmp_path / "sd15.safetensors"
    checkpoint.write_bytes(b"never read")
    for config in (None, spec.source):
        error = refused(replace(spec, source=str(checkpoint), config=config))
        assert "is corrupt or truncated" in str(error)


def test_a_hub_controlnet_is_found_in_the_cache_and_recorded_at_its_revision(
    models, tmp_path
) -> None:
    """The Hugging Face cache layout every tool shares; nothing is downloaded (offline)."""
    spec = models["sd15-controlnet"]
    revision = "0123456789abcdef0123456789abcdef01234567"
    storage = tmp_path / "cache" / "models--someone--depth-controlnet"
    shutil.copytree(spec.controlnet, storage / "snapshots" / revision)
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(revision)
    hub_spec = replace(
        spec, controlnet="someone/depth-controlnet", cache_dir=str(tmp_path / "cache")
    )
    record = load_model(hub_spec).record.controlnet
    assert record["kind"] == "hub" and record["revision"] == revision
    assert record["source"] == "someone/depth-controlnet"


def test_a_wrong_combination_on_the_hub_downloads_no_weights(models, tmp_path) -> None:
    """Only the model's two small configs are fetched before the combination is refused."""
    from support.fake_hub import FakeHub, hub_environment

    from sd_depth_texture.defaults import MODEL_ID, MODEL_REVISION

    with FakeHub.from_folder(MODEL_ID, MODEL_REVISION, Path(models["sd2-depth"].source)) as hub:
        with hub_environment(HF_HOME=str(tmp_path / "home"), HF_ENDPOINT=hub.endpoint):
            spec = ModelSpec(
                controlnet=models["sd15-controlnet"].controlnet, device="cpu", allow_online=True
            )
            error = refused(spec)
        downloaded = hub.downloaded()
    assert "takes the depth map itself" in str(error)
    assert downloaded and not any(path.endswith(".safetensors") for path in downloaded)
