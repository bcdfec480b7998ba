"""Single original-layout (LDM) ``.safetensors`` checkpoints of an SD 1.5 or SDXL base with a
depth ControlNet: the family is read from the file's header alone, every wrong combination is
one line before any weights are read, and a loaded file gives exactly the picture of the same
weights loaded from a diffusers folder (SD2-depth's single file: tests/unit/test_diffusion.py)."""

from __future__ import annotations

import re
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from support.ldm_keys import SDXL_OPENCLIP_PREFIX, pipeline_to_ldm

from sd_depth_texture.core.diffusion.cache import free_pipeline, load_model
from sd_depth_texture.core.diffusion.generate import generate
from sd_depth_texture.core.diffusion.settings import GenerationSettings, ModelSpec
from sd_depth_texture.core.diffusion.tiny import (
    build_tiny_controlnet_pipeline,
    save_tiny_controlnet_model,
)
from sd_depth_texture.core.errors import TextureError
from sd_depth_texture.core.record import sha256_of_file

#: The checkpoint's weights differ from the config folder's (seed 0): what loads is the file's.
FILE_SEED = 3
FAMILIES = {"sd15": "sd15-controlnet", "sdxl": "sdxl-controlnet", "sdxl-union": "sdxl-union"}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, dict[str, Path]]:
    """Per family: the config folder (a seed-0 base), the same weights as the checkpoint saved
    as a diffusers folder (``reference``), its ControlNet and the single checkpoint file."""
    root = tmp_path_factory.mktemp("single")
    found = {}
    for family in FAMILIES:
        config, _ = save_tiny_controlnet_model(family, root / family / "config")
        reference, controlnet = save_tiny_controlnet_model(
            family, root / family / "reference", seed=FILE_SEED
        )
        checkpoint = root / family / f"{family}-base.safetensors"
        pipe = build_tiny_controlnet_pipeline(family, seed=FILE_SEED)
        save_file(pipeline_to_ldm(pipe), str(checkpoint))
        found[family] = {
            "config": config, "reference": reference, "controlnet": controlnet,
            "checkpoint": checkpoint,
        }  # fmt: skip
    return found


@pytest.fixture(autouse=True)
def nothing_loaded():
    free_pipeline()
    yield
    free_pipeline()


def spec_of(model: dict[str, Path], **changes) -> ModelSpec:
    spec = ModelSpec(
        source=str(model["checkpoint"]),
        config=str(model["config"]),
        controlnet=str(model["controlnet"]),
        device="cpu",
    )
    return replace(spec, **changes)


def header_only(path: Path, folder: Path) -> Path:
    """The file cut after its header: any weight read fails, so a message about the family or
    the combination proves none was read."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    cut = folder / path.name
    cut.write_bytes(data[: 8 + length])
    return cut


def refused(spec: ModelSpec) -> TextureError:
    with pytest.raises(TextureError) as caught:
        load_model(spec)
    return caught.value


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_single_file_gives_the_picture_of_the_same_weights_from_a_folder(models, family) -> None:
    model = models[family]
    depth = np.tile(np.linspace(0.1, 1.0, 64, dtype=np.float32), (64, 1))
    settings = GenerationSettings(prompt="weathered stone", steps=2, seed=7)
    loaded = load_model(spec_of(model))
    assert loaded.record.backend == FAMILIES[family]
    assert loaded.record.kind == "file"
    assert loaded.record.weights_sha256 == sha256_of_file(str(model["checkpoint"]))
    assert loaded.record.controlnet["source"] == str(model["controlnet"])
    from_file = generate(loaded.pipe, depth, settings)
    free_pipeline()
    from_folder = load_model(spec_of(model, source=str(model["reference"]), config=None))
    expected = generate(from_folder.pipe, depth, settings)
    np.testing.assert_array_equal(from_file, expected)
    free_pipeline()
    config_weights = load_model(spec_of(model, source=str(model["config"]), config=None))
    assert not np.array_equal(generate(config_weights.pipe, depth, settings), from_file)


@pytest.mark.parametrize(
    ("checkpoint", "controlnet", "message"),
    [
        ("sdxl", "sd15", r"is for Stable Diffusion 1\.5, the model sdxl-base.* \(SDXL\) is SDXL"),
        ("sd15", "sdxl", r"is for SDXL, the model sd15-base.* is Stable Diffusion 1\.5"),
        ("sd15", "sdxl-union", r"is for SDXL \(union\)"),
        ("sd15", None, "follows depth through a Stable Diffusion 1.5 depth ControlNet"),
    ],
)
def test_a_checkpoint_of_another_family_than_its_controlnet_is_refused_unread(
    models, tmp_path, checkpoint, controlnet, message
) -> None:
    model = models[checkpoint]
    spec = spec_of(
        model,
        source=str(header_only(model["checkpoint"], tmp_path)),
        controlnet=str(models[controlnet]["controlnet"]) if controlnet else None,
    )
    assert re.search(message, str(refused(spec)))


def test_a_config_folder_of_another_family_is_refused_unread(models, tmp_path) -> None:
    model = models["sd15"]
    spec = spec_of(
        model,
        source=str(header_only(model["checkpoint"], tmp_path)),
        config=str(models["sdxl"]["config"]),
    )
    assert "is a Stable Diffusion 1.5 checkpoint, its config folder" in str(refused(spec))
    assert "give the configs of a Stable Diffusion 1.5 model" in str(refused(spec))


def test_a_single_file_needs_its_familys_config_folder(models, tmp_path) -> None:
    model = models["sdxl"]
    error = refused(spec_of(model, config=None))
    assert "also give a config folder" in str(error)
    assert "of an SDXL model with unet/, vae/, text_encoder/, text_encoder_2/" in str(error)
    error = refused(spec_of(model, config=str(tmp_path)))
    assert "lacks unet/config.json" in str(error) and "tokenizer_2/tokenizer_config.json" in str(
        error
    )


def test_a_file_that_is_no_ldm_checkpoint_is_refused(models, tmp_path) -> None:
    other = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down.alpha": torch.ones(1)}, str(other))
    error = refused(spec_of(models["sd15"], source=str(other)))
    assert "not a Stable Diffusion checkpoint in the original (LDM) layout" in str(error)


def test_a_missing_text_tensor_is_one_error_not_a_random_layer(models, tmp_path) -> None:
    checkpoint = pipeline_to_ldm(build_tiny_controlnet_pipeline("sdxl", seed=FILE_SEED))
    del checkpoint[SDXL_OPENCLIP_PREFIX + "transformer.resblocks.1.ln_2.bias"]
    partial = tmp_path / "partial.safetensors"
    save_file(checkpoint, str(partial))
    error = refused(spec_of(models["sdxl"], source=str(partial)))
    assert "second text encoder weights in partial.safetensors do not match" in str(error)
    assert "1 missing" in str(error)
