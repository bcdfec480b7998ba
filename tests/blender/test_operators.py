"""The operators in the real Blender (bpy wheel), blocking as in scripts and --background."""

from __future__ import annotations

import shutil

import bpy
import numpy as np
import pytest
import torch
from support.fingerprints import scene_fingerprint
from support.textures import islands, unpainted

from sd_depth_texture.blender import flow, images, preferences
from sd_depth_texture.blender.targets import texture_name
from sd_depth_texture.core.diffusion import cache
from sd_depth_texture.core.diffusion.settings import GenerationSettings
from sd_depth_texture.core.errors import CancelledError
from sd_depth_texture.core.progress import Progress
from sd_depth_texture.defaults import MODEL_ID
from sd_depth_texture.request import OutputOptions, TextureRequest, ViewSource
from sd_depth_texture.ui.panel import model_status

TEXTURE = 128
STEPS = 2


def generate(model_dir, **overrides):
    arguments = {
        "prompt": "weathered bronze",
        "model": str(model_dir),
        "steps": STEPS,
        "texture_size": TEXTURE,
        "resolution": 256,
    }
    arguments.update(overrides)
    return bpy.ops.sd_depth_texture.generate(**arguments)


def texture_of(name: str) -> np.ndarray:
    return images.image_to_array(bpy.data.images[texture_name(name)])


def select_only(*names: str) -> None:
    for obj in bpy.data.objects:
        obj.select_set(obj.name in names)


def test_generate_bakes_into_the_uv_texture_and_wires_a_material(sample_scene, tiny_model_dir):
    suzanne = bpy.data.objects["Suzanne"]
    uv_maps_before = [uv.name for uv in suzanne.data.uv_layers]

    assert generate(tiny_model_dir) == {"FINISHED"}

    texture = texture_of("Suzanne")
    assert texture.shape == (TEXTURE, TEXTURE, 4)
    assert np.all(texture[..., 3] == 1.0)  # an opaque base colour: coverage is in the report
    assert 0.1 < (~unpainted(texture)).mean() < 0.9  # one side only: the far side stays grey
    assert [uv.name for uv in suzanne.data.uv_layers] == uv_maps_before  # no new UV layer

    material = suzanne.material_slots[0].material
    assert suzanne.material_slots[0].link == "OBJECT"
    nodes = material.node_tree.nodes
    assert nodes["SD Texture"].image == bpy.data.images[texture_name("Suzanne")]
    assert nodes["SD UV Map"].uv_map == suzanne.data.uv_layers.active.name
    base_color = next(n for n in nodes if n.type == "BSDF_PRINCIPLED").inputs["Base Color"]
    assert base_color.links[0].from_node == nodes["SD Texture"]
    image = bpy.data.images[texture_name("Suzanne")]
    assert image.colorspace_settings.name == "sRGB"
    # Other objects were not selected, so they were not touched.
    assert texture_name("Cube") not in bpy.data.images


def test_depth_map_sent_is_kept_and_near_is_bright(sample_scene, tiny_model_dir):
    generate(tiny_model_dir)
    depth = images.image_to_array(bpy.data.images[images.DEPTH_IMAGE])[..., 0]
    assert depth.shape == (256, 384)  # the camera's 3:2 aspect, short side 256
    assert depth.min() == 0.0 and depth.max() == pytest.approx(1.0)
    # The floor runs away from the camera: down its left edge, lower rows are nearer (brighter).
    column = depth[:, 5]
    floor_rows = np.flatnonzero(column > 0)
    assert floor_rows.size > 20
    assert np.all(np.diff(column[floor_rows]) > 0)


def test_running_again_updates_the_same_texture_and_material(sample_scene, tiny_model_dir):
    generate(tiny_model_dir, seed=1)
    first = texture_of("Suzanne")
    counts = (len(bpy.data.images), len(bpy.data.materials))
    generate(tiny_model_dir, seed=2)
    assert (len(bpy.data.images), len(bpy.data.materials)) == counts
    assert len(bpy.data.objects["Suzanne"].material_slots) == 1
    assert not np.array_equal(first, texture_of("Suzanne"))


def test_same_seed_gives_the_same_texture(sample_scene, tiny_model_dir):
    generate(tiny_model_dir, seed=7)
    first = texture_of("Suzanne")
    bpy.data.images.remove(bpy.data.images[texture_name("Suzanne")])
    generate(tiny_model_dir, seed=7)
    np.testing.assert_array_equal(first, texture_of("Suzanne"))


def test_undo_is_possible_and_adjust_last_operation_never_reruns(sample_scene, tiny_model_dir):
    for operator in (bpy.types.SD_DEPTH_TEXTURE_OT_generate,
                     bpy.types.SD_DEPTH_TEXTURE_OT_project_image):  # fmt: skip
        assert "UNDO" in operator.bl_options
        assert "REGISTER" not in operator.bl_options  # no redo panel re-running a generation


def test_capture_depth_writes_a_16_bit_png_matching_the_image(sample_scene, tmp_path):
    path = tmp_path / "depth.png"
    assert bpy.ops.sd_depth_texture.capture_depth(filepath=str(path), resolution=256) == {
        "FINISHED"
    }
    kept = images.image_to_array(bpy.data.images[images.DEPTH_IMAGE])[..., 0]
    written = bpy.data.images.load(str(path))
    written.colorspace_settings.name = "Non-Color"
    assert written.depth in (16, 48, 64) or written.is_float  # 16 bits per channel
    read = images.image_to_array(written)[..., 0]
    assert read.shape == kept.shape
    assert np.abs(read - kept).max() <= 1.0 / 65535 + 1e-6


def test_project_image_puts_the_picture_on_visible_texels(sample_scene, tmp_path):
    picture = np.zeros((512, 768, 3), dtype=np.float32)
    picture[..., 0] = 1.0  # pure red
    path = tmp_path / "red.png"
    image = images.array_to_image("red", picture)
    image.filepath_raw, image.file_format = str(path), "PNG"
    image.save()
    bpy.data.images.remove(image)
    select_only("Cube")

    result = bpy.ops.sd_depth_texture.project_image(filepath=str(path), texture_size=TEXTURE)

    assert result == {"FINISHED"}
    assert "red" not in bpy.data.images  # the source image is not left in the file
    texture = texture_of("Cube")
    painted = ~unpainted(texture) & islands("Cube", TEXTURE)
    assert painted.any()
    assert np.abs(texture[painted][:, :3] - [1.0, 0.0, 0.0]).max() < 1e-6


def test_a_mesh_without_uvs_gets_smart_uv_project(sample_scene, tiny_model_dir):
    cube = bpy.data.objects["Cube"]
    cube.data.uv_layers.remove(cube.data.uv_layers[0])
    select_only("Cube")
    generate(tiny_model_dir)
    assert len(cube.data.uv_layers) == 1
    assert (~unpainted(texture_of("Cube"))).any()


def test_free_model_releases_the_cached_pipeline(sample_scene, tiny_model_dir):
    generate(tiny_model_dir)
    assert model_status() != "not loaded"
    bpy.ops.sd_depth_texture.free_model()
    assert model_status() == "not loaded"


def test_cancel_between_steps_leaves_the_scene_as_it_was(sample_scene, tiny_model_dir):
    before = scene_fingerprint()
    steps_seen = []

    def on_change(_fraction: float, message: str) -> None:
        if "Step" in message and message != progress.last:
            progress.last = message
            steps_seen.append(int(message.rpartition("Step ")[2].split("/")[0]))
            if len(steps_seen) >= 2:
                progress.cancel()

    progress = Progress(on_change)
    progress.last = ""
    request = TextureRequest(
        views=ViewSource(resolution=256, cameras=("",)),
        targets=("Suzanne",),
        generation=GenerationSettings(prompt="moss", steps=4),
        model=preferences.model_spec(str(tiny_model_dir)),
        output=OutputOptions(texture_size=TEXTURE),
    )
    with pytest.raises(CancelledError):
        flow.prepare(request).run(progress)
    assert steps_seen == [1, 2]
    assert scene_fingerprint() == before


def _linked_scene(tmp_path) -> None:
    """A fresh sample scene plus an object linked (read-only) from another .blend."""
    from sd_depth_texture.blender import sample

    bpy.data.objects["Cube"].name = "Rock"
    library = tmp_path / "library.blend"
    bpy.data.libraries.write(str(library), {bpy.data.objects["Rock"]})
    sample.build_sample_scene()
    with bpy.data.libraries.load(str(library), link=True) as (_source, target):
        target.objects = ["Rock"]
    bpy.context.scene.collection.objects.link(target.objects[0])
    select_only("Rock")


def test_capture_depth_works_with_linked_objects_in_view(sample_scene, tmp_path):
    """Depth capture writes nothing to the objects it sees, so read-only ones are fine."""
    _linked_scene(tmp_path)
    assert bpy.data.objects["Rock"].library is not None
    assert bpy.ops.sd_depth_texture.capture_depth(resolution=256) == {"FINISHED"}
    with pytest.raises(RuntimeError, match="linked"):  # texturing it is still refused
        generate(tmp_path / "unused", views=1)


def _prepare_case(case: str, tmp_path, tiny_model_dir) -> dict:
    """Set up one bad input; returns the generate() arguments to use."""
    arguments: dict = {}
    if case == "nothing selected":
        select_only()
    elif case == "not a mesh":
        select_only("Camera")
    elif case == "no faces":
        mesh = bpy.data.meshes.new("Points")
        mesh.from_pydata([(0, 0, 1), (1, 0, 1)], [(0, 1)], [])
        obj = bpy.data.objects.new("Points", mesh)
        bpy.context.scene.collection.objects.link(obj)
        select_only("Points")
    elif case == "no camera":
        bpy.data.objects.remove(bpy.data.objects["Camera"])
    elif case == "out of view":
        bpy.data.objects["Suzanne"].location = (0.0, 20.0, -30.0)
    elif case == "empty prompt":
        arguments["prompt"] = "   "
    elif case == "missing model folder":
        arguments["model"] = str(tmp_path / "no_such_model")
    elif case == "corrupt model":
        broken = tmp_path / "broken_model"
        shutil.copytree(tiny_model_dir, broken)
        weights = next((broken / "unet").glob("*.safetensors"))
        weights.write_bytes(weights.read_bytes()[:1000])
        arguments["model"] = str(broken)
    elif case == "pickle checkpoint":
        checkpoint = tmp_path / "model.ckpt"
        checkpoint.write_bytes(b"\x80\x04not really a pickle")
        arguments["model"] = str(checkpoint)
    elif case == "offline, not cached":
        arguments["model"] = MODEL_ID
    elif case == "linked data":
        _linked_scene(tmp_path)
    return arguments


BAD_INPUTS = {
    "nothing selected": "Nothing is selected",
    "not a mesh": "not a mesh",
    "no faces": "no faces",
    "no camera": "no camera",
    "out of view": "not visible",
    "empty prompt": "prompt is empty",
    "missing model folder": "no_such_model",
    "corrupt model": "(?i)corrupt|damaged|truncated|invalid|incomplete",
    "pickle checkpoint": "(?i)pickle",
    "offline, not cached": "(?i)online access",
    "linked data": "linked",
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_one_clear_message_and_changes_nothing(
    case, sample_scene, tiny_model_dir, tmp_path
):
    cache.free_pipeline()
    arguments = _prepare_case(case, tmp_path, tiny_model_dir)
    before = scene_fingerprint()
    with pytest.raises(RuntimeError, match=BAD_INPUTS[case]) as raised:
        generate(tiny_model_dir, **arguments)
    assert "Traceback" not in str(raised.value)
    assert scene_fingerprint() == before


def test_out_of_memory_is_reported_and_changes_nothing(sample_scene, tiny_model_dir):
    pipe = cache.load_pipeline(preferences.model_spec(str(tiny_model_dir)))

    def exhaust(*_args, **_kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    hook = pipe.unet.register_forward_pre_hook(exhaust)
    before = scene_fingerprint()
    try:
        with pytest.raises(RuntimeError, match=r"(?i)memory"):
            generate(tiny_model_dir)
    finally:
        hook.remove()
    assert scene_fingerprint() == before


def test_viewport_view_uses_the_regions_matrices_and_aspect(sample_scene):
    """The viewport path reads a region's size and its view/window matrices; given the ones a
    viewport has while looking through the camera, it must reproduce the camera's view."""
    from types import SimpleNamespace

    from sd_depth_texture.blender import scene

    depsgraph = bpy.context.evaluated_depsgraph_get()
    camera = bpy.data.objects["Camera"]
    expected = scene.camera_view(sample_scene, camera, depsgraph, 256)
    region = SimpleNamespace(width=1200, height=800)  # 3:2 like the render
    window = camera.calc_matrix_camera(depsgraph, x=1200, y=800)
    region_3d = SimpleNamespace(window_matrix=window, view_matrix=camera.matrix_world.inverted())
    view = scene.viewport_view(region, region_3d, 256)
    assert (view.width, view.height) == (expected.width, expected.height) == (384, 256)
    np.testing.assert_allclose(view.projection, expected.projection, atol=1e-6)
    np.testing.assert_allclose(view.world_to_view, expected.world_to_view, atol=1e-6)
    # A wider region keeps its aspect: the same vertical field of view, more to the sides.
    wide = scene.viewport_view(SimpleNamespace(width=1600, height=800), region_3d, 256)
    assert (wide.width, wide.height) == (512, 256)
