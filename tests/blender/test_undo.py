"""Undo and redo after a run, through the real ``ed.undo`` / ``ed.redo`` of the bpy module.

What the bpy module allows (5.0 and 4.2, checked here): memfile undo works headless. An
operator called from Python pushes no undo step unless the call passes ``undo=True``
(``bpy.ops.x('EXEC_DEFAULT', True)``); then Blender pushes the step that its ``UNDO`` option
asks for, as it does after a click. The stack starts empty on a file load (the window's first
step is made by the UI), so each test pushes that one with ``ed.undo_push``. The modal path
(the step pushed when the panel's run finishes) cannot run headless.

The rule these tests hold the operators to: a run never overwrites a texture file. Undo
restores the image datablock as it was, path included, and Blender reads its pixels from that
path again; had the run rewritten that file, the previous texture would be gone.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
import pytest

from sd_depth_texture.blender import flow, images, outputs, preferences
from sd_depth_texture.blender.targets import texture_name
from sd_depth_texture.core.diffusion.settings import GenerationSettings
from sd_depth_texture.request import OutputOptions, TextureRequest, ViewSource

RESOLUTION = 128
TEXTURE = 64
SD_MATERIAL = texture_name("Suzanne")  # the run's material has the texture's name


def generate(model_dir, seed: int, undo: bool = True) -> None:
    """The operator as a click runs it: with ``undo``, Blender pushes its undo step."""
    assert bpy.ops.sd_depth_texture.generate(
        "EXEC_DEFAULT", undo, prompt="stone", seed=seed, steps=1, resolution=RESOLUTION,
        texture_size=TEXTURE, model=str(model_dir),
    ) == {"FINISHED"}  # fmt: skip


def push(message: str = "Original") -> None:
    """The step a file load gives the window's undo stack."""
    assert bpy.ops.ed.undo_push(message=message) == {"FINISHED"}


def texture() -> bpy.types.Image | None:
    return bpy.data.images.get(texture_name("Suzanne"))


def pixels() -> np.ndarray:
    return images.image_to_array(texture())


def slots() -> list[tuple[str, str]]:
    suzanne = bpy.data.objects["Suzanne"]
    return [
        (slot.link, slot.material.name if slot.material else "") for slot in suzanne.material_slots
    ]


def test_the_undo_option_pushes_the_runs_step(sample_scene, tiny_model_dir):
    """What headless undo can and cannot do, and that Generate's own step is what undo uses."""
    assert not bpy.ops.ed.undo.poll()  # a loaded file starts with an empty stack
    push()
    assert not bpy.ops.ed.undo.poll()  # one step: nothing to go back to
    generate(tiny_model_dir, seed=1, undo=False)
    assert not bpy.ops.ed.undo.poll()  # a plain Python call pushes nothing
    with pytest.raises(RuntimeError, match="prompt is empty"):
        bpy.ops.sd_depth_texture.generate("EXEC_DEFAULT", True, prompt=" ")
    assert not bpy.ops.ed.undo.poll()  # a refused run adds no step
    generate(tiny_model_dir, seed=2)
    assert bpy.ops.ed.undo.poll()  # the UNDO option pushed "Generate Texture"
    assert bpy.ops.ed.undo() == {"FINISHED"}
    assert texture() is None  # back to before both runs: the first pushed no step


def test_undo_brings_back_the_material_links_from_before_the_run(sample_scene, tiny_model_dir):
    suzanne = bpy.data.objects["Suzanne"]
    session_uid = suzanne.session_uid
    suzanne.data.materials.append(bpy.data.materials.new("Bronze"))
    push()
    generate(tiny_model_dir, seed=1)
    assert slots() == [("OBJECT", SD_MATERIAL)]
    painted = pixels()

    assert bpy.ops.ed.undo() == {"FINISHED"}
    assert slots() == [("DATA", "Bronze")]
    assert SD_MATERIAL not in bpy.data.materials and texture() is None
    # The flow finds its targets by session id: undo keeps it, so a run is not confused.
    assert bpy.data.objects["Suzanne"].session_uid == session_uid

    assert bpy.ops.ed.redo() == {"FINISHED"}
    assert slots() == [("OBJECT", SD_MATERIAL)]
    np.testing.assert_array_equal(pixels(), painted)  # packed in the unsaved file


def test_undo_brings_back_the_previous_texture_from_its_own_file(
    sample_scene, tiny_model_dir, tmp_path
):
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))
    folder = tmp_path / "textures" / "scene"
    push()
    generate(tiny_model_dir, seed=1)
    first_path, first_pixels = texture().filepath, pixels()
    first_file = (folder / "Suzanne_SD_Texture.png").read_bytes()
    generate(tiny_model_dir, seed=2)
    second_path, second_pixels = texture().filepath, pixels()
    second_name = outputs.texture_path(str(tmp_path / "scene.blend"), "Suzanne", {
        "suzanne_sd_texture.png"})  # fmt: skip

    assert first_path == "//textures/scene/Suzanne_SD_Texture.png"
    assert second_path == "//textures/scene/" + Path(second_name).name  # a file of its own
    assert second_path != first_path
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        ["Suzanne_SD_Texture.png", Path(second_name).name]
    )
    assert (folder / "Suzanne_SD_Texture.png").read_bytes() == first_file  # kept as it was
    assert not np.array_equal(first_pixels, second_pixels)

    assert bpy.ops.ed.undo() == {"FINISHED"}
    assert texture().filepath == first_path
    np.testing.assert_array_equal(pixels(), first_pixels)

    assert bpy.ops.ed.redo() == {"FINISHED"}
    assert texture().filepath == second_path
    np.testing.assert_array_equal(pixels(), second_pixels)


def test_undo_brings_back_the_previous_texture_packed_in_an_unsaved_file(
    sample_scene, tiny_model_dir
):
    """Unsaved: each run packs its pixels into the image, and undo restores the packed data."""
    push()
    generate(tiny_model_dir, seed=1)
    first_pixels = pixels()
    assert texture().packed_file is not None
    generate(tiny_model_dir, seed=2)
    assert not np.array_equal(pixels(), first_pixels)
    assert bpy.ops.ed.undo() == {"FINISHED"}
    np.testing.assert_array_equal(pixels(), first_pixels)


def test_the_command_line_door_still_rewrites_its_texture_file(
    sample_scene, tiny_model_dir, tmp_path
):
    """No undo there: a re-run replaces its output (keep_previous_files is the operators')."""
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))
    for seed in (1, 2):
        request = TextureRequest(
            views=ViewSource(resolution=RESOLUTION, cameras=("",)),
            targets=("Suzanne",),
            generation=GenerationSettings(prompt="stone", steps=1, seed=seed),
            model=preferences.model_spec(str(tiny_model_dir)),
            output=OutputOptions(texture_size=TEXTURE),
        )
        flow.prepare(request).run()
    written = [path.name for path in (tmp_path / "textures" / "scene").iterdir()]
    assert written == ["Suzanne_SD_Texture.png"]
