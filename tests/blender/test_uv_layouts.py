"""UV layouts real assets have: mirrored or overlapping islands, and UVs outside 0-1."""

from __future__ import annotations

import bpy
import numpy as np
import pytest
from support import runs
from support.fingerprints import scene_fingerprint

from sd_depth_texture.blender import flow, images, sample
from sd_depth_texture.core.errors import TextureError
from sd_depth_texture.request import OutputOptions, TextureRequest, ViewSource


def two_quads_sharing_their_uvs() -> bpy.types.Object:
    """Two side-by-side quads facing the camera whose UVs are the same square (a mirrored model
    folds both halves onto one island like this)."""
    sample.build_sample_scene()
    mesh = bpy.data.meshes.new("Twins")
    vertices = [(-1.0, 0, 0.5), (0, 0, 0.5), (0, 0, 1.5), (-1.0, 0, 1.5),
                (0, 0, 0.5), (1.0, 0, 0.5), (1.0, 0, 1.5), (0, 0, 1.5)]  # fmt: skip
    mesh.from_pydata(vertices, [], [(0, 1, 2, 3), (4, 5, 6, 7)])
    layer = mesh.uv_layers.new(name="UVMap")
    square = [(0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9)]
    layer.uv.foreach_set("vector", np.array(square * 2, dtype=np.float32).ravel())
    twins = bpy.data.objects.new("Twins", mesh)
    twins.location = (0.0, -2.0, 0.0)
    bpy.context.scene.collection.objects.link(twins)
    return twins


def test_shared_texels_are_measured_reported_and_follow_one_rule(addon):
    twins = two_quads_sharing_their_uvs()
    picture = np.zeros((512, 768, 3), np.float32)
    picture[:, :384, 0] = 1.0  # left half red, right half blue
    picture[:, 384:, 2] = 1.0
    outcome = runs.project([twins.name], [picture], cameras=("",), texture_size=64)
    (report,) = outcome.reports
    assert report.shared_texels > 0.9  # every covered texel is covered twice
    assert any("shared by several faces" in note for note in report.notes)
    # The documented rule: a shared texel shows the colour painted for one of its faces.
    texture = bpy.data.images["Twins SD Texture"]
    pixels = np.array(texture.pixels[:]).reshape(64, 64, 4)[16:48, 16:48, :3]
    red, blue = (pixels[..., 0] > 0.9).mean(), (pixels[..., 2] > 0.9).mean()
    assert max(red, blue) > 0.95


def test_a_layout_without_overlaps_has_no_shared_texels(addon):
    sample.build_sample_scene()
    picture = np.full((512, 768, 3), 0.3, np.float32)
    outcome = runs.project(["Cube"], [picture], cameras=("",), texture_size=128)
    assert outcome.reports[0].shared_texels < 0.02
    assert not any("shared" in note for note in outcome.notes)


def test_uvs_outside_the_unit_square_are_refused_and_change_nothing(addon):
    sample.build_sample_scene()
    cube = bpy.data.objects["Cube"]
    uv = np.empty(len(cube.data.loops) * 2, dtype=np.float32)
    cube.data.uv_layers.active.uv.foreach_get("vector", uv)
    cube.data.uv_layers.active.uv.foreach_set("vector", uv + 1.0)  # the next UDIM tile
    before = scene_fingerprint()
    with pytest.raises(TextureError, match="outside the 0-1 square on 100% of its faces"):
        runs.project(["Cube"], [np.zeros((512, 768, 3), np.float32)], cameras=("",))
    assert scene_fingerprint() == before
    assert images.DEPTH_IMAGE not in bpy.data.images


def test_a_chosen_uv_map_is_textured_and_wired_and_a_missing_one_refused(addon, tmp_path):
    sample.build_sample_scene()
    cube = bpy.data.objects["Cube"]
    second = cube.data.uv_layers.new(name="Lightmap")
    uv = np.empty(len(cube.data.loops) * 2, dtype=np.float32)
    second.uv.foreach_get("vector", uv)
    second.uv.foreach_set("vector", uv * 0.5)  # the same layout in the lower-left quarter
    picture = np.full((512, 768, 3), 0.2, np.float32)
    request = TextureRequest(
        views=ViewSource(cameras=("",)),
        targets=("Cube",),
        pictures=(picture,),
        output=OutputOptions(texture_size=64, margin=0, uv_map="Lightmap"),
    )
    outcome = flow.prepare(request).run()
    painted = outcome.painted["Cube"]
    assert painted[32:].any() and not painted[:32].any()  # rows 32 and down hold v < 0.5
    assert not painted[:, 32:].any()
    node = cube.material_slots[0].material.node_tree.nodes["SD UV Map"]
    assert node.uv_map == "Lightmap" and cube.data.uv_layers.active.name == "UVMap"
    before = scene_fingerprint()
    missing = TextureRequest(
        views=ViewSource(cameras=("",)), targets=("Cube",), pictures=(picture,),
        output=OutputOptions(texture_size=64, uv_map="Detail"),
    )  # fmt: skip
    refused = r"'Cube' has no UV map named 'Detail' \(it has 'UVMap', 'Lightmap'\)"
    with pytest.raises(TextureError, match=refused):
        flow.prepare(missing)
    assert scene_fingerprint() == before


def test_the_uv_map_is_chosen_through_the_command_line_and_the_operator(addon, tmp_path, capsys):
    from sd_depth_texture.cli import main as cli

    sample.build_sample_scene()
    bpy.data.objects["Cube"].data.uv_layers.new(name="Lightmap")
    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    png = tmp_path / "grey.png"
    image = bpy.data.images.new("grey", 768, 512)
    image.filepath_raw, image.file_format = str(png), "PNG"
    image.save()
    assert cli.main(["project", str(blend), "--image", str(png), "--object", "Cube",
                     "--texture-size", "64", "--uv-map", "Nope"]) == 1  # fmt: skip
    assert "'Cube' has no UV map named 'Nope'" in capsys.readouterr().err
    assert cli.main(["project", str(blend), "--image", str(png), "--object", "Cube",
                     "--texture-size", "64", "--uv-map", "Lightmap"]) == 0  # fmt: skip
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "scene_textured.blend"))
    cube = bpy.data.objects["Cube"]
    assert cube.material_slots[0].material.node_tree.nodes["SD UV Map"].uv_map == "Lightmap"
    for obj in bpy.data.objects:
        obj.select_set(obj.name == "Cube")
    with pytest.raises(RuntimeError, match="no UV map named 'Other'"):
        bpy.ops.sd_depth_texture.project_image(filepath=str(png), uv_map="Other")
