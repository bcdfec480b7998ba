"""The command line (``cli.main``), as ``blender -b -c sd_depth_texture ...`` calls it."""

from __future__ import annotations

import json
from pathlib import Path

import bpy
import numpy as np
import pytest
from support.fingerprints import folder_fingerprint
from support.textures import islands, unpainted

from sd_depth_texture.blender import images, sample
from sd_depth_texture.blender.targets import texture_name
from sd_depth_texture.cli import main as cli


def test_texture_writes_the_blend_with_its_textures_beside_it(sample_blend, tiny_model_dir, capsys):
    output = sample_blend.parent.parent / "out" / "textured.blend"
    output.parent.mkdir()
    code = cli.main(
        ["texture", str(sample_blend), "--prompt", "old brick", "--model", str(tiny_model_dir),
         "--steps", "2", "--texture-size", "64", "--resolution", "256", "--object", "Suzanne",
         "--output", str(output)]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "Textured Suzanne" in capsys.readouterr().out
    png = output.parent / "textures" / "textured" / "Suzanne_SD_Texture.png"
    assert png.is_file()

    # The written file opens on its own and finds its texture by a relative path.
    bpy.ops.wm.open_mainfile(filepath=str(output))
    image = bpy.data.images[texture_name("Suzanne")]
    assert image.filepath.startswith("//")
    assert Path(bpy.path.abspath(image.filepath)).resolve() == png.resolve()
    texture = images.image_to_array(image)  # loads the PNG from disk
    assert image.packed_file is None and image.has_data
    assert np.all(texture[..., 3] == 1.0)  # opaque: coverage is in the report
    assert (~unpainted(texture)).any()
    assert bpy.data.objects["Suzanne"].material_slots[0].material.name == "Suzanne SD Texture"


def test_texture_without_object_textures_what_the_camera_sees(sample_blend, tiny_model_dir):
    code = cli.main(
        ["texture", str(sample_blend), "--prompt", "clay", "--model", str(tiny_model_dir),
         "--steps", "1", "--texture-size", "64", "--resolution", "256"]
    )  # fmt: skip
    assert code == 0
    output = sample_blend.with_name("sample_textured.blend")
    assert output.is_file()
    textures = sorted(
        p.name for p in (sample_blend.parent / "textures" / "sample_textured").iterdir()
    )
    assert textures == ["Cube_SD_Texture.png", "Floor_SD_Texture.png", "Suzanne_SD_Texture.png"]


def test_project_and_depth_commands(sample_blend, tmp_path):
    picture_path = tmp_path / "blue.png"
    picture = np.zeros((256, 384, 3), dtype=np.float32)
    picture[..., 2] = 1.0
    image = images.array_to_image("blue", picture)
    image.filepath_raw, image.file_format = str(picture_path), "PNG"
    image.save()

    assert cli.main(["project", str(sample_blend), "--image", str(picture_path),
                     "--object", "Cube", "--texture-size", "64"]) == 0  # fmt: skip
    bpy.ops.wm.open_mainfile(filepath=str(sample_blend.with_name("sample_textured.blend")))
    texture = images.image_to_array(bpy.data.images[texture_name("Cube")])
    painted = ~unpainted(texture) & islands("Cube", 64)
    assert painted.any() and np.abs(texture[painted][:, :3] - [0, 0, 1]).max() < 1e-6

    depth_path = tmp_path / "depth.png"
    assert cli.main(["depth", str(sample_blend), "--output", str(depth_path)]) == 0
    depth = bpy.data.images.load(str(depth_path))
    assert tuple(depth.size) == (768, 512)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["texture", "{blend}", "--prompt", ""], "prompt is empty"),
        (["texture", "{missing}", "--prompt", "x"], "no .blend file"),
        (["texture", "{blend}", "--prompt", "x", "--camera", "Nope"], "no camera named 'Nope'"),
        (["texture", "{blend}", "--prompt", "x", "--object", "Nope"], "no object named 'Nope'"),
        (["texture", "{blend}", "--prompt", "x", "--object", "Camera"], "not a mesh"),
        (["texture", "{blend}", "--prompt", "x", "--model", "{ckpt}"], "pickle"),
        (["texture", "{blend}", "--prompt", "x", "--model", "{missing}"], "missing"),
        (["texture", "{blend}", "--prompt", "x", "--output", "{underfile}"], "is a file, not a"),
        (["project", "{blend}", "--image", "{missing}"], "no image file"),
        (["project", "{blend}", "--image", "{ckpt}"], "not an image"),
        (["depth", "{blend}", "--output", "{underfile}"], "is a file, not a folder"),
    ],
)
def test_errors_exit_non_zero_with_one_line_and_touch_no_file(
    arguments, message, sample_blend, tmp_path, capsys
):
    checkpoint = tmp_path / "weights.ckpt"
    checkpoint.write_bytes(b"not a pickle")
    values = {
        "blend": str(sample_blend),
        "missing": str(tmp_path / "missing.blend"),
        "ckpt": str(checkpoint),
        "underfile": str(tmp_path / "weights.ckpt" / "such" / "out.blend"),
    }
    before = folder_fingerprint(tmp_path)
    capsys.readouterr()

    code = cli.main([argument.format(**values) for argument in arguments])

    error_lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1
    assert error_lines[-1].startswith("error: ")
    assert message.lower() in error_lines[-1].lower()
    assert "Traceback" not in "\n".join(error_lines)
    assert folder_fingerprint(tmp_path) == before


def test_malformed_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(["texture"])
    assert raised.value.code == 2


def test_output_elsewhere_keeps_the_files_own_relative_paths_and_leaves_no_backup(
    sample_blend, tmp_path
):
    """The source's //maps/wood.png must still resolve from the output's folder."""
    maps = sample_blend.parent / "maps"
    maps.mkdir()
    wood = images.array_to_image("wood", np.full((8, 8, 3), 0.3, np.float32))
    wood.filepath_raw, wood.file_format = str(maps / "wood.png"), "PNG"
    wood.save()
    wood.filepath = "//maps/wood.png"
    wood.use_fake_user = True  # kept in the file without a material using it
    bpy.ops.wm.save_mainfile()
    picture = tmp_path / "grey.png"
    grey = images.array_to_image("grey", np.full((256, 384, 3), 0.5, np.float32))
    grey.filepath_raw, grey.file_format = str(picture), "PNG"
    grey.save()
    output = tmp_path / "elsewhere" / "out.blend"
    output.parent.mkdir()
    arguments = ["project", str(sample_blend), "--image", str(picture), "--object", "Cube",
                 "--texture-size", "64", "--output", str(output)]  # fmt: skip

    assert cli.main(arguments) == 0
    assert cli.main(arguments) == 0  # overwriting the output

    assert sorted(p.name for p in output.parent.iterdir()) == ["out.blend", "textures"]
    assert [p.name for p in (output.parent / "textures").iterdir()] == ["out"]
    bpy.ops.wm.open_mainfile(filepath=str(output))
    assert Path(bpy.path.abspath(bpy.data.images["wood"].filepath)).resolve() == (
        (maps / "wood.png").resolve()
    )
    texture = bpy.data.images[texture_name("Cube")]
    assert Path(bpy.path.abspath(texture.filepath)).resolve() == (
        (output.parent / "textures" / "out" / "Cube_SD_Texture.png").resolve()
    )


def test_project_with_several_cameras_textures_what_they_see(tmp_path, addon):
    """Without --object, meshes no camera sees are left alone instead of failing the run."""
    sample.build_sample_scene()
    sample.add_camera("Left", (-5.0, -5.0, 3.0), (0.0, 0.0, 1.0))
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0.0, -60.0, 0.0))  # behind both cameras
    bpy.context.active_object.name = "FarAway"
    source = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(source))
    picture = tmp_path / "green.png"
    green = images.array_to_image("green", np.tile([0.0, 1.0, 0.0], (256, 384, 1)))
    green.filepath_raw, green.file_format = str(picture), "PNG"
    green.save()
    output = tmp_path / "out.blend"

    report = tmp_path / "report.json"
    code = cli.main(["project", str(source), "--image", str(picture), "--camera", "Camera",
                     "--image", str(picture), "--camera", "Left", "--texture-size", "64",
                     "--output", str(output), "--match-colors",
                     "--report", str(report)])  # fmt: skip

    assert code == 0
    run = json.loads(report.read_text())
    assert run["settings"]["match_colors"] is True
    for target in run["objects"]:  # every target: its seam figures and each view's correction
        assert set(target["seams"]) == {"uv_seam", "view_border"}
        assert {"seam", "reference", "ratio", "pairs"} <= set(target["seams"]["uv_seam"])
        assert "seams" in target["seconds"]
        assert all(view["color_match"]["overlap_texels"] >= 0 for view in target["views"])
    suzanne = next(target for target in run["objects"] if target["name"] == "Suzanne")
    assert suzanne["seams"]["uv_seam"]["pairs"] > 0
    assert suzanne["seams"]["view_border"]["pairs"] > 0  # both cameras see her
    textures = sorted(p.name for p in (tmp_path / "textures" / "out").iterdir())
    assert textures == ["Cube_SD_Texture.png", "Floor_SD_Texture.png", "Suzanne_SD_Texture.png"]
