"""The material that shows a run's texture on its object, without touching the mesh's own."""

from __future__ import annotations

import logging

import bpy

from .targets import OWNER, own_material, texture_name

log = logging.getLogger(__name__)


def wire_material(obj: bpy.types.Object, image: bpy.types.Image, uv_map: str) -> bpy.types.Material:
    """Show ``image`` on ``obj`` through a material of its own (reused on every run).

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
    links.new(texture.outputs["Color"], shader.inputs["Base Color"])
    links.new(shader.outputs["BSDF"], output.inputs["Surface"])

    if not obj.material_slots:
        obj.data.materials.append(None)
    for slot in obj.material_slots:
        slot.link = "OBJECT"
        slot.material = material
    return material
