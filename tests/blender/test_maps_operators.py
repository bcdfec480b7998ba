"""PBR maps from the panel and the operators (real Blender): the panel's choice, the operator's
own property, packed maps in an unsaved file, and the material rewired run by run."""

from __future__ import annotations

from types import SimpleNamespace

import bpy
import pytest
from support.fingerprints import scene_fingerprint

from sd_depth_texture.blender.targets import texture_name
from sd_depth_texture.defaults import MAPS_LICENCE_NOTE
from sd_depth_texture.ui.panel import SDT_PT_main


def generate(model_dir, **overrides):
    arguments = {"prompt": "bronze", "model": str(model_dir), "steps": 1, "texture_size": 64,
                 "resolution": 128, "maps_model": "random"}  # fmt: skip
    arguments.update(overrides)
    return bpy.ops.sd_depth_texture.generate(**arguments)


def linked(material, socket: str):
    shader = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    links = shader.inputs[socket].links
    return links[0].from_node.image if links else None


def test_the_panels_maps_are_packed_and_wired_and_a_later_run_without_them_unwires(
    sample_scene, tiny_model_dir
):
    for obj in bpy.data.objects:
        obj.select_set(obj.name == "Suzanne")
    bpy.context.scene.sd_depth_texture.maps = {"color", "albedo", "metallic"}

    assert generate(tiny_model_dir) == {"FINISHED"}

    material = bpy.data.objects["Suzanne"].material_slots[0].material
    albedo, metallic = linked(material, "Base Color"), linked(material, "Metallic")
    assert albedo.name == "Suzanne SD Albedo" and albedo.packed_file is not None
    assert albedo.colorspace_settings.name == "sRGB"
    assert metallic.name == "Suzanne SD Metallic"
    assert metallic.colorspace_settings.name == "Non-Color"
    assert linked(material, "Roughness") is None
    lit = material.node_tree.nodes["SD Texture"]
    assert lit.image.name == texture_name("Suzanne") and not lit.outputs["Color"].is_linked

    # The operator's own value wins over the panel's: the colour only, maps unwired.
    assert generate(tiny_model_dir, maps="color") == {"FINISHED"}
    assert linked(material, "Base Color").name == texture_name("Suzanne")
    assert "SD Albedo" not in material.node_tree.nodes
    assert "SD Metallic" not in material.node_tree.nodes


def test_a_bad_maps_value_cancels_with_the_panels_name_and_changes_nothing(
    sample_scene, tiny_model_dir
):
    for obj in bpy.data.objects:
        obj.select_set(obj.name == "Cube")
    before = scene_fingerprint()
    with pytest.raises(RuntimeError, match="'Maps' must be a comma-separated list of color"):
        generate(tiny_model_dir, maps="albedo,shiny")
    assert scene_fingerprint() == before


def test_the_panel_offers_maps_and_upscale_and_shows_the_maps_licence_when_chosen(sample_scene):
    def drawn() -> list[tuple[str, str]]:
        calls: list[tuple[str, str]] = []

        class Layout:  # records what the panel draws
            def prop(self, _data, name, **_options):
                calls.append(("prop", name))

            def prop_search(self, _data, name, *_search, **_options):
                calls.append(("prop", name))

            def operator(self, idname, **_options):
                calls.append(("operator", idname))

            def label(self, text="", **_options):
                calls.append(("label", text))

            def template_icon(self, **_options):
                calls.append(("icon", ""))

            def template_list(self, *_arguments, **_options):
                calls.append(("list", ""))

            def row(self, **_options):
                return self

            column = box = row

        SDT_PT_main.draw(SimpleNamespace(layout=Layout()), bpy.context)
        return calls

    settings = bpy.context.scene.sd_depth_texture
    settings.maps = {"color"}
    shown = drawn()
    assert ("prop", "maps") in shown and ("prop", "upscale") in shown
    assert ("label", MAPS_LICENCE_NOTE) not in shown
    settings.maps = {"color", "roughness"}
    assert ("label", MAPS_LICENCE_NOTE) in drawn()
    assert "OpenRAIL++-M" in MAPS_LICENCE_NOTE
