"""A small scene the project builds itself, for the demo, the tests and the benchmarks."""

from __future__ import annotations

import math

import bpy
from mathutils import Vector


def look_at(obj: bpy.types.Object, target: tuple[float, float, float]) -> None:
    """Point an object's -Z axis (a camera's view) at a world point, +Y up."""
    direction = Vector(target) - obj.location
    obj.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()


def add_camera(
    name: str,
    location: tuple[float, float, float],
    target: tuple[float, float, float] = (0.0, 0.0, 0.0),
    lens: float = 50.0,
    orthographic_scale: float | None = None,
) -> bpy.types.Object:
    """A camera object looking at ``target`` (orthographic when a scale is given)."""
    data = bpy.data.cameras.new(name)
    data.lens = lens
    if orthographic_scale is not None:
        data.type = "ORTHO"
        data.ortho_scale = orthographic_scale
    camera = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(camera)
    camera.location = location
    look_at(camera, target)
    return camera


def build_sample_scene(resolution: tuple[int, int] = (768, 512)) -> bpy.types.Scene:
    """An empty file with Suzanne (UV-mapped) on a floor, a cube beside her, a camera and a sun."""
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = resolution
    scene.render.resolution_percentage = 100

    bpy.ops.mesh.primitive_monkey_add(size=2.0, location=(0.0, 0.0, 1.0), calc_uvs=True)
    monkey = bpy.context.active_object
    monkey.name = "Suzanne"
    monkey.rotation_euler = (0.0, 0.0, math.radians(20))
    subdivision = monkey.modifiers.new("Subdivision", "SUBSURF")
    subdivision.levels = subdivision.render_levels = 1  # renders match what is textured
    bpy.ops.object.shade_smooth()

    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(1.8, 0.8, 0.5), calc_uvs=True)
    bpy.context.active_object.name = "Cube"
    bpy.ops.mesh.primitive_plane_add(size=8.0, location=(0.0, 0.0, 0.0), calc_uvs=True)
    bpy.context.active_object.name = "Floor"

    scene.camera = add_camera("Camera", (0.0, -6.5, 3.2), (0.3, 0.0, 0.9), lens=40.0)
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    scene.collection.objects.link(sun)
    sun.rotation_euler = (math.radians(40), 0.0, math.radians(30))
    bpy.ops.object.select_all(action="DESELECT")
    monkey.select_set(True)
    bpy.context.view_layer.objects.active = monkey
    return scene
