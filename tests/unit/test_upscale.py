"""Upscaling each view's picture (no bpy): the setting, the tiles, and real (tiny,
random-weight) diffusers upscalers saved and loaded through the auxiliary loader."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from sd_depth_texture import defaults
from sd_depth_texture.core.diffusion.auxiliary import UPSCALERS, free_auxiliaries, load_auxiliary
from sd_depth_texture.core.diffusion.settings import GenerationSettings, ModelSpec
from sd_depth_texture.core.diffusion.tiny_auxiliary import (
    build_tiny_latent_upscaler,
    build_tiny_marigold,
    build_tiny_x4_upscaler,
)
from sd_depth_texture.core.diffusion.upscale import tile_starts, upscale_picture
from sd_depth_texture.core.errors import CancelledError, SettingError, TextureError
from sd_depth_texture.core.progress import Progress
from sd_depth_texture.core.validation import check_setting
from sd_depth_texture.request import build_request

SETTINGS = GenerationSettings(prompt="old brick", steps=1, seed=3)


@pytest.mark.parametrize("value", [1, 2, 4])
def test_upscale_takes_one_two_or_four(value):
    assert check_setting("upscale", value) == value


@pytest.mark.parametrize("value", [0, 3, 8, 2.5, "2"])
def test_other_upscales_are_refused(value):
    with pytest.raises(SettingError, match="one of 1, 2, 4"):
        check_setting("upscale", value)


def test_an_upscaling_request_gets_the_factors_upscaler_on_the_models_device():
    model = ModelSpec(source="random", device="cpu")
    request = build_request({"prompt": "x", "upscale": 4}, model=model)
    assert request.upscale_model == ModelSpec(source=defaults.UPSCALE_MODELS[4][0], device="cpu")
    assert build_request({"prompt": "x"}, model=model).upscale_model is None


@pytest.mark.parametrize(
    ("length", "tile", "overlap"), [(64, 64, 8), (100, 48, 16), (513, 128, 32)]
)
def test_tiles_cover_the_side_and_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile == length
    assert all(b - a <= tile - overlap for a, b in itertools.pairwise(starts))


def test_the_x4_upscaler_joins_its_tiles_into_a_picture_four_times_larger():
    pipe = build_tiny_x4_upscaler()
    picture = np.random.default_rng(0).random((24, 40, 3), dtype=np.float32)
    upscaled = upscale_picture(pipe, picture, 4, SETTINGS, tile=24, overlap=8)  # 2 tiles
    assert upscaled.shape == (96, 160, 3) and upscaled.dtype == np.float32
    assert np.isfinite(upscaled).all() and upscaled.min() >= 0.0 and upscaled.max() <= 1.0
    again = upscale_picture(pipe, picture, 4, SETTINGS, tile=24, overlap=8)
    np.testing.assert_array_equal(upscaled, again)  # the seed decides


@pytest.fixture
def saved(tmp_path):
    yield tmp_path
    free_auxiliaries()


def test_the_x2_upscaler_loads_from_a_folder_and_doubles_the_picture(saved):
    build_tiny_latent_upscaler().save_pretrained(saved / "x2")
    loaded = load_auxiliary(UPSCALERS[2], ModelSpec(source=str(saved / "x2"), device="cpu"))
    assert loaded.record.pipeline == "StableDiffusionLatentUpscalePipeline"
    picture = np.random.default_rng(1).random((64, 72, 3), dtype=np.float32)  # padded to 96
    assert upscale_picture(loaded.pipe, picture, 2, SETTINGS).shape == (128, 144, 3)


def test_a_folder_of_another_pipeline_is_refused_as_an_upscaler(saved):
    build_tiny_marigold().save_pretrained(saved / "marigold")
    with pytest.raises(TextureError, match="not the StableDiffusionUpscalePipeline"):
        load_auxiliary(UPSCALERS[4], ModelSpec(source=str(saved / "marigold"), device="cpu"))


def test_upscaling_reports_each_step_and_stops_at_the_step_after_a_cancel():
    pipe = build_tiny_x4_upscaler()
    picture = np.random.default_rng(2).random((24, 40, 3), dtype=np.float32)
    fractions: list[float] = []

    def heard(fraction: float, _message: str) -> None:
        fractions.append(fraction)
        if len(fractions) == 1:
            progress.cancel()  # during the first tile: the second never starts

    progress = Progress(on_change=heard)
    settings = dataclasses.replace(SETTINGS, steps=2)
    with pytest.raises(CancelledError):
        upscale_picture(pipe, picture, 4, settings, tile=24, overlap=8, progress=progress)
    assert fractions == [pytest.approx(0.25)]  # step 1 of 2 of tile 1 of 2
