"""What counts as geometry: everything visible that renders as triangles occludes.

``scene.visible_geometry`` reads the evaluated depsgraph as a render engine does: mesh objects,
and the triangles text, curves and metaballs evaluate to, collection instances and
geometry-nodes instances. The occlusion test compares the Z-buffer with Cycles' Object Index
pass, object by object, so a surface that is missing (or read twice, or misplaced) shows.
"""

from __future__ import annotations

import math

import bpy
import numpy as np
import pytest
from support import cycles_render, runs

from sd_depth_texture.blender import sample, scene
from sd_depth_texture.core.errors import TextureError
from sd_depth_texture.core.geometry.depth import capture_depth
from sd_depth_texture.core.geometry.mesh import scene_geometry

# Pass indices of the occlusion scene's objects (instances take their object's index).
INDEX = {"Wall": 1, "Label": 2, "Ring": 3, "Ico": 4, "Scatter": 5, "Blob": 6}


def occlusion_scene() -> bpy.types.Scene:
    """A wall facing the camera, and in front of it a text object, a bevelled curve, a
    metaball, a collection instance (its collection excluded from the view layer) and cubes
    that a geometry-nodes modifier instances on a plane's corners."""
    bpy.ops.wm.read_homefile(use_empty=True)
    context_scene = bpy.context.scene
    context_scene.render.resolution_x, context_scene.render.resolution_y = 144, 96
    bpy.ops.mesh.primitive_plane_add(size=7.0, location=(0, 3, 0), rotation=(math.pi / 2, 0, 0))
    bpy.context.active_object.name = "Wall"
    bpy.ops.object.text_add(location=(-2.6, 0, 0.6))
    label = bpy.context.active_object
    label.name, label.data.body, label.data.extrude = "Label", "SD", 0.05
    label.rotation_euler = (math.pi / 2, 0, 0)
    bpy.ops.curve.primitive_bezier_circle_add(radius=0.6, location=(1.3, 0, 1.2))
    ring = bpy.context.active_object
    ring.name, ring.data.bevel_depth = "Ring", 0.12
    ring.rotation_euler = (math.pi / 2, 0, 0)
    bpy.ops.object.metaball_add(radius=0.7, location=(-1.5, 0, -1.5))
    blob = bpy.context.active_object
    blob.name = "Blob"
    blob.data.render_resolution = blob.data.resolution  # Cycles meshes it as the viewport does

    props = bpy.data.collections.new("Props")
    context_scene.collection.children.link(props)
    bpy.ops.mesh.primitive_ico_sphere_add(radius=0.6, subdivisions=3, location=(0, 0, 0))
    ico = bpy.context.active_object
    ico.name = "Ico"
    for collection in ico.users_collection:
        collection.objects.unlink(ico)
    props.objects.link(ico)
    bpy.context.view_layer.layer_collection.children["Props"].exclude = True
    instancer = bpy.data.objects.new("Inst", None)
    instancer.instance_type, instancer.instance_collection = "COLLECTION", props
    instancer.location = (1.4, -0.5, -1.3)
    context_scene.collection.objects.link(instancer)

    bpy.ops.mesh.primitive_plane_add(size=1.6, location=(0.0, -1.0, 0.1))
    scatter = bpy.context.active_object
    scatter.name = "Scatter"
    scatter.rotation_euler = (math.pi / 2, 0, 0)
    scatter.modifiers.new("Scatter", "NODES").node_group = cubes_on_points(0.35)

    context_scene.camera = sample.add_camera("Camera", (0.0, -9.0, 0.0), (0.0, 0.0, 0.0), 50.0)
    for name, number in INDEX.items():
        bpy.data.objects[name].pass_index = number
    return context_scene


def geometry_nodes(build) -> bpy.types.NodeTree:
    """A geometry node group with one geometry input and output; ``build(tree, input)`` returns
    the socket that goes to the output."""
    tree = bpy.data.node_groups.new("Geometry", "GeometryNodeTree")
    tree.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    tree.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    given = tree.nodes.new("NodeGroupInput").outputs[0]
    tree.links.new(build(tree, given), tree.nodes.new("NodeGroupOutput").inputs[0])
    return tree


def cubes_on_points(size: float) -> bpy.types.NodeTree:
    def build(tree, given):
        cube = tree.nodes.new("GeometryNodeMeshCube")
        cube.inputs["Size"].default_value = (size, size, size)
        instances = tree.nodes.new("GeometryNodeInstanceOnPoints")
        tree.links.new(given, instances.inputs["Points"])
        tree.links.new(cube.outputs["Mesh"], instances.inputs["Instance"])
        return instances.outputs["Instances"]

    return geometry_nodes(build)


def cube_replacing_the_mesh(size: float, store_uv: bool) -> bpy.types.NodeTree:
    """A node group whose output is a Mesh Cube primitive, the input thrown away; with
    ``store_uv`` the cube's UV Map is stored as "UVMap" (2D vector on face corners)."""

    def build(tree, _given):
        cube = tree.nodes.new("GeometryNodeMeshCube")
        cube.inputs["Size"].default_value = (size, size, size)
        if not store_uv:
            return cube.outputs["Mesh"]
        store = tree.nodes.new("GeometryNodeStoreNamedAttribute")
        store.data_type, store.domain = "FLOAT2", "CORNER"
        store.inputs["Name"].default_value = "UVMap"
        tree.links.new(cube.outputs["Mesh"], store.inputs["Geometry"])
        tree.links.new(cube.outputs["UV Map"], store.inputs["Value"])
        return store.outputs["Geometry"]

    return geometry_nodes(build)


def pass_index_of(name: str) -> int:
    """The Cycles object index a visible_geometry entry renders with."""
    if name in INDEX:
        return INDEX[name]
    instancer, instanced = name.split("/", 1)
    return INDEX.get(instancer, INDEX.get(instanced.split("#")[0], 0))


def test_text_curves_metaballs_and_instances_occlude_the_mesh_behind_them() -> None:
    context_scene = occlusion_scene()
    depsgraph = bpy.context.evaluated_depsgraph_get()
    view = scene.camera_view(context_scene, context_scene.camera, depsgraph, 96)
    cycles_render.use_cycles(context_scene, view.width, view.height, samples=1, filter_width=0.01)
    _, index = cycles_render.render_depth(context_scene)

    meshes = scene.visible_geometry(bpy.context.evaluated_depsgraph_get(), bpy.context.view_layer)
    geometry = scene_geometry(meshes)
    capture = capture_depth(view, geometry.vertices, geometry.triangles)
    ours = np.zeros(index.shape, dtype=np.int32)
    by_entry = np.array([pass_index_of(name) for name in geometry.names])
    ours[capture.foreground] = by_entry[geometry.owner[capture.raster.triangle[capture.foreground]]]
    iou = {
        name: float(((ours == k) & (index == k)).sum() / max(((ours == k) | (index == k)).sum(), 1))
        for name, k in INDEX.items()
    }
    hidden = {name: int((index == k).sum()) for name, k in INDEX.items() if name != "Wall"}
    print(f"\n[occlusion] per-object IoU against Cycles' index pass: {iou}; pixels {hidden}")

    # Every occluder covers part of the wall, and the wall shows exactly where Cycles shows it.
    assert min(hidden.values()) > 30
    assert iou["Wall"] > 0.99
    assert min(iou.values()) > 0.95, iou
    # Read once each: the collection instance once, the four geometry-nodes cubes.
    names = [mesh.name for mesh in meshes]
    assert sum(name.startswith("Inst/Ico#") for name in names) == 1
    assert sum(name.startswith("Scatter/Scatter#") for name in names) == 4
    assert sum(name.startswith("Label/") for name in names) == 1


def test_mesh_objects_keep_their_names_and_nothing_else_can_take_one() -> None:
    context_scene = occlusion_scene()
    decoy = bpy.data.objects.new("Inst/Ico#0", bpy.data.meshes.new("Decoy"))  # a clashing name
    context_scene.collection.objects.link(decoy)
    bpy.ops.mesh.primitive_cube_add(location=(5, 0, 0))
    bpy.context.active_object.name = "Hidden"
    bpy.context.active_object.hide_set(True)
    meshes = scene.visible_geometry(bpy.context.evaluated_depsgraph_get(), bpy.context.view_layer)
    names = [mesh.name for mesh in meshes]

    assert len(set(names)) == len(names)
    targets = [mesh for mesh in meshes if mesh.target]
    assert {mesh.name for mesh in targets} == {"Wall", "Scatter", "Inst/Ico#0"}
    wall = next(mesh for mesh in targets if mesh.name == "Wall")
    assert wall.uv is not None and wall.uv.shape == (4, 2)  # UVs: the targets' own
    # Scatter's modifier turns it into instances only: its own mesh is empty, still listed.
    assert next(mesh for mesh in targets if mesh.name == "Scatter").triangles.shape == (0, 3)
    others = [mesh.name for mesh in meshes if not mesh.target]
    assert not set(others) & set(bpy.data.objects.keys())
    assert "Inst/Ico#0#" in others  # the instance stepped aside for the object of that name
    # A target's triangles are the same whether read with the scene or on their own.
    alone = scene.mesh_arrays(bpy.data.objects["Wall"], bpy.context.evaluated_depsgraph_get())
    np.testing.assert_array_equal(wall.triangles, alone.triangles)
    np.testing.assert_allclose(wall.vertices, alone.vertices)


@pytest.fixture
def replaced_cube() -> bpy.types.Object:
    """The sample scene's Cube with a geometry-nodes modifier that replaces it by a bigger cube."""
    sample.build_sample_scene((256, 256))
    cube = bpy.data.objects["Cube"]
    return cube


def test_a_mesh_replaced_by_geometry_nodes_is_read_as_evaluated(replaced_cube) -> None:
    modifier = replaced_cube.modifiers.new("Replace", "NODES")
    modifier.node_group = cube_replacing_the_mesh(1.5, store_uv=True)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    mesh = scene.mesh_arrays(replaced_cube, depsgraph)
    assert mesh.vertices.shape == (8, 3) and mesh.triangles.shape == (12, 3)
    np.testing.assert_allclose(np.ptp(mesh.vertices, axis=0), 1.5)  # the node's cube, not 1.0
    np.testing.assert_allclose(mesh.vertices.mean(axis=0), replaced_cube.location, atol=1e-6)
    assert mesh.uv is not None and mesh.uv.shape == (24, 2)
    assert mesh.uv.min() >= 0.0 and mesh.uv.max() <= 1.0 and np.ptp(mesh.uv) > 0.5
    listed = {m.name: m for m in scene.visible_geometry(depsgraph, bpy.context.view_layer)}
    np.testing.assert_array_equal(listed["Cube"].triangles, mesh.triangles)
    np.testing.assert_allclose(listed["Cube"].uv, mesh.uv)

    outcome = runs.project(
        [replaced_cube.name], [np.full((64, 64, 3), 0.7, dtype=np.float32)] * 4, orbit=4,
        resolution=64, texture_size=64, margin=0,
    )  # fmt: skip
    assert outcome.coverage["Cube"] > 0.3


def test_geometry_nodes_that_drop_the_uv_map_are_refused_clearly(replaced_cube) -> None:
    modifier = replaced_cube.modifiers.new("Replace", "NODES")
    modifier.node_group = cube_replacing_the_mesh(1.5, store_uv=False)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    mesh = scene.mesh_arrays(replaced_cube, depsgraph)
    assert mesh.triangles.shape == (12, 3) and mesh.uv is None
    images = set(bpy.data.images.keys())
    with pytest.raises(TextureError, match="'Cube' has no UV map after its modifiers"):
        runs.project(
            [replaced_cube.name], [np.full((64, 64, 3), 0.7, dtype=np.float32)] * 4, orbit=4,
            resolution=64, texture_size=64, margin=0,
        )  # fmt: skip
    assert set(bpy.data.images.keys()) == images
    assert [layer.name for layer in replaced_cube.data.uv_layers] == ["UVMap"]


def _blender_triangles(obj: bpy.types.Object) -> np.ndarray:
    """The evaluated mesh's loop triangles as Blender gives them, item by item."""
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    mesh = evaluated.to_mesh()
    try:
        mesh.calc_loop_triangles()
        return np.array([tuple(triangle.vertices) for triangle in mesh.loop_triangles])
    finally:
        evaluated.to_mesh_clear()


def test_triangles_read_again_follow_a_changed_triangulation() -> None:
    """Corners reused for an unchanged mesh (the second read) are never reused for a changed
    one: a quad made concave is split along its other diagonal, and the read follows it."""
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.mesh.primitive_plane_add(size=2.0)
    plane = bpy.context.active_object
    depsgraph = bpy.context.evaluated_depsgraph_get()
    first = scene.mesh_arrays(plane, depsgraph)
    again = scene.mesh_arrays(plane, depsgraph)
    np.testing.assert_array_equal(again.triangles, first.triangles)
    np.testing.assert_array_equal(first.triangles, _blender_triangles(plane))

    split = {frozenset(map(int, triangle)) for triangle in first.triangles}
    diagonal = frozenset.intersection(*split)  # the two corners both triangles hold
    # Pull a corner off that diagonal past it: the quad turns concave at that corner, and
    # Blender splits it along the other diagonal, the one through the concave corner.
    corner = min(set(range(4)) - diagonal)
    plane.data.vertices[corner].co *= -0.2
    plane.data.update()
    changed = scene.mesh_arrays(plane, bpy.context.evaluated_depsgraph_get())
    np.testing.assert_array_equal(changed.triangles, _blender_triangles(plane))
    assert {frozenset(map(int, triangle)) for triangle in changed.triangles} != split
