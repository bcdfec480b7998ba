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
from sd_depth_texture.core.errors import TextureError
from sd_depth_texture.core.geometry.orbit import NamedView
from sd_depth_texture.core.geometry.views import View
from sd_depth_texture.request import OutputOptions, TextureRequest, ViewSource

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
    limit = defaults.LIMITS[key]
    with pytest.raises(TextureError) as cli_error:
        defaults.check_numbers({key: value}, "cli")
    assert str(cli_error.value).startswith(f"{limit.flag} must be")
    assert f"{limit.low:g}" in str(cli_error.value) or str(int(limit.low)) in str(cli_error.value)
    with pytest.raises(TextureError) as ui_error:
        defaults.check_numbers({key: value}, "ui")
    assert str(ui_error.value).startswith(f"'{limit.label}' must be")
    assert "--" not in str(ui_error.value)


def test_limits_accept_their_range_and_pass_other_values_through():
    values = {limit.key: limit.default for limit in defaults.LIMITS.values()}
    values["prompt"] = "kept as it is"
    checked = defaults.check_numbers(values)
    assert checked["prompt"] == "kept as it is"
    assert checked["steps"] == 20 and isinstance(checked["steps"], int)
    assert defaults.check_numbers({"steps": 150.0})["steps"] == 150  # a whole float is fine
    for limit in defaults.LIMITS.values():
        if not limit.low_open:
            assert limit.check(limit.low) == limit.low
        assert limit.check(limit.high) == limit.high


def test_unknown_scheduler_is_refused_with_the_choices():
    with pytest.raises(TextureError, match="--scheduler must be one of dpmpp, euler_a"):
        defaults.check_numbers({"scheduler": "lms"})
    with pytest.raises(TextureError, match="'Scheduler' must be one of"):
        defaults.check_scheduler("lms", "ui")


def test_generation_settings_are_checked_before_any_model_is_near():
    with pytest.raises(TextureError, match="prompt is empty"):
        validate_settings(GenerationSettings(prompt="  "), has_init_image=False)
    with pytest.raises(TextureError, match="--strength must be"):
        validate_settings(GenerationSettings(prompt="x", strength=0.0), has_init_image=True)
    with pytest.raises(TextureError, match="leave no step"):
        validate_settings(
            GenerationSettings(prompt="x", steps=2, strength=0.3), has_init_image=True
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
    with pytest.raises(TextureError, match="--texture-size must be"):
        TextureRequest(
            views=ViewSource(cameras=("",)), output=OutputOptions(texture_size=1), **GENERATE
        ).check()
    with pytest.raises(TextureError, match="'Views' must be"):
        TextureRequest(views=ViewSource(orbit=40), **GENERATE).check("ui")
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
