"""Cycles as the reference renderer for tests and benchmarks: depth pass, emission render, bake.

These helpers deliberately avoid the project's own image code (``sd_depth_texture.blender.images``)
so that a round trip through Cycles checks the project against Blender, not against itself. Every
array here has row 0 at the top; Blender stores image rows bottom first, so each read flips.

They change the scene they are given (engine, resolution, passes, compositor); callers build a
fresh scene per test, as the tests here do.

Not named ``cycles.py``: ``import bpy`` imports Blender's Cycles add-on as the top-level module
``cycles``, so a ``tests/cycles.py`` on ``sys.path`` (pytest puts ``tests/`` there) would shadow
the add-on, and the 'CYCLES' render engine would not exist, or be shadowed by it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

# Cycles writes this (1e10) where a camera ray hits nothing; anything this far is background.
BACKGROUND_DEPTH = 1e9


def use_cycles(
    scene: bpy.types.Scene,
    width: int,
    height: int,
    samples: int = 1,
    filter_width: float = 1.5,
) -> None:
    """Cycles on the CPU at exactly ``width`` x ``height``, fixed sample count, no denoising.

    Adaptive sampling and denoising are off so that renders are deterministic and the sample
    count is the cost being measured.
    """
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = False
    scene.cycles.filter_width = filter_width
    scene.render.resolution_x = width
    scene.render.resolution_y = height
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    scene.render.use_border = False


def use_standard_view(scene: bpy.types.Scene) -> None:
    """Display values equal to the sRGB encoding of scene-linear values (no tone mapping).

    Blender 5.0 defaults to AgX, which would change an emitted texture's colours on the way out.
    """
    scene.display_settings.display_device = "sRGB"
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    scene.view_settings.use_curve_mapping = False
    scene.render.film_transparent = False


def image_pixels(image: bpy.types.Image) -> np.ndarray:
    """An image's pixels as (H, W, 4) float32, row 0 at the top (Blender stores it bottom first)."""
    width, height = image.size
    flat = np.empty(width * height * 4, dtype=np.float32)
    image.pixels.foreach_get(flat)
    return flat.reshape(height, width, 4)[::-1].copy()


def new_image(
    name: str, pixels: np.ndarray, *, float_buffer: bool = False, non_color: bool = False
) -> bpy.types.Image:
    """A new Blender image from an (H, W, 3 or 4) array in [0, 1], row 0 at the top.

    Packed, so Cycles (which reads images through Blender's image manager) sees the pixels
    without a file on disk.
    """
    height, width = pixels.shape[:2]
    rgba = np.ones((height, width, 4), dtype=np.float32)
    rgba[..., : pixels.shape[2]] = pixels
    image = bpy.data.images.new(name, width, height, alpha=True, float_buffer=float_buffer)
    image.colorspace_settings.name = "Non-Color" if non_color else "sRGB"
    image.pixels.foreach_set(np.ascontiguousarray(rgba[::-1]).ravel())
    image.update()
    image.pack()
    return image


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 4) float32 exactly as stored, row 0 at the top."""
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        return image_pixels(image)
    finally:
        bpy.data.images.remove(image)


_OLD_SOCKETS = {"Object Index": "IndexOB", "Depth": "Depth"}


def render_passes(scene: bpy.types.Scene, passes: dict[str, str]) -> dict[str, np.ndarray]:
    """Render Cycles passes to (H, W) float32 arrays, row 0 at the top.

    ``passes`` maps a Render Layers output ("Depth", "Object Index") to a short key of the
    result. Each pass goes through a compositor File Output node as a 32-bit EXR and is read
    back: the Viewer node produces no image in background mode. Blender 5.0 keeps the
    compositor in ``scene.compositing_node_group``; 4.x in ``scene.node_tree`` with
    ``use_nodes``. What is added is removed again afterwards.
    """
    view_layer = scene.view_layers[0]
    view_layer.use_pass_z = view_layer.use_pass_z or "Depth" in passes
    view_layer.use_pass_object_index = view_layer.use_pass_object_index or "Object Index" in passes
    modern = hasattr(scene, "compositing_node_group")
    if modern:
        tree = bpy.data.node_groups.new("Passes to EXR", "CompositorNodeTree")
        previous = scene.compositing_node_group
        scene.compositing_node_group = tree
    else:
        previous = scene.use_nodes
        scene.use_nodes = True
        tree = scene.node_tree
    added = []
    results = {}
    with tempfile.TemporaryDirectory(prefix="cycles_passes_") as directory:
        try:
            layers = tree.nodes.new("CompositorNodeRLayers")
            layers.scene = scene
            output = tree.nodes.new("CompositorNodeOutputFile")
            added += [layers, output]
            if modern:
                output.format.media_type = "IMAGE"
                output.directory = directory
                output.file_name = "pass_"
            else:
                output.base_path = directory
                output.file_slots.clear()
            output.format.file_format = "OPEN_EXR"
            output.format.color_depth = "32"  # half floats would round depth to ~1e-3
            for socket, key in passes.items():
                if modern:
                    output.file_output_items.new("FLOAT", key)
                else:
                    output.file_slots.new(f"pass_{key}")
                    key = f"pass_{key}"
                # 4.x names the object index output "IndexOB".
                source = layers.outputs.get(socket) or layers.outputs[_OLD_SOCKETS[socket]]
                tree.links.new(source, output.inputs[key])
            bpy.ops.render.render(write_still=False)
            for key in passes.values():
                # No ".exr" when the scene has use_file_extension off; 4.x adds a frame number.
                written = sorted(Path(directory).glob(f"pass_{key}*"))
                if len(written) != 1:
                    raise RuntimeError(f"expected one EXR for {key!r}, found {written}")
                results[key] = load_image(written[0])[..., 0]
        finally:
            if modern:
                scene.compositing_node_group = previous
                bpy.data.node_groups.remove(tree)
            else:
                for node in added:
                    tree.nodes.remove(node)
                scene.use_nodes = previous
    return results


def render_depth(scene: bpy.types.Scene) -> tuple[np.ndarray, np.ndarray]:
    """Cycles' Depth and Object Index passes: (H, W) view depth (``inf`` = background), indices.

    In Blender 5.0 the Depth pass is the distance along the camera axis, the same quantity as
    ``DepthCapture.view_depth``. Object indices are ``Object.pass_index`` (0 for background);
    with a narrow pixel filter they are not blended across edges.
    """
    found = render_passes(scene, {"Depth": "depth", "Object Index": "index"})
    depth = found["depth"]
    depth = np.where(depth < BACKGROUND_DEPTH, depth, np.inf).astype(np.float32)
    return depth, np.rint(found["index"]).astype(np.int32)


def render_png(scene: bpy.types.Scene, path: str | Path) -> Path:
    """Render the scene camera to an 8-bit sRGB PNG at ``path``, through the view transform."""
    settings = scene.render.image_settings
    settings.file_format = "PNG"
    settings.color_mode = "RGB"
    settings.color_depth = "8"
    saved = scene.render.filepath, scene.render.use_file_extension
    scene.render.filepath = str(path)
    scene.render.use_file_extension = False
    try:
        bpy.ops.render.render(write_still=True)
    finally:
        scene.render.filepath, scene.render.use_file_extension = saved
    return Path(path)


def emission_material(
    obj: bpy.types.Object, image: bpy.types.Image, uv_map: str | None = None
) -> bpy.types.Material:
    """Show ``image`` unlit through an Emission shader (strength 1) on every slot of ``obj``.

    Unlit, so a render of the object reproduces the texture's colours with no shading at all.
    """
    material = bpy.data.materials.new(f"{obj.name} emission")
    if material.node_tree is None:  # 5.0 gives new materials nodes (use_nodes is deprecated)
        material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    uv = nodes.new("ShaderNodeUVMap")
    uv.uv_map = uv_map or obj.data.uv_layers.active.name
    texture = nodes.new("ShaderNodeTexImage")
    texture.image = image
    texture.interpolation = "Linear"
    emission = nodes.new("ShaderNodeEmission")
    emission.inputs["Strength"].default_value = 1.0
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(uv.outputs["UV"], texture.inputs["Vector"])
    links.new(texture.outputs["Color"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    obj.data.materials.clear()
    obj.data.materials.append(material)
    return material


def bake_emission(obj: bpy.types.Object, target: bpy.types.Image, margin: int = 16) -> None:
    """Bake ``obj``'s emission into ``target`` with Cycles at ``scene.cycles.samples`` samples.

    The bake writes into the material's active Image Texture node, so one is added (not linked
    to the shader) and made active on every material of the object.
    """
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.render.bake.target = "IMAGE_TEXTURES"
    scene.render.bake.margin = margin
    scene.render.bake.use_clear = True
    for slot in obj.material_slots:
        nodes = slot.material.node_tree.nodes
        node = nodes.get("Bake target") or nodes.new("ShaderNodeTexImage")
        node.name = "Bake target"
        node.image = target
        for other in nodes:
            other.select = False
        node.select = True
        nodes.active = node
    for other in bpy.context.view_layer.objects:
        other.select_set(False)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.bake(type="EMIT")


def camera_from_view(
    name: str, world_to_view: np.ndarray, projection: np.ndarray
) -> bpy.types.Object:
    """A camera object (linked to the scene) that renders exactly the given matrices.

    The placement is the inverse of ``world_to_view``; the vertical field of view (or, for an
    orthographic projection, the vertical extent) and the clip range are read off the OpenGL
    ``projection``. The sensor fits vertically, so the horizontal extent follows the render's
    aspect: set the render resolution to the view's width and height. Off-centre projections
    (lens shift) are refused.
    """
    projection = np.asarray(projection, dtype=np.float64)
    if abs(projection[0, 2]) > 1e-9 or abs(projection[1, 2]) > 1e-9:
        raise ValueError("camera_from_view handles centred projections only (no lens shift)")
    data = bpy.data.cameras.new(name)
    data.sensor_fit = "VERTICAL"
    a, b = projection[2, 2], projection[2, 3]
    if abs(projection[3, 3] - 1.0) < 1e-9:  # orthographic: z_ndc = a z + b
        data.type = "ORTHO"
        data.ortho_scale = 2.0 / projection[1, 1]
        data.clip_start, data.clip_end = (b + 1.0) / a, (b - 1.0) / a
    else:  # perspective: z_ndc = (a z + b) / -z
        data.type = "PERSP"
        data.lens = projection[1, 1] * data.sensor_height / 2.0
        data.clip_start, data.clip_end = b / (a - 1.0), b / (a + 1.0)
    camera = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(camera)
    camera.matrix_world = Matrix(
        np.linalg.inv(np.asarray(world_to_view, dtype=np.float64)).tolist()
    )
    return camera
