"""Whole runs with names and prompts no one would type: names as long as Blender allows, names
with escape sequences and line breaks, prompts that are not UTF-8. Each bad input is one
``error:`` line with the files as they were; each odd name is written and printed safely."""

from __future__ import annotations

import json
from pathlib import Path

import bpy
import numpy as np
import pytest
from support.fingerprints import folder_fingerprint
from test_safe_files import write_picture

from sd_depth_texture.blender import images, sample, targets
from sd_depth_texture.cli import main as cli

FORGED = "Chair\n\x1b[2J\x1b[31merror: your disk is full\x1b[0m\r"
NOT_UTF8 = b"caf\xe9".decode("utf-8", "surrogateescape")  # what argv holds for $'caf\xe9'


def _scene_with_names(path: Path, names: dict[str, str]) -> dict[str, str]:
    """The sample scene with objects renamed, saved at ``path``; returns each object's name as
    Blender kept it (Blender 4.2 cuts names at 63 bytes, 5.0 at 255)."""
    sample.build_sample_scene()
    kept = {}
    for old, new in names.items():
        obj = bpy.data.objects[old]
        obj.name = new
        kept[old] = obj.name
    path.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return kept


def test_a_prompt_that_is_not_utf8_is_one_line_before_the_model_loads(
    sample_blend, tiny_model_dir, capsys
):
    before = folder_fingerprint(sample_blend.parent)
    capsys.readouterr()
    code = cli.main(
        ["texture", str(sample_blend), "--prompt", f"old {NOT_UTF8} brick", "--model",
         str(tiny_model_dir), "--steps", "1", "--texture-size", "64", "--resolution", "64"]
    )  # fmt: skip
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 1
    assert lines == ["error: --prompt is not valid UTF-8 text (\\xe9 at character 8)."]
    assert folder_fingerprint(sample_blend.parent) == before


def test_names_as_long_as_blender_allows_get_texture_files_that_fit(tmp_path, addon, capsys):
    long_a, long_b = "€" * 84 + "a", "€" * 84 + "b"  # 253 bytes each, the same first 252
    kept = _scene_with_names(tmp_path / "s.blend", {"Cube": long_a, "Suzanne": long_b})
    picture = write_picture(tmp_path / "p.png", (0.4, 0.4, 0.4))
    arguments = ["project", str(tmp_path / "s.blend"), "--image", str(picture), "--object",
                 kept["Cube"], "--object", kept["Suzanne"], "--texture-size", "64"]  # fmt: skip

    assert cli.main(arguments) == 0, capsys.readouterr().err
    folder = tmp_path / "textures" / "s_textured"
    first = sorted(path.name for path in folder.iterdir())
    assert len(first) == 2 and all(name.endswith("_SD_Texture.png") for name in first)
    assert all(len(name.encode("utf-8")) <= 255 - len("..partial.partial") for name in first)
    assert cli.main(arguments) == 0  # a rerun writes the same files again
    assert sorted(path.name for path in folder.iterdir()) == first


def _user_datablocks() -> tuple[bpy.types.Image, bpy.types.Material]:
    """An image and a material of the user's that happen to carry the add-on's name for Cube."""
    image = images.array_to_image("Cube SD Texture", np.full((8, 8, 3), [1.0, 0.0, 0.0]))
    image.use_fake_user = True
    image.pack()
    material = bpy.data.materials.new("Cube SD Texture")
    material.diffuse_color = (0.1, 0.2, 0.3, 1.0)
    material.use_fake_user = True
    return image, material


def test_an_object_named_with_escape_sequences_is_printed_on_one_line(tmp_path, addon, capfd):
    kept = _scene_with_names(tmp_path / "s.blend", {"Cube": FORGED})
    picture = write_picture(tmp_path / "p.png", (0.4, 0.4, 0.4))
    capfd.readouterr()
    code = cli.main(["project", str(tmp_path / "s.blend"), "--image", str(picture), "--object",
                     kept["Cube"], "--texture-size", "64"])  # fmt: skip
    out = capfd.readouterr().out
    summary = [line for line in out.splitlines() if "Textured" in line]
    assert code == 0 and len(summary) == 1
    assert "\\x1b[2J" in summary[0] and "Chair\\n" in summary[0]
    assert "\x1b[2J" not in out and "\x1b[31m" not in out  # escaped, never sent raw


def test_a_users_image_and_material_with_the_addons_name_are_left_alone(tmp_path, addon):
    sample.build_sample_scene()
    _user_datablocks()
    source = tmp_path / "s.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(source))
    report = tmp_path / "report.json"
    picture = write_picture(tmp_path / "p.png", (0.4, 0.4, 0.4))
    arguments = ["project", str(source), "--image", str(picture),
                 "--object", "Cube", "--texture-size", "64", "--report", str(report)]  # fmt: skip

    assert cli.main(arguments) == 0
    assert cli.main(arguments) == 0  # a rerun reuses the add-on's own image and material

    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "s_textured.blend"))
    users_image, users_material = (
        bpy.data.images["Cube SD Texture"],
        bpy.data.materials["Cube SD Texture"],
    )
    assert tuple(users_image.size) == (8, 8)
    assert np.allclose(images.image_to_array(users_image)[..., :3], [1.0, 0.0, 0.0])
    assert users_material.node_tree is None or "SD Texture" not in users_material.node_tree.nodes
    assert tuple(users_material.diffuse_color) == pytest.approx((0.1, 0.2, 0.3, 1.0))
    cube = bpy.data.objects["Cube"]
    material = cube.material_slots[0].material
    assert material != users_material and material.name.startswith("Cube SD Texture.")
    texture = material.node_tree.nodes["SD Texture"].image
    assert texture != users_image and texture.name.startswith("Cube SD Texture.")
    assert texture.filepath.endswith("Cube_SD_Texture.png")
    ours = [i for i in bpy.data.images if i.name.startswith("Cube SD Texture")]
    assert sorted(i.name for i in ours) == sorted([users_image.name, texture.name])
    notes = json.loads(report.read_text())["objects"][0]["notes"]
    assert any("image 'Cube SD Texture' was not made by this add-on" in n for n in notes)
    assert any("material 'Cube SD Texture' was not made by this add-on" in n for n in notes)


def test_textures_made_before_images_were_marked_are_still_the_addons(tmp_path, addon):
    sample.build_sample_scene()
    source = tmp_path / "s.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(source))
    picture = write_picture(tmp_path / "p.png", (0.4, 0.4, 0.4))
    arguments = ["project", str(source), "--image", str(picture),
                 "--object", "Cube", "--texture-size", "64", "--in-place"]  # fmt: skip
    assert cli.main(arguments) == 0
    bpy.ops.wm.open_mainfile(filepath=str(source))
    for block in (bpy.data.images["Cube SD Texture"], bpy.data.materials["Cube SD Texture"]):
        del block[targets.OWNER]  # as an earlier version left them
    bpy.ops.wm.save_mainfile()

    assert cli.main(arguments) == 0

    bpy.ops.wm.open_mainfile(filepath=str(source))
    assert [i.name for i in bpy.data.images if "SD Texture" in i.name] == ["Cube SD Texture"]
    assert [m.name for m in bpy.data.materials if "SD Texture" in m.name] == ["Cube SD Texture"]
    assert bpy.data.images["Cube SD Texture"][targets.OWNER] == "Cube"


def _odd_library(root: Path) -> tuple[str, str]:
    """One .blend with two cube assets: one named with escape sequences and line breaks, one
    with a name as long as Blender allows. Returns the names as Blender kept them."""
    bpy.ops.wm.read_homefile(use_empty=True)
    names = []
    for index, name in enumerate((FORGED, "€" * 85)):
        bpy.ops.mesh.primitive_cube_add(size=1.0, location=(2.0 * index, 0.0, 0.0))
        obj = bpy.context.active_object
        obj.name = name
        obj.asset_mark()
        obj.asset_data.description = f"a crate\nerror: {name}"
        names.append(obj.name)
    root.mkdir(parents=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(root / "odd.blend"))
    return names[0], names[1]


def test_a_batch_of_odd_names_prints_escaped_lines_and_writes_every_file(
    tmp_path, addon, tiny_model_dir, capfd
):
    forged, long_name = _odd_library(tmp_path / "library")
    out = tmp_path / "out"
    capfd.readouterr()

    code = cli.main(
        ["batch", str(tmp_path / "library"), "--out", str(out), "--model", str(tiny_model_dir),
         "--prompt-template", "a {name}, {description}", "--steps", "1", "--resolution", "64",
         "--texture-size", "64", "--preview-size", "32"]
    )  # fmt: skip

    captured = capfd.readouterr()
    printed = captured.out + captured.err
    assert code == 0, printed
    # (The model's own loading bars draw with escape sequences; the names must not.)
    assert "\x1b[2J" not in printed and "\x1b[31m" not in printed
    assert not [line for line in printed.splitlines() if "error: your disk" in line[:20]]
    assert "Chair\\n\\x1b[2J" in printed  # the progress line names the asset, escaped
    previews = sorted((out / "previews" / "odd").iterdir())
    textures = sorted((out / "textures" / "odd").glob("*.png"))
    assert len(previews) == len(textures) == 2
    assert all(len(path.name.encode()) <= 255 for path in previews + textures)
    sheet = (out / "contact_sheet.html").read_text(encoding="utf-8")
    assert "\x1b" not in sheet and "Chair\\n\\x1b[2J\\x1b[31merror" in sheet
    assert not list(out.glob(".*partial*"))
    assert {record["asset"] for record in _manifest(out)} == {forged, long_name}


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_a_batch_prompt_that_is_not_utf8_is_one_line_before_anything_is_read(
    tmp_path, addon, tiny_model_dir, capsys
):
    _odd_library(tmp_path / "library")
    before = folder_fingerprint(tmp_path)
    capsys.readouterr()
    code = cli.main(
        ["batch", str(tmp_path / "library"), "--out", str(tmp_path / "out"), "--model",
         str(tiny_model_dir), "--prompt", f"a {NOT_UTF8} crate"]
    )  # fmt: skip
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1
    assert lines == ["error: --prompt is not valid UTF-8 text (\\xe9 at character 6)."]
    assert folder_fingerprint(tmp_path) == before


def test_an_asset_named_after_anothers_tagged_file_name_gets_files_of_its_own(
    tmp_path, addon, tiny_model_dir, capfd
):
    """``A.B`` cleans to a tagged name; an asset literally named that, and one named ``A_B``,
    still get a texture and a preview each: names are unique by construction."""
    from sd_depth_texture.batch.outputs import asset_file_name

    bpy.ops.wm.read_homefile(use_empty=True)
    assets = ["A.B", asset_file_name("A.B"), "A_B", "a_b"]
    for index, name in enumerate(assets):
        bpy.ops.mesh.primitive_cube_add(size=1.0, location=(2.0 * index, 0.0, 0.0))
        bpy.context.active_object.name = name
        bpy.context.active_object.asset_mark()
    (tmp_path / "library").mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "library" / "names.blend"))
    out = tmp_path / "out"
    code = cli.main(
        ["batch", str(tmp_path / "library"), "--out", str(out), "--model", str(tiny_model_dir),
         "--prompt", "a crate", "--steps", "1", "--resolution", "64", "--texture-size", "64",
         "--preview-size", "32"]
    )  # fmt: skip
    assert code == 0, capfd.readouterr().err
    lines = [line for line in _manifest(out) if line["status"] == "done"]
    assert sorted(line["asset"] for line in lines) == sorted(assets)
    previews = [line["preview"] for line in lines]
    textures = [line["textures"][line["asset"]] for line in lines]
    for files in (previews, textures):
        assert len({path.lower() for path in files}) == len(assets)  # no two share a file
        assert all(Path(path).is_file() for path in files)
