"""PBR maps (``--maps``): estimated from each view's picture by a real (tiny, random-weight)
``MarigoldIntrinsicsPipeline``, painted like the colour, written as PNGs and wired into the
material with the right colour spaces, through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import bpy
import numpy as np
import pytest
from support.fingerprints import folder_fingerprint
from support.textures import islands

from sd_depth_texture.blender import images
from sd_depth_texture.blender.targets import texture_name
from sd_depth_texture.cli import main as cli

ALL_MAPS = "color,albedo,roughness,metallic"


def _linked_image(material, socket: str):
    """The image whose node drives the Principled BSDF's ``socket``, or None."""
    shader = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    links = shader.inputs[socket].links
    return links[0].from_node.image if links else None


def test_texture_writes_every_map_and_wires_it_into_the_material(
    sample_blend, tiny_model_dir, tiny_maps_dir, tmp_path, capsys
):
    output = tmp_path / "out" / "textured.blend"
    output.parent.mkdir()
    report = tmp_path / "report.json"
    code = cli.main(
        ["texture", str(sample_blend), "--prompt", "old brick", "--model", str(tiny_model_dir),
         "--steps", "1", "--texture-size", "64", "--resolution", "128", "--object", "Suzanne",
         "--output", str(output), "--maps", ALL_MAPS, "--maps-model", str(tiny_maps_dir),
         "--report", str(report)]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    folder = output.parent / "textures" / "textured"
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        "Suzanne_SD_Albedo.png", "Suzanne_SD_Metallic.png", "Suzanne_SD_Roughness.png",
        "Suzanne_SD_Texture.png",
    ]  # fmt: skip

    data = json.loads(report.read_text())
    record = data["record"]
    assert record["maps"] == ["albedo", "roughness", "metallic"]
    assert record["maps_model"]["pipeline"] == "MarigoldIntrinsicsPipeline"
    assert record["maps_model"]["kind"] == "folder" and record["maps_model"]["loaded"] in (
        True,
        False,
    )
    assert data["settings"]["maps"] == ["color", "albedo", "roughness", "metallic"]
    entry = data["objects"][0]
    assert set(entry["maps"]) == {"albedo", "roughness", "metallic"}
    assert Path(entry["maps"]["albedo"]).name == "Suzanne_SD_Albedo.png"

    bpy.ops.wm.open_mainfile(filepath=str(output))
    material = bpy.data.objects["Suzanne"].material_slots[0].material
    albedo = _linked_image(material, "Base Color")
    roughness = _linked_image(material, "Roughness")
    metallic = _linked_image(material, "Metallic")
    assert albedo.name == "Suzanne SD Albedo"
    assert albedo.colorspace_settings.name == "sRGB"
    assert roughness.colorspace_settings.name == "Non-Color"
    assert metallic.colorspace_settings.name == "Non-Color"
    # The lit colour stays in its own node, unconnected, with its texture.
    lit = material.node_tree.nodes["SD Texture"]
    assert lit.image.name == texture_name("Suzanne") and not lit.outputs["Color"].is_linked

    # Each map holds what the estimates painted: read back from its file, not constant, in
    # [0, 1]; and each map records what made it.
    on_islands = islands("Suzanne", 64)
    for image in (albedo, roughness, metallic):
        assert Path(bpy.path.abspath(image.filepath)).parent.resolve() == folder.resolve()
        pixels = images.image_to_array(image)[..., :3][on_islands]
        assert pixels.std() > 0.01
        recorded = json.loads(image[images.RECORD_PROPERTY])
        assert recorded["maps_model"]["pipeline"] == "MarigoldIntrinsicsPipeline"
    grey = images.image_to_array(roughness)
    assert np.allclose(grey[..., 0], grey[..., 1])  # one value per texel: a grey PNG


def test_project_with_roughness_only_keeps_the_colour_as_base_color(sample_blend, tmp_path):
    """Maps need only the picture, so a projection gets them too (here from the random-weight
    maps model); without albedo the lit colour stays wired to Base Color."""
    picture_path = tmp_path / "blue.png"
    picture = np.zeros((256, 384, 3), dtype=np.float32)
    picture[..., 2] = 1.0
    image = images.array_to_image("blue", picture)
    image.filepath_raw, image.file_format = str(picture_path), "PNG"
    image.save()

    code = cli.main(["project", str(sample_blend), "--image", str(picture_path), "--object",
                     "Cube", "--texture-size", "64", "--maps", "roughness",
                     "--maps-model", "random"])  # fmt: skip
    assert code == 0
    bpy.ops.wm.open_mainfile(filepath=str(sample_blend.with_name("sample_textured.blend")))
    material = bpy.data.objects["Cube"].material_slots[0].material
    assert _linked_image(material, "Base Color").name == texture_name("Cube")
    assert _linked_image(material, "Roughness").name == "Cube SD Roughness"
    assert _linked_image(material, "Metallic") is None
    assert "SD Albedo" not in material.node_tree.nodes


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--maps", "color,normal"], "--maps must be a comma-separated list of color, albedo"),
        (["--maps", "albedo", "--maps-model", "{sd2}"], "not the MarigoldIntrinsicsPipeline"),
        (["--maps", "albedo", "--maps-model", "{missing}"], "was not found"),
        (["--maps", "albedo", "--maps-model", "{pickle}"], "pickle"),
        (["--maps", "metallic", "--maps-model", "nobody/no-such-model"], "--maps-model"),
    ],
)
def test_bad_maps_settings_are_one_line_and_touch_no_file(
    arguments, message, sample_blend, tiny_model_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    pickle = tmp_path / "maps.ckpt"
    pickle.write_bytes(b"not a pickle")
    values = {
        "sd2": str(tiny_model_dir),
        "missing": str(tmp_path / "nowhere"),
        "pickle": str(pickle),
    }
    before = folder_fingerprint(tmp_path)
    capsys.readouterr()

    code = cli.main(
        ["texture", str(sample_blend), "--prompt", "x", "--model", str(tiny_model_dir),
         "--steps", "1", "--texture-size", "64", "--resolution", "128", "--object", "Cube",
         *[argument.format(**values) for argument in arguments]]
    )  # fmt: skip

    error_lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1
    assert message.lower() in error_lines[-1].lower()
    assert "Traceback" not in "\n".join(error_lines)
    assert folder_fingerprint(tmp_path) == before
