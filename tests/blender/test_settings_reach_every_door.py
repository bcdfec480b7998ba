"""Every number in the defaults table reaches every door of its group with no other line of
code: argparse's flags, the panel's scene settings, the operators' properties and the request
builder all read :data:`defaults.LIMITS` (the recipe in CONTRIBUTING.md relies on this)."""

from __future__ import annotations

import dataclasses

import bpy
import numpy as np
import pytest

from sd_depth_texture import defaults
from sd_depth_texture.cli import main as cli
from sd_depth_texture.core.diffusion.settings import ModelSpec
from sd_depth_texture.request import build_request
from sd_depth_texture.ui import properties

DOORS = {  # group -> commands and operators that must offer it
    defaults.VIEW: (["texture", "project", "depth", "batch"], ["generate", "project_image"]),
    defaults.TEXTURE: (["texture", "project", "batch"], ["generate", "project_image"]),
    defaults.GENERATION: (["texture", "batch"], ["generate"]),
    defaults.BATCH: (["batch"], []),
    defaults.NOWHERE: ([], []),
}


def flags(command: str) -> set[str]:
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    return {flag for action in commands[command]._actions for flag in action.option_strings}


def operator_properties(name: str) -> set[str]:
    return set(getattr(bpy.ops.sd_depth_texture, name).get_rna_type().properties.keys())


@pytest.mark.parametrize("limit", list(defaults.LIMITS.values()), ids=lambda limit: limit.key)
def test_each_number_is_offered_exactly_where_its_group_is(addon, limit):
    commands, operators = DOORS[limit.group]
    for command in ("texture", "project", "depth", "batch"):
        assert (limit.flag in flags(command)) == (command in commands), command
    for operator in ("generate", "project_image"):
        assert (limit.key in operator_properties(operator)) == (operator in operators), operator
    in_panel = limit.group in (defaults.VIEW, defaults.TEXTURE, defaults.GENERATION)
    scene_settings = bpy.types.Scene.bl_rna.properties["sd_depth_texture"].fixed_type
    assert (limit.key in scene_settings.properties) == in_panel


@pytest.mark.parametrize(
    "limit",
    defaults.limits_of(defaults.VIEW, defaults.TEXTURE, defaults.GENERATION),
    ids=lambda limit: limit.key,
)
def test_each_number_reaches_the_request_by_its_name(limit):
    value = limit.high if limit.integer else (limit.low + limit.high) / 2
    settings = {"prompt": "oak", limit.key: value}
    record = build_request(settings, model=ModelSpec()).settings_record()
    flat = {**record, **record["views"], **record["generation"]}
    assert flat[limit.key if limit.key != "views" else "orbit"] == value


def test_a_new_number_needs_only_its_table_row_and_the_field_that_uses_it(monkeypatch):
    """Strength has a field in the generation settings but no group: given one in the table
    (the recipe's step 1), argparse, the property factory and the builder all take it up."""
    moved = dataclasses.replace(defaults.STRENGTH, group=defaults.GENERATION)
    monkeypatch.setitem(defaults.LIMITS, "strength", moved)
    assert "--strength" in flags("texture") and "--strength" in flags("batch")
    assert "strength" in properties.numbers(defaults.GENERATION)
    args = cli.build_parser().parse_args(
        ["texture", "x.blend", "--prompt", "p", "--strength", ".5"]
    )
    request = build_request(vars(args), model=ModelSpec())
    assert request.generation.strength == 0.5


def test_colour_matching_is_offered_at_every_door_on_for_generated_views_off_for_projected(addon):
    for command in ("texture", "project", "batch"):
        assert {"--match-colors", "--no-match-colors"} <= flags(command), command
    for operator in ("generate", "project_image"):
        assert "match_colors" in operator_properties(operator), operator
    scene_settings = bpy.types.Scene.bl_rna.properties["sd_depth_texture"].fixed_type
    assert scene_settings.properties["match_colors"].default is True

    def request(command: list[str], **extra):
        args = cli.build_parser().parse_args(command)
        if command[0] == "project":
            return build_request(vars(args), pictures=(np.zeros((8, 8, 3), np.float32),))
        return build_request(vars(args), model=ModelSpec(), **extra)

    generating = ["texture", "x.blend", "--prompt", "p"]
    projecting = ["project", "x.blend", "--image", "a.png"]
    assert request(generating).colours_matched is True
    assert request([*generating, "--no-match-colors"]).colours_matched is False
    assert request(projecting).colours_matched is False
    matched = request([*projecting, "--match-colors"])
    assert matched.colours_matched is True and matched.settings_record()["match_colors"] is True
