"""What the operators do between calls and what their messages say, in the real Blender.

Headless facts these tests rest on (bpy 5.0 and 4.2): operators called from Python never store
or restore last-used properties (``WindowManager.operator_properties_last`` stays at the
defaults), and ``'INVOKE_DEFAULT'`` of a modal operator is refused. So ``SKIP_SAVE`` is
checked on the properties themselves, and the behaviour it protects (a value given once, the
panel's afterwards) through the operator's own choice between the two.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import bpy
import numpy as np
import pytest
from support.fingerprints import scene_fingerprint

from sd_depth_texture.blender import images, sample
from sd_depth_texture.core.diffusion import cache
from sd_depth_texture.core.errors import TextureError
from sd_depth_texture.defaults import MODEL_ID
from sd_depth_texture.ui import operators
from sd_depth_texture.ui.panel import SDT_PT_main

RESOLUTION = 128
TEXTURE = 64
FLAG = re.compile(r"(?<![\w-])--[a-z]")  # a command-line option such as --camera


def panel():
    return bpy.context.scene.sd_depth_texture


def generate(model_dir, report=None, **arguments) -> dict | None:
    """Generate with small sizes; returns the run's report when ``report`` is a path."""
    arguments.setdefault("resolution", RESOLUTION)
    arguments.setdefault("texture_size", TEXTURE)
    arguments.setdefault("steps", 1)
    arguments["model"] = str(model_dir)
    if report is not None:
        arguments["report_path"] = str(report)
    assert bpy.ops.sd_depth_texture.generate(**arguments) == {"FINISHED"}
    return json.loads(report.read_text()) if report is not None else None


@pytest.mark.parametrize(
    "operator", ["generate", "project_image", "capture_depth"], ids=lambda name: name
)
def test_every_operator_setting_is_skip_save(operator, sample_scene):
    properties = getattr(bpy.ops.sd_depth_texture, operator).get_rna_type().properties
    names = [prop.identifier for prop in properties if prop.identifier != "rna_type"]
    assert names
    assert [name for name in names if not properties[name].is_skip_save] == []


def test_python_calls_store_no_last_used_settings(sample_scene, tiny_model_dir):
    """What the bpy module allows: nothing a script passes becomes the next call's default."""
    generate(tiny_model_dir, seed=11, prompt="given once")
    last = bpy.context.window_manager.operator_properties_last("sd_depth_texture.generate")
    assert not last.is_property_set("seed") and last.seed == 0


def test_a_value_given_to_one_call_does_not_stick_into_the_next(
    sample_scene, tiny_model_dir, tmp_path
):
    panel().prompt, panel().seed, panel().steps = "panel prompt", 3, 1
    given = generate(tiny_model_dir, tmp_path / "given.json", prompt="given once", seed=11)
    following = generate(tiny_model_dir, tmp_path / "following.json")
    assert (given["settings"]["generation"]["prompt"], given["settings"]["generation"]["seed"]) == (
        "given once",
        11,
    )
    assert following["settings"]["generation"]["prompt"] == "panel prompt"
    assert following["settings"]["generation"]["seed"] == 3


def _camera_rig(count: int = 2) -> bpy.types.Collection:
    rig = bpy.data.collections.new("Rig")
    bpy.context.scene.collection.children.link(rig)
    for number in range(count):
        camera = sample.add_camera(f"Rig {number}", (-5.0 + 10.0 * number, -5.0, 3.0), (0, 0, 1))
        bpy.context.scene.collection.objects.unlink(camera)
        rig.objects.link(camera)
    return rig


@pytest.mark.parametrize(
    ("panel_views", "given", "kind"),
    [
        (1, {}, "cameras"),  # the panel hides the collection: it is not used
        (4, {"views": 1}, "cameras"),  # this run has one view: not used either
        (4, {}, "collection"),  # shown and meant
    ],
    ids=["panel views 1", "panel views 4, one-view call", "panel views 4"],
)
def test_a_camera_collection_is_used_only_where_the_panel_shows_it(
    panel_views, given, kind, sample_scene, tiny_model_dir, tmp_path
):
    panel().camera_collection = _camera_rig()
    panel().views = panel_views
    report = generate(tiny_model_dir, tmp_path / "report.json", prompt="stone", **given)
    assert report["settings"]["views"]["kind"] == kind


def test_the_panel_hides_the_camera_collection_with_one_view(sample_scene):
    def drawn() -> list[tuple[str, str]]:
        calls: list[tuple[str, str]] = []

        class Layout:
            def prop(self, _data, name, **_options):
                calls.append(("prop", name))

            def prop_search(self, _data, name, *_search, **_options):
                calls.append(("prop", name))

            def operator(self, idname, **_options):
                calls.append(("operator", idname))

            def label(self, text="", **_options):
                calls.append(("label", text))

            def progress(self, text="", **_options):
                calls.append(("progress", text))

            def template_icon(self, **_options):
                calls.append(("icon", ""))

            def template_list(self, list_type, _list_id, _data, name, *_active, **_options):
                calls.append(("list", f"{list_type}.{name}"))

            def row(self, **_options):
                return self

            column = box = row

        SDT_PT_main.draw(SimpleNamespace(layout=Layout()), bpy.context)
        return calls

    panel().camera_collection = _camera_rig()
    panel().views = 1
    assert ("prop", "camera_collection") not in drawn()
    panel().views = 4
    assert ("prop", "camera_collection") in drawn()
    assert ("operator", "sd_depth_texture.generate") in drawn()
    assert ("list", "SDT_UL_loras.loras") in drawn()  # the LoRA list, with Add and Remove
    assert ("operator", "sd_depth_texture.lora_add") in drawn()
    bpy.context.window_manager.sd_depth_texture.running = True
    try:
        shown = drawn()
        assert ("operator", "sd_depth_texture.cancel") in shown
        assert ("operator", "sd_depth_texture.generate") not in shown
        assert any(kind == "progress" for kind, _ in shown)
    finally:
        bpy.context.window_manager.sd_depth_texture.running = False


def _red_picture(tmp_path) -> str:
    picture = np.zeros((RESOLUTION * 2, RESOLUTION * 3, 3), dtype=np.float32)
    picture[..., 0] = 1.0
    path = tmp_path / "red.png"
    image = images.array_to_image("red", picture)
    image.filepath_raw, image.file_format = str(path), "PNG"
    image.save()
    bpy.data.images.remove(image)
    return str(path)


def test_project_image_always_opens_the_file_browser_from_invoke(
    sample_scene, tmp_path, monkeypatch
):
    """Even with a file given (a script's 'INVOKE_DEFAULT', an earlier pick), a click asks."""
    path = _red_picture(tmp_path)
    assert bpy.ops.sd_depth_texture.project_image(filepath=path, texture_size=TEXTURE) == {
        "FINISHED"
    }
    after_first = scene_fingerprint()
    opened = []
    monkeypatch.setattr(operators, "interactive", lambda _context: True)
    operator = SimpleNamespace(filepath=path)
    context = SimpleNamespace(window_manager=SimpleNamespace(fileselect_add=opened.append))
    result = operators.SDT_OT_project_image.invoke(operator, context, None)
    assert result == {"RUNNING_MODAL"}
    assert opened == [operator]
    assert scene_fingerprint() == after_first  # nothing projected again


def test_project_image_without_a_file_says_so(sample_scene):
    before = scene_fingerprint()
    with pytest.raises(RuntimeError, match="No image was chosen") as raised:
        bpy.ops.sd_depth_texture.project_image(texture_size=TEXTURE)
    assert not FLAG.search(str(raised.value))
    assert scene_fingerprint() == before


UI_MESSAGES = {  # case -> what the message must name instead of a flag
    "no camera": "add one, or choose the viewport",
    "bad number": "'Resolution' must be an integer from 64 to 2048 in steps of 8, got 100",
    # A script's value out of range is refused by the one rule, never clamped by Blender.
    "too small": "'Texture Size' must be an integer from 64 to 8192, got 1",
    "too large": "'Margin' must be an integer from 0 to 64, got 500",
    "empty prompt": "The prompt is empty",
    "offline, not cached": "set Model in the add-on's preferences",
}


@pytest.mark.parametrize("case", list(UI_MESSAGES))
def test_ui_messages_name_panel_fields_not_command_line_flags(case, sample_scene, tiny_model_dir):
    cache.free_pipeline()
    arguments = {"prompt": "stone"}
    if case == "no camera":
        bpy.data.objects.remove(bpy.data.objects["Camera"])
    elif case == "bad number":
        arguments["resolution"] = 100
    elif case == "too small":
        arguments["texture_size"] = 1
    elif case == "too large":
        arguments["margin"] = 500
    elif case == "empty prompt":
        arguments["prompt"] = "  "
    else:
        arguments["model"] = MODEL_ID
    before = scene_fingerprint()
    with pytest.raises(RuntimeError) as raised:
        if case == "offline, not cached":
            bpy.ops.sd_depth_texture.generate(resolution=RESOLUTION, steps=1, **arguments)
        else:
            generate(tiny_model_dir, **arguments)
    message = str(raised.value)
    assert UI_MESSAGES[case] in message
    assert not FLAG.search(message), message
    assert scene_fingerprint() == before


def test_capture_depth_without_a_camera_names_the_panel_choice(sample_scene):
    bpy.data.objects.remove(bpy.data.objects["Camera"])
    with pytest.raises(RuntimeError, match="choose the viewport") as raised:
        bpy.ops.sd_depth_texture.capture_depth(resolution=RESOLUTION)
    assert not FLAG.search(str(raised.value))


def test_the_command_line_keeps_its_flags_in_the_same_messages(sample_scene):
    """The core raises one structured error; each door words it: the CLI names its flags."""
    from sd_depth_texture.core.diffusion.settings import ModelSpec
    from sd_depth_texture.messages import CLI, UI, word

    with pytest.raises(TextureError, match="online access is off") as raised:
        cache.load_pipeline(ModelSpec(source=MODEL_ID))
    assert "--model PATH" in word(raised.value, CLI)
    assert "add-on's preferences" in word(raised.value, UI)
    assert not FLAG.search(word(raised.value, UI))


def test_project_image_refuses_what_generate_refuses(sample_scene, tmp_path):
    before = scene_fingerprint()
    with pytest.raises(RuntimeError, match="'Texture Size' must be an integer from 64 to 8192"):
        bpy.ops.sd_depth_texture.project_image(texture_size=1, filepath=str(tmp_path / "a.png"))
    assert scene_fingerprint() == before
