"""The material that shows a run's texture on its object, without touching the mesh's own."""

from __future__ import annotations

import logging

import bpy

from .targets import OWNER, own_material, texture_name

log = logging.getLogger(__name__)


#: Map -> (the image node's name, the Principled BSDF input it drives).
MAP_INPUTS = {
    "albedo": ("SD Albedo", "Base Color"),
    "roughness": ("SD Roughness", "Roughness"),
    "metallic": ("SD Metallic", "Metallic"),
}


def wire_material(
    obj: bpy.types.Object,
    image: bpy.types.Image,
    uv_map: str,
    maps: dict[str, bpy.types.Image] | None = None,
) -> bpy.types.Material:
    """Show ``image`` on ``obj`` through a material of its own (reused on every run).

    ``maps``: the run's PBR map images. Albedo drives Base Color, roughness and metallic their
    inputs (their images are Non-Color data). The lit colour ``image`` stays in its own node,
    ``SD Texture``: it drives Base Color when the run made no albedo, else it is left
    unconnected, there to switch back to. Map nodes of an earlier run that this run did not
    make are removed, so the material never mixes two runs.

    The material is linked to the object's slots (link 'OBJECT'), which overrides the mesh's own
    materials without changing them: switching a slot back to 'DATA' restores the original look.
    Only a material this add-on made for the object is reused; a user's material of the same
    name is left alone, and the new one gets a free name (Blender adds '.001').
    """
    material = own_material(obj.name)
    if material is None:
        material = bpy.data.materials.new(texture_name(obj.name))
    material[OWNER] = obj.name
    if material.node_tree is None:  # Blender < 5 makes node-less materials
        material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    shader = next((n for n in nodes if n.type == "BSDF_PRINCIPLED"), None)
    if shader is None:
        shader = nodes.new("ShaderNodeBsdfPrincipled")
    output = next((n for n in nodes if n.type == "OUTPUT_MATERIAL"), None)
    if output is None:
        output = nodes.new("ShaderNodeOutputMaterial")
    texture = nodes.get("SD Texture") or nodes.new("ShaderNodeTexImage")
    texture.name = texture.label = "SD Texture"
    texture.image = image
    texture.location = (-400, 300)
    uv_node = nodes.get("SD UV Map") or nodes.new("ShaderNodeUVMap")
    uv_node.name = uv_node.label = "SD UV Map"
    uv_node.uv_map = uv_map
    uv_node.location = (-650, 300)
    links.new(uv_node.outputs["UV"], texture.inputs["Vector"])
    maps = maps or {}
    for link in list(texture.outputs["Color"].links):
        links.remove(link)
    if "albedo" not in maps:
        links.new(texture.outputs["Color"], shader.inputs["Base Color"])
    for row, (kind, (node_name, socket)) in enumerate(MAP_INPUTS.items()):
        node = nodes.get(node_name)
        if kind not in maps:
            if node is not None:
                nodes.remove(node)
            continue
        node = node or nodes.new("ShaderNodeTexImage")
        node.name = node.label = node_name
        node.image = maps[kind]
        node.location = (-400, -20 - 300 * row)
        links.new(uv_node.outputs["UV"], node.inputs["Vector"])
        links.new(node.outputs["Color"], shader.inputs[socket])
    links.new(shader.outputs["BSDF"], output.inputs["Surface"])

    if not obj.material_slots:
        obj.data.materials.append(None)
    for slot in obj.material_slots:
        slot.link = "OBJECT"
        slot.material = material
    return material
