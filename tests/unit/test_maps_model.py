"""The maps model (no bpy): the setting's one validation, the auxiliary loader's checks and the
estimates of a real, tiny, random-weight ``MarigoldIntrinsicsPipeline``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sd_depth_texture import defaults
from sd_depth_texture.core.diffusion.auxiliary import MAPS, free_auxiliaries, load_auxiliary
from sd_depth_texture.core.diffusion.maps import check_maps_model, estimate_maps
from sd_depth_texture.core.diffusion.settings import ModelSpec
from sd_depth_texture.core.diffusion.tiny_auxiliary import build_tiny_marigold
from sd_depth_texture.core.errors import (
    AuxiliaryUnavailableError,
    SettingError,
    TextureError,
)
from sd_depth_texture.core.validation import check_maps
from sd_depth_texture.request import build_request


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("color", ("color",)),
        ("albedo", ("color", "albedo")),
        ("metallic, Albedo", ("color", "albedo", "metallic")),
        ({"roughness", "color"}, ("color", "roughness")),
        ("color,albedo,roughness,metallic", tuple(defaults.MAPS)),
    ],
)
def test_maps_are_read_in_one_order_with_the_colour_always(value, expected):
    assert check_maps(value) == expected


@pytest.mark.parametrize("value", ["", "normal", "color,,albedo", 3, ["albedo", 1]])
def test_bad_maps_are_one_setting_error(value):
    with pytest.raises(SettingError) as raised:
        check_maps(value)
    assert raised.value.key == "maps"


def test_a_request_with_maps_gets_a_maps_model_on_the_generating_models_device():
    model = ModelSpec(source="random", device="cpu", precision="fp32", cache_dir="/tmp/cache")
    request = build_request({"prompt": "x", "maps": "albedo"}, model=model)
    assert request.maps_model == ModelSpec(
        source=defaults.MAPS_MODEL_ID, device="cpu", precision="fp32", cache_dir="/tmp/cache"
    )
    plain = build_request({"prompt": "x"}, model=model)
    assert plain.maps_model is None and plain.output.maps == ("color",)
    assert request.pixel_record() != plain.pixel_record()  # a batch reruns for new maps


@pytest.fixture
def maps_folder(tmp_path):
    path = tmp_path / "marigold"
    build_tiny_marigold(seed=1).save_pretrained(path)
    yield path
    free_auxiliaries()


def test_a_folder_loads_once_and_estimates_every_map_at_the_pictures_size(maps_folder):
    spec = ModelSpec(source=str(maps_folder), device="cpu", precision="fp32")
    first = load_auxiliary(MAPS, spec)
    again = load_auxiliary(MAPS, spec)
    assert first.record.loaded and not again.record.loaded and again.pipe is first.pipe
    assert first.record.pipeline == "MarigoldIntrinsicsPipeline" and first.record.kind == "folder"

    picture = np.random.default_rng(0).random((40, 56, 3), dtype=np.float32)
    maps = estimate_maps(first.pipe, picture, ("albedo", "roughness", "metallic"), seed=5)
    assert maps["albedo"].shape == (40, 56, 3)
    assert maps["roughness"].shape == maps["metallic"].shape == (40, 56)
    for values in maps.values():
        assert values.dtype == np.float32 and values.min() >= 0.0 and values.max() <= 1.0
    # The seed decides the estimate; the map names pick channels of the model's targets.
    same = estimate_maps(first.pipe, picture, ("roughness",), seed=5)
    np.testing.assert_array_equal(same["roughness"], maps["roughness"])
    assert not np.array_equal(maps["roughness"], maps["metallic"])


def test_another_pipeline_class_is_refused_before_loading(maps_folder):
    index = maps_folder / "model_index.json"
    data = json.loads(index.read_text())
    data["_class_name"] = "StableDiffusionDepth2ImgPipeline"
    index.write_text(json.dumps(data))
    with pytest.raises(TextureError, match="not the MarigoldIntrinsicsPipeline"):
        load_auxiliary(MAPS, ModelSpec(source=str(maps_folder), device="cpu"))


def test_pickle_weights_are_refused(maps_folder):
    weights = maps_folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(TextureError, match="pickle"):
        load_auxiliary(MAPS, ModelSpec(source=str(maps_folder), device="cpu"))


def test_an_uncached_hub_model_offline_is_the_maps_models_own_error(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "cache"))
    spec = ModelSpec(source=defaults.MAPS_MODEL_ID, device="cpu", allow_online=False)
    with pytest.raises(AuxiliaryUnavailableError, match="marigold-iid-appearance"):
        load_auxiliary(MAPS, spec)


def test_a_model_without_the_maps_asked_for_is_refused():
    pipe = build_tiny_marigold()
    pipe.target_properties = {"target_names": ["albedo", "shading", "residual"]}  # lighting
    check_maps_model(pipe, ("albedo",), "lighting")
    with pytest.raises(TextureError, match="does not estimate roughness, metallic"):
        check_maps_model(pipe, ("albedo", "roughness", "metallic"), "lighting")
