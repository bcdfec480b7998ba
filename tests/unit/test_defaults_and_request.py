"""One home for defaults and limits, and the one validation of a request (no bpy)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sd_depth_texture import defaults
from sd_depth_texture.core.diffusion.settings import (
    GenerationSettings,
    ModelSpec,
    validate_settings,
)
from sd_depth_texture.core.errors import SettingError, TextureError
from sd_depth_texture.core.geometry.orbit import NamedView
from sd_depth_texture.core.geometry.views import View
from sd_depth_texture.core.validation import check_settings
from sd_depth_texture.messages import CLI, UI, word
from sd_depth_texture.request import OutputOptions, TextureRequest, ViewSource, build_request

GENERATE = {"generation": GenerationSettings(prompt="oak"), "model": ModelSpec()}


@pytest.mark.parametrize(
    "key, value",
    [
        ("texture_size", 0),
        ("texture_size", -1),
        ("texture_size", 100000),
        ("texture_size", 63),
        ("resolution", 99992),
        ("resolution", 100),  # not a multiple of 8
        ("steps", 0),
        ("steps", 151),
        ("seed", 2**70),
        ("seed", -1),
        ("guidance", math.nan),
        ("guidance", math.inf),
        ("guidance", -0.5),
        ("strength", 0.0),
        ("strength", 1.5),
        ("views", 0),
        ("views", 27),
        ("margin", -1),
        ("steps", True),
        ("steps", 2.5),
        ("guidance", "7"),
    ],
)
def test_every_limit_refuses_what_is_out_of_range_naming_the_option(key, value):
    """One validation, a structured error, each door's own words for the setting."""
    limit = defaults.LIMITS[key]
    with pytest.raises(SettingError) as refused:
        check_settings({key: value})
    assert refused.value.key == key and refused.value.value is value
    cli, ui = word(refused.value, CLI), word(refused.value, UI)
    assert cli.startswith(f"{limit.flag} must be")
    assert f"{limit.low:g}" in cli or str(int(limit.low)) in cli
    assert ui.startswith(f"'{limit.label}' must be")
    assert "--" not in ui
    # The builder every door calls refuses it with the same rule.
    with pytest.raises(SettingError) as built:
        build_request({"prompt": "oak", key: value}, model=ModelSpec())
    assert word(built.value, CLI) == cli


def test_limits_accept_their_range_and_pass_other_values_through():
    values = {limit.key: limit.default for limit in defaults.LIMITS.values()}
    values["prompt"] = "kept as it is"
    checked = check_settings(values)
    assert checked["prompt"] == "kept as it is"
    assert checked["steps"] == 20 and isinstance(checked["steps"], int)
    assert check_settings({"steps": 150.0})["steps"] == 150  # a whole float is fine
    for limit in defaults.LIMITS.values():
        if not limit.low_open:
            assert limit.accepted(limit.low) == limit.low
        assert limit.accepted(limit.high) == limit.high


def test_unknown_scheduler_is_refused_with_the_choices():
    with pytest.raises(SettingError) as refused:
        check_settings({"scheduler": "lms"})
    assert word(refused.value, CLI).startswith("--scheduler must be one of dpmpp, euler_a")
    assert word(refused.value, UI).startswith("'Scheduler' must be one of")


def test_generation_settings_are_checked_before_any_model_is_near():
    with pytest.raises(SettingError) as empty:
        validate_settings(GenerationSettings(prompt="  "), has_init_image=False)
    assert (
        word(empty.value, CLI) == "The prompt is empty: describe the texture you want in --prompt."
    )
    assert word(empty.value, UI).endswith("in 'Prompt'.")
    with pytest.raises(SettingError, match="strength must be"):
        validate_settings(GenerationSettings(prompt="x", strength=0.0), has_init_image=True)
    with pytest.raises(TextureError, match="leave no step"):
        validate_settings(
            GenerationSettings(prompt="x", steps=2, strength=0.3), has_init_image=True
        )


def test_a_controlnet_span_that_never_acts_names_both_settings_at_each_door():
    span = GenerationSettings(prompt="x", control_start=0.8, control_end=0.2)
    with pytest.raises(SettingError) as refused:
        validate_settings(span, has_init_image=False)
    assert word(refused.value, CLI) == (
        "--control-start (0.8) must be below --control-end (0.2): the ControlNet would never act"
    )
    assert word(refused.value, UI).startswith(
        "'ControlNet Start' (0.8) must be below 'ControlNet End' (0.2)"
    )


def _view() -> View:
    return View(np.eye(4), np.eye(4), 64, 64)


def test_a_request_names_exactly_one_view_source_and_one_picture_source():
    with pytest.raises(TextureError, match="exactly one view source"):
        TextureRequest(views=ViewSource(), **GENERATE).check()
    with pytest.raises(TextureError, match="exactly one view source"):
        TextureRequest(views=ViewSource(cameras=("",), orbit=4), **GENERATE).check()
    with pytest.raises(TextureError, match="either generates"):
        TextureRequest(views=ViewSource(cameras=("",))).check()
    picture = np.zeros((64, 64, 3), np.float32)
    with pytest.raises(TextureError, match="2 images need 2 cameras"):
        TextureRequest(views=ViewSource(cameras=("",)), pictures=(picture, picture)).check()
    with pytest.raises(SettingError, match="texture_size must be"):
        TextureRequest(
            views=ViewSource(cameras=("",)), output=OutputOptions(texture_size=1), **GENERATE
        ).check()
    with pytest.raises(SettingError) as views:
        TextureRequest(views=ViewSource(orbit=40), **GENERATE).check()
    assert word(views.value, UI).startswith("'Views' must be")
    given = ViewSource(given=(NamedView("viewport", _view()),))
    assert TextureRequest(views=given, pictures=(picture,)).check() is not None


def test_the_panel_and_command_line_settings_choose_the_view_source():
    view = _view()
    assert ViewSource.choose(1, resolution=512, view=view).given[0].view is view
    assert ViewSource.choose(1, resolution=512).cameras == ("",)
    assert ViewSource.choose(1, resolution=512, camera="Side").cameras == ("Side",)
    assert ViewSource.choose(6, resolution=512, view=view).orbit == 6
    assert ViewSource.choose(1, resolution=512, collection="Rig").collection == "Rig"
    assert not ViewSource.choose(1, resolution=512).several
    assert ViewSource.choose(6, resolution=512).several
    assert ViewSource(collection="Rig").several  # its size is known once the scene is read


def test_a_run_that_cannot_fit_in_memory_is_refused_naming_what_it_needs():
    from sd_depth_texture.core import budget

    budget.check_fits(2048, 512 * 768, available=8 * 1024**3)  # fits
    with pytest.raises(TextureError, match=r"8192x8192 texture needs about 10\.0 GB .* 4\.0 GB"):
        budget.check_fits(8192, 512 * 768, available=4 * 1024**3)
    with pytest.raises(TextureError, match=r"view of 34 million pixels needs about 6\.9 GB"):
        budget.check_fits(1024, 2048 * 16384, available=4 * 1024**3)
    assert budget.available_memory() is None or budget.available_memory() > 0


def test_the_builder_routes_every_setting_by_name_and_ignores_what_is_no_setting():
    settings = {
        "prompt": "oak", "negative_prompt": "blur", "seed": 7, "steps": 3, "guidance": 2.5,
        "scheduler": "ddim", "resolution": 256, "texture_size": 128, "margin": 4, "views": 6,
        "uv_map": "UV2", "view_prompts": False, "report": "/tmp/r.json", "output": "/tmp/o.blend",
        "command": "texture", "sources": ["x"],  # a door's other values: ignored
    }  # fmt: skip
    request = build_request(settings, targets=["A", "B"], model=ModelSpec(source="random"))
    assert request.generation == GenerationSettings(
        prompt="oak", negative_prompt="blur", seed=7, steps=3, guidance=2.5, scheduler="ddim"
    )
    assert request.views == ViewSource(resolution=256, orbit=6)
    assert request.output == OutputOptions(
        texture_size=128, margin=4, uv_map="UV2", report_path="/tmp/r.json",
        blend_path="/tmp/o.blend",
    )  # fmt: skip
    assert request.targets == ("A", "B") and request.view_prompts is False
    # Left out, or None: the defaults.
    plain = build_request({"prompt": "oak", "seed": None}, model=ModelSpec())
    assert plain.generation == GenerationSettings(prompt="oak")
    assert plain.views == ViewSource(cameras=("",)) and plain.output == OutputOptions()
    # A batch's default view is framed on each target, unless a camera or orbit is asked for.
    framed = build_request({"prompt": "x"}, model=ModelSpec(), frame_each_target=True)
    assert framed.views == ViewSource(orbit=1)
    camera = build_request({"camera": "Cam"}, model=ModelSpec(), frame_each_target=True,
                           prompt_required=False)  # fmt: skip
    assert camera.views.cameras == ("Cam",)


def test_the_same_object_twice_is_refused_before_anything_is_read():
    with pytest.raises(SettingError) as twice:
        build_request({"prompt": "oak"}, targets=["Chair", "Table", "Chair"], model=ModelSpec())
    assert word(twice.value, CLI) == "'Chair' is named twice (--object): name each object once."


def test_a_batch_template_leaves_prompt_seed_and_targets_to_each_asset():
    template = build_request(
        {"steps": 4, "seed": 99}, model=ModelSpec(), frame_each_target=True, prompt_required=False
    )
    with pytest.raises(SettingError, match="prompt is empty"):
        template.check()  # not a run by itself
    asset = template.for_asset("a chair", "", 5, ("Chair",), "/out/textures/a")
    assert asset.generation == GenerationSettings(prompt="a chair", seed=5, steps=4)
    assert asset.targets == ("Chair",) and asset.output.texture_folder == "/out/textures/a"
    # The identity for resuming: what decides pixels besides prompt, seed and targets.
    assert asset.pixel_record() == template.pixel_record()
    record = template.pixel_record()
    assert "prompt" not in record["generation"] and "seed" not in record["generation"]
    assert record["generation"]["steps"] == 4 and "device" not in record["model"]
    other = build_request(
        {"steps": 5}, model=ModelSpec(), frame_each_target=True, prompt_required=False
    )
    assert other.pixel_record() != record
