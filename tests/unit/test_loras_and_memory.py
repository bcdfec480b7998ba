"""LoRAs on the cached base, precision, CPU offload and VAE tiling (no bpy): the real
diffusers pipeline with tiny random weights and LoRAs made with peft in the test."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from support.loras import make_lora, make_lora_for_another_base, make_lora_with_missing_layers

from sd_depth_texture.core.diffusion.cache import free_pipeline, load_model
from sd_depth_texture.core.diffusion.generate import generate
from sd_depth_texture.core.diffusion.settings import (
    GenerationSettings,
    LoraSpec,
    ModelSpec,
    lora_specs,
    split_lora,
)
from sd_depth_texture.core.errors import SettingError, TextureError
from sd_depth_texture.messages import CLI, UI, word
from sd_depth_texture.request import build_request

DEPTH = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (64, 1))
SETTINGS = GenerationSettings(prompt="oak bark", steps=2, seed=5)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sd_depth_texture.core.diffusion.tiny import build_tiny_pipeline

    folder = tmp_path_factory.mktemp("tiny_sd2_depth")
    build_tiny_pipeline(seed=0).save_pretrained(str(folder), safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def loras(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("loras")
    wood = make_lora(folder / "wood.safetensors", seed=1)
    return {
        "wood": wood,
        "stone": make_lora(folder / "stone.safetensors", seed=2),
        "other_base": make_lora_for_another_base(folder / "sd15_style.safetensors", seed=3),
        "missing_layers": make_lora_with_missing_layers(wood, folder / "bigger.safetensors"),
    }


@pytest.fixture
def base(model_dir: Path):
    """The spec of the tiny model on the CPU, loaded fresh, released afterwards."""
    free_pipeline()
    yield ModelSpec(source=str(model_dir), device="cpu")
    free_pipeline()


def picture(spec: ModelSpec, settings: GenerationSettings = SETTINGS, depth=DEPTH):
    loaded = load_model(spec)
    return generate(loaded.pipe, depth, settings), loaded


def with_loras(spec: ModelSpec, *pairs: tuple[Path, float]) -> ModelSpec:
    return ModelSpec(**{**spec.__dict__, "loras": lora_specs((str(p), s) for p, s in pairs)})


# ---- Reading --lora FILE[:WEIGHT] -------------------------------------------------------------


def test_a_weight_follows_the_last_colon_after_the_suffix_only() -> None:
    assert split_lora("wood.safetensors:0.6") == ("wood.safetensors", "0.6")
    assert split_lora("wood.safetensors") == ("wood.safetensors", None)
    assert split_lora(r"C:\loras\wood.safetensors") == (r"C:\loras\wood.safetensors", None)
    assert split_lora(r"C:\loras\wood.safetensors:-1.5") == (r"C:\loras\wood.safetensors", "-1.5")
    (spec,) = lora_specs(["~/wood.safetensors:0.25"])
    assert spec == LoraSpec(os.path.expanduser("~/wood.safetensors"), 0.25)
    assert lora_specs([("a.safetensors", 1)])[0].scale == 1.0


@pytest.mark.parametrize(
    "given, words",
    [
        (["wood.safetensors:strong"], "must be a number from -8 to 8, got 'strong'"),
        (["wood.safetensors:9"], "must be a number from -8 to 8, got 9.0"),
        (["wood.safetensors:nan"], "got nan"),
        ([("wood.safetensors", float("inf"))], "got inf"),
        (["wood.safetensors", "./wood.safetensors:0.5"], "is named twice"),
        ([("", 1.0)], "names no file"),
    ],
)
def test_a_bad_lora_setting_is_one_line_worded_per_door(given, words: str) -> None:
    with pytest.raises(SettingError) as refused:
        build_request({"prompt": "oak", "loras": given}, model=ModelSpec())
    cli, ui = word(refused.value, CLI), word(refused.value, UI)
    assert words in cli and "--lora" in cli and "'LoRAs'" in ui
    assert "\n" not in cli


def test_the_request_records_its_loras_and_memory_settings() -> None:
    spec = ModelSpec(offload="model", vae_tiling="on", precision="bf16")
    request = build_request({"prompt": "oak", "loras": ["/l/wood.safetensors:0.5"]}, model=spec)
    assert request.model.loras == (LoraSpec("/l/wood.safetensors", 0.5),)
    model = request.settings_record()["model"]
    assert model["loras"] == [{"path": "/l/wood.safetensors", "scale": 0.5}]
    assert (model["offload"], model["vae_tiling"], model["precision"]) == ("model", "on", "bf16")
    other = build_request({"prompt": "oak", "loras": ["/l/wood.safetensors:0.6"]}, model=spec)
    assert other.pixel_record() != request.pixel_record()  # a batch resumes only the same LoRAs


@pytest.mark.parametrize(
    "key, value", [("offload", "gpu"), ("vae_tiling", "yes"), ("precision", "fp8")]
)
def test_memory_choices_are_checked_by_the_one_validation(key: str, value: str) -> None:
    with pytest.raises(SettingError) as refused:
        build_request({"prompt": "oak"}, model=ModelSpec(**{key: value}))
    assert word(refused.value, CLI).startswith(f"--{key.replace('_', '-')} must be one of")


# ---- Files, checked before anything loads -----------------------------------------------------


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".ckpt", ".pth"])
def test_a_pickle_lora_is_refused_unopened(base, tmp_path: Path, suffix, monkeypatch) -> None:
    path = tmp_path / f"style{suffix}"
    path.write_bytes(pickle.dumps({"lora": 1}))
    for module, name in ((torch, "load"), (pickle, "load"), (pickle, "loads")):
        monkeypatch.setattr(module, name, lambda *_a, **_k: pytest.fail("a pickle was opened"))
    with pytest.raises(TextureError, match=f"Refusing to load style{suffix}: pickle"):
        load_model(with_loras(base, (path, 1.0)))


def test_files_that_are_no_lora_are_refused_before_the_model_loads(base, tmp_path, loras) -> None:
    loaded = load_model(base)
    corrupt = tmp_path / "cut.safetensors"
    corrupt.write_bytes(loras["wood"].read_bytes()[:100])
    empty = tmp_path / "empty.safetensors"
    from safetensors.torch import save_file

    save_file({}, str(empty))
    (tmp_path / "folder.safetensors").mkdir()
    cases = {
        tmp_path / "absent.safetensors": "LoRA file not found",
        tmp_path / "folder.safetensors": "is a folder",
        corrupt: "unreadable or not a safetensors file",
        empty: "holds no tensors",
        tmp_path / "notes.txt": "is not a .safetensors file",
    }
    for path, words in cases.items():
        with pytest.raises(TextureError, match=words):
            load_model(with_loras(ModelSpec(source="not/loaded-ever"), (path, 1.0)))
        again = load_model(base)  # the refused call changed nothing: the base is still there
        assert again.pipe is loaded.pipe and again.record.loaded is False


# ---- Applying, reusing the base, reproducing --------------------------------------------------


def test_a_lora_changes_the_texture_reproduces_and_never_reloads_the_base(base, loras) -> None:
    plain, first = picture(base)
    assert first.record.loaded is True and first.record.loras == []
    wood, with_wood = picture(with_loras(base, (loras["wood"], 1.0)))
    assert with_wood.pipe is first.pipe and with_wood.record.loaded is False
    assert np.abs(wood - plain).max() > 0.01  # the LoRA changes the picture
    again, _ = picture(with_loras(base, (loras["wood"], 1.0)))
    np.testing.assert_array_equal(again, wood)  # same seed, same LoRA: same picture
    (entry,) = with_wood.record.loras
    assert entry == {
        "name": "wood.safetensors",
        "sha256": hashlib.sha256(loras["wood"].read_bytes()).hexdigest(),
        "scale": 1.0,
    }
    half, _ = picture(with_loras(base, (loras["wood"], 0.5)))
    assert not np.array_equal(half, wood) and not np.array_equal(half, plain)
    both, with_both = picture(with_loras(base, (loras["wood"], 0.5), (loras["stone"], 1.0)))
    assert with_both.pipe is first.pipe and with_both.record.loaded is False
    assert [lora["name"] for lora in with_both.record.loras] == [
        "wood.safetensors",
        "stone.safetensors",
    ]
    assert not np.array_equal(both, half)
    back, without = picture(base)  # LoRAs taken off: exactly the base again
    np.testing.assert_array_equal(back, plain)
    assert without.pipe is first.pipe and without.pipe.get_list_adapters() == {}


@pytest.mark.parametrize(
    "which, words",
    [
        ("other_base", "does not fit this model: its layers have other sizes"),
        ("missing_layers", "does not fit this model: 32 of its 96 tensors match no layer"),
    ],
)
def test_a_lora_for_another_base_is_one_error_and_leaves_the_pipeline_clean(
    base, loras, which: str, words: str
) -> None:
    plain, first = picture(base)
    with pytest.raises(TextureError, match=words) as refused:
        load_model(with_loras(base, (loras["wood"], 1.0), (loras[which], 1.0)))
    assert "\n" not in str(refused.value)
    assert first.pipe.get_list_adapters() in ({}, {"unet": []})
    after, loaded = picture(base)
    assert loaded.pipe is first.pipe and loaded.record.loaded is False
    np.testing.assert_array_equal(after, plain)  # no LoRA left behind, not even the good one
    wood, _ = picture(with_loras(base, (loras["wood"], 1.0)))  # and LoRAs apply again
    assert not np.array_equal(wood, plain)


# ---- Precision, offload, VAE tiling -----------------------------------------------------------


def test_bf16_runs_on_the_cpu_and_is_recorded(model_dir: Path) -> None:
    free_pipeline()
    try:
        result, loaded = picture(ModelSpec(source=str(model_dir), device="cpu", precision="bf16"))
        assert loaded.pipe.unet.dtype == torch.bfloat16
        assert loaded.record.precision == "bfloat16" and loaded.record.offload == "none"
        assert result.dtype == np.float32 and np.isfinite(result).all()
    finally:
        free_pipeline()


@pytest.mark.parametrize("offload", ["model", "sequential"])
def test_offload_without_a_gpu_is_one_line_before_loading(base, offload: str) -> None:
    loaded = load_model(base)
    with pytest.raises(SettingError) as refused:
        load_model(ModelSpec(source="never/loaded", device="cpu", offload=offload))
    assert word(refused.value, CLI).startswith(f"--offload {offload} moves the model between")
    assert "'CPU Offload'" in word(refused.value, UI)
    again = load_model(base)  # refused before the loaded pipeline was released
    assert again.pipe is loaded.pipe and again.record.loaded is False


def test_vae_tiling_reaches_the_vae_without_reloading_and_is_recorded(base) -> None:
    """The tiny VAE's tile is 64 px: a 128 px picture is decoded in tiles when tiling is on."""
    depth = np.tile(np.linspace(0.0, 1.0, 128, dtype=np.float32), (128, 1))
    off = ModelSpec(**{**base.__dict__, "vae_tiling": "off"})
    on = ModelSpec(**{**base.__dict__, "vae_tiling": "on"})
    whole, first = picture(off, depth=depth)
    assert first.pipe.vae.use_tiling is False and first.record.vae_tiling is False
    tiled, second = picture(on, depth=depth)
    assert second.pipe is first.pipe and second.record.loaded is False
    assert second.pipe.vae.use_tiling is True and second.record.vae_tiling is True
    assert not np.array_equal(tiled, whole)  # tiles blend: the decode really changed
    auto, third = picture(base, depth=depth)  # auto on the CPU: whole
    assert third.record.vae_tiling is False
    np.testing.assert_array_equal(auto, whole)


def test_a_lora_that_is_part_of_the_model_stays_on(loras) -> None:
    """FLUX.1 dev carries its depth control LoRA as part of the model: the run's LoRAs come
    and go (and a refused one is taken off) around it, never with it."""
    from sd_depth_texture.core.diffusion.lora import apply_loras, base_adapters_of, check_lora_files
    from sd_depth_texture.core.diffusion.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline()
    pipe.load_lora_weights(str(loras["stone"]), adapter_name="depth")
    base = base_adapters_of(pipe)
    assert base == ("depth",)
    own = generate(pipe, DEPTH, SETTINGS)
    wood = check_lora_files((LoraSpec(str(loras["wood"])),))
    applied = apply_loras(pipe, wood, (), base)
    assert not np.array_equal(generate(pipe, DEPTH, SETTINGS), own)
    assert set(pipe.get_active_adapters()) == {"depth", "lora0"}
    applied = apply_loras(pipe, (), applied, base)
    np.testing.assert_array_equal(generate(pipe, DEPTH, SETTINGS), own)
    other = check_lora_files((LoraSpec(str(loras["other_base"])),))
    with pytest.raises(TextureError, match="does not fit"):
        apply_loras(pipe, other, applied, base)
    assert pipe.get_list_adapters() == {"unet": ["depth"]}
    np.testing.assert_array_equal(generate(pipe, DEPTH, SETTINGS), own)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_loras_apply_to_the_controlnet_families_and_others_do_not_fit(
    family: str, loras, tmp_path: Path
) -> None:
    """The same LoRA code drives every backend with diffusers' LoRA mixin: a LoRA made for the
    family changes its picture and comes off exactly; one for a wider cross-attention (as SD2's
    1024 is to SD 1.5's 768; the tiny SD 1.5 and SD2 share their sizes) is refused."""
    from support.loras import make_lora

    from sd_depth_texture.core.diffusion.lora import apply_loras, check_lora_files
    from sd_depth_texture.core.diffusion.tiny import build_tiny_controlnet_pipeline

    pipe = build_tiny_controlnet_pipeline(family)
    own = make_lora(tmp_path / f"{family}.safetensors", seed=4, unet=pipe.unet)
    plain = generate(pipe, DEPTH, SETTINGS)
    applied = apply_loras(pipe, check_lora_files((LoraSpec(str(own)),)), ())
    assert not np.array_equal(generate(pipe, DEPTH, SETTINGS), plain)
    applied = apply_loras(pipe, (), applied)
    np.testing.assert_array_equal(generate(pipe, DEPTH, SETTINGS), plain)
    with pytest.raises(TextureError, match="does not fit this model"):
        apply_loras(pipe, check_lora_files((LoraSpec(str(loras["other_base"])),)), applied)
    np.testing.assert_array_equal(generate(pipe, DEPTH, SETTINGS), plain)
