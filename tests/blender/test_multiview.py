"""Whole-object texturing: views, keep/refine/generate, fill across seams, the full run."""

from __future__ import annotations

import json

import bpy
import numpy as np
import pytest
import torch
from support.fingerprints import scene_fingerprint

from sd_depth_texture.blender import flow, images, preferences, sample, scene
from sd_depth_texture.blender.targets import object_front, texture_name
from sd_depth_texture.core.bake.blending import (
    TextureState,
    edge_falloff,
    falloff_pixels,
    integrate,
)
from sd_depth_texture.core.bake.color import UNFILLED_GREY
from sd_depth_texture.core.bake.fill import fill_unpainted
from sd_depth_texture.core.bake.surface import texel_surface
from sd_depth_texture.core.bake.visibility import SeenTexels, depth_edges, reliable_texels
from sd_depth_texture.core.diffusion.cache import load_pipeline
from sd_depth_texture.core.diffusion.generate import generate
from sd_depth_texture.core.diffusion.kept_regions import keep_regions_hook
from sd_depth_texture.core.diffusion.settings import GenerationSettings, ModelSpec
from sd_depth_texture.core.errors import CancelledError
from sd_depth_texture.core.geometry.depth import capture_depth
from sd_depth_texture.core.geometry.orbit import object_bounds, orbit_views, ring_azimuths
from sd_depth_texture.core.progress import Progress
from sd_depth_texture.request import OutputOptions, TextureRequest, ViewSource

# Views


def test_ring_starts_at_the_front_and_ends_at_the_back():
    assert ring_azimuths(8) == [0.0, 45.0, -45.0, 90.0, -90.0, 135.0, -135.0, 180.0]
    assert ring_azimuths(3)[0] == 0.0 and len(ring_azimuths(3)) == 3


def test_orbit_views_frame_the_object_from_the_named_sides():
    center, radius = np.array([1.0, 2.0, 3.0]), 0.5
    views = orbit_views(center, radius, 10, size=64)
    assert [v.label for v in views] == [
        "front", "front right", "front left", "right side", "left side", "back right",
        "back left", "back", "top", "bottom",
    ]  # fmt: skip
    assert views[0].prompt_hint == "front view"
    front, back, top = views[0].view, views[7].view, views[8].view
    assert front.eye[1] < center[1] and back.eye[1] > center[1]  # front is the -Y side
    assert front.eye[2] > center[2]  # a moderate elevation
    assert top.eye[2] > center[2] + radius and np.allclose(top.eye[:2], center[:2])
    # The whole bounding sphere is in frame in every view, and fills most of it.
    sphere = center + radius * np.array(
        [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]]
    )
    for named in views:
        xy = named.view.project(sphere).xy
        assert np.all((xy >= 0) & (xy <= 64)), named.label
        assert np.ptp(xy, axis=0).max() > 0.8 * 64
    assert len(orbit_views(center, radius, 10, include_bottom=False)) == 9


def test_orbit_follows_the_objects_own_front(lone_suzanne):
    """Turn Suzanne to face +X: the front view must look at her face from +X."""
    import math

    lone_suzanne.rotation_euler = (0.0, 0.0, math.radians(90))
    bpy.context.view_layer.update()
    assert np.allclose(object_front(lone_suzanne), [1.0, 0.0, 0.0], atol=1e-6)
    views = flow.orbit_for(lone_suzanne, 10, 64)
    front, back, top = views[0].view, views[7].view, views[8].view
    center = np.array(lone_suzanne.location)
    assert front.eye[0] > center[0] + 1 and abs(front.eye[1] - center[1]) < 1e-6
    assert back.eye[0] < center[0] - 1
    # From above, the face (front) is at the bottom of the picture.
    face = top.project(center[None] + [[1.0, 0.0, 0.0]]).xy[0]
    assert face[1] > 32
    lone_suzanne.rotation_euler = (math.radians(90), 0.0, 0.0)  # tilted by an importer
    bpy.context.view_layer.update()
    assert np.allclose(object_front(lone_suzanne), [0.0, -1.0, 0.0])


# ----------------------------------------------------------------------------------------------
# Integration rules


def seen(index, facing) -> SeenTexels:
    index = np.asarray(index)
    count = index.size
    return SeenTexels(
        index=index,
        xy=np.full((count, 2), 0.5),
        facing=np.asarray(facing, dtype=np.float32),
        depth=np.ones(count),
        tolerance=np.full(count, 0.01),
    )


class FlatCapture:
    """The least a capture needs for sampling: a 1x1 view at depth 1."""

    class view:
        width = height = 1
        is_orthographic = True
        projection = np.diag([1.0, 1.0, -1.0, 1.0])

    view_depth = np.ones((1, 1), dtype=np.float32)


def picture(value) -> np.ndarray:
    return np.full((1, 1, 3), value, dtype=np.float32)


def test_every_view_blends_in_by_cos_k_and_the_keep_decision_is_recorded_apart():
    state = TextureState.empty(3)
    first = integrate(state, seen([0, 1], [0.9, 0.5]), picture(1.0), FlatCapture)
    assert (first.new, first.refined, first.kept) == (1.0, 0.0, 0.0)
    assert np.allclose(state.color[:2], 1.0) and np.allclose(state.color[2], 0.5)

    second = integrate(state, seen([0, 1, 2], [0.6, 0.95, 0.8]), picture(0.0), FlatCapture)
    assert second.new == pytest.approx(1 / 3)  # texel 2
    assert second.refined == pytest.approx(1 / 3)  # texel 1: seen much more squarely now
    assert second.kept == pytest.approx(1 / 3)  # texel 0: kept while this view is denoised
    for texel, (w_old, w_new) in enumerate([(0.9**4, 0.6**4), (0.5**4, 0.95**4)]):
        assert np.allclose(state.color[texel], w_old / (w_old + w_new))  # cos^k mean
    assert np.allclose(state.color[2], 0.0)
    assert state.best_facing[1] == pytest.approx(0.95)
    assert second.overlap_difference == pytest.approx(1.0)


def strip_mesh():
    """Two quads sharing an edge (vertices 1 and 4) but far apart in UV space: a seam."""
    vertices = np.array(
        [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [1, 0, 0.0], [2, 0, 0], [2, 1, 0]],
        dtype=float,
    )
    vertices[4] = vertices[1]  # same position; shared index below carries the seam
    triangles = np.array([[0, 1, 2], [0, 2, 3], [1, 5, 6], [1, 6, 2]])
    uv = np.array(
        [[0.05, 0.05], [0.45, 0.05], [0.45, 0.45], [0.05, 0.45],  # left quad
         [0.55, 0.55], [0.95, 0.55], [0.95, 0.95], [0.55, 0.95]],  # right quad, elsewhere
    )  # fmt: skip
    uv_triangles = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    return vertices, triangles, uv, uv_triangles


def test_fill_crosses_uv_seams_over_the_mesh():
    vertices, triangles, uv, uv_triangles = strip_mesh()
    surface = texel_surface(vertices, triangles, uv, uv_triangles, 64)
    state = TextureState.empty(surface.texel.size)
    left = surface.triangle < 2
    state.color[left] = [1.0, 0.2, 0.0]
    state.weight[left] = state.best_facing[left] = 1.0
    colors, rings = fill_unpainted(surface, state, triangles, len(vertices))
    assert rings >= 1
    right = ~left
    assert not np.any(np.all(colors[right] == 0.5, axis=1))  # no default colour left
    # Right-quad texels next to the shared edge (x ~ 1) take the left quad's colour.
    near_seam = right & (surface.position[:, 0] < 1.1)
    assert np.abs(colors[near_seam] - [1.0, 0.2, 0.0]).max() < 1e-5


# ----------------------------------------------------------------------------------------------
# Latent blending


def test_kept_latent_cells_end_exactly_as_the_known_picture():
    pipe = load_pipeline(ModelSpec(source="random", device="cpu"))
    depth = np.tile(np.linspace(0.1, 1.0, 64, dtype=np.float32), (64, 1))
    known = np.zeros((64, 64, 3), np.float32)
    known[..., 0] = 0.8
    known[..., 1] = np.linspace(0, 1, 64)[None]
    keep = np.zeros((64, 64), np.float32)
    keep[:, :32] = 1.0
    hook = keep_regions_hook(pipe, known, keep, seed=3)
    seen_latents = []

    def recording_hook(done, latents):
        out = hook(done, latents)
        seen_latents.append(out)
        return out

    settings = GenerationSettings(prompt="stone", steps=4, seed=3)
    generate(pipe, depth, settings, on_latents=recording_hook)
    with torch.no_grad():
        image = torch.from_numpy(known.transpose(2, 0, 1))[None] * 2 - 1
        known_latents = pipe.vae.encode(image).latent_dist.mean * pipe.vae.config.scaling_factor
    final = seen_latents[-1]
    np.testing.assert_allclose(final[..., :4].numpy(), known_latents[..., :4].numpy(), atol=1e-5)
    assert not torch.allclose(final[..., 4:], known_latents[..., 4:], atol=1e-2)  # generated


# ----------------------------------------------------------------------------------------------
# Whole-object runs in Blender with the tiny pipeline


@pytest.fixture
def lone_suzanne(addon):
    """Suzanne alone (no floor), so every side including the bottom can be seen."""
    sample.build_sample_scene()
    for name in ("Floor", "Cube"):
        bpy.data.objects.remove(bpy.data.objects[name])
    bpy.ops.object.select_all(action="DESELECT")
    bpy.data.objects["Suzanne"].select_set(True)
    return bpy.data.objects["Suzanne"]


def test_whole_object_run_fills_every_texel_and_keeps_what_it_kept(
    lone_suzanne, tiny_model_dir, tmp_path
):
    report_path = tmp_path / "report.json"
    result = bpy.ops.sd_depth_texture.generate(
        prompt="ceramic", model=str(tiny_model_dir), steps=2, views=6, resolution=256,
        texture_size=128, report_path=str(report_path),
    )  # fmt: skip
    assert result == {"FINISHED"}
    report = json.loads(report_path.read_text())["objects"][0]
    labels = [view["label"] for view in report["views"]]
    assert labels == ["front", "right side", "left side", "back", "top", "bottom"]
    assert report["views"][0]["new"] == 1.0
    assert all(view["kept"] > 0 for view in report["views"][1:])  # consistency: earlier kept
    assert 0.8 < report["coverage_before_fill"] < 1.0
    assert set(report["psnr_per_view"]) == set(labels)
    assert report["colour_spread"] is not None
    assert {"views", "picture", "projection", "blend"} <= set(report["views"][0]["seconds"])
    # Generated views are colour-matched by default, once enough is painted to fit against.
    assert not report["views"][0]["color_match"]["applied"]
    assert any(view["color_match"]["applied"] for view in report["views"][1:])
    assert report["seams"]["view_border"]["pairs"] > 0 and report["seams"]["uv_seam"]["pairs"] > 0

    texture = images.image_to_array(bpy.data.images[texture_name("Suzanne")])
    depsgraph = bpy.context.evaluated_depsgraph_get()
    mesh = scene.mesh_arrays(lone_suzanne, depsgraph)
    islands = texel_surface(mesh.vertices, mesh.triangles, mesh.uv, mesh.uv_triangles, 128).mask
    assert np.all(texture[islands][:, 3] == 1.0)  # every island texel filled
    grey = np.all(np.abs(texture[islands][:, :3] - UNFILLED_GREY) < 1 / 255, axis=1)
    assert grey.mean() < 0.01


def test_folding_views_in_any_order_gives_the_same_colours(lone_suzanne):
    """Fold Suzanne's orbit views one by one, forwards and backwards: the same texture."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    mesh = scene.mesh_arrays(lone_suzanne, depsgraph)
    surface = texel_surface(mesh.vertices, mesh.triangles, mesh.uv, mesh.uv_triangles, 128)
    rng = np.random.default_rng(0)
    center, radius = object_bounds(mesh.vertices)
    folds = []
    for named in orbit_views(center, radius, 6, size=128):
        capture = capture_depth(named.view, mesh.vertices, mesh.triangles)
        edges = depth_edges(capture)
        falloff = edge_falloff(edges, falloff_pixels(128, 128))
        texels = reliable_texels(surface, capture, edges)
        folds.append((texels, rng.random((128, 128, 3)).astype(np.float32), capture, falloff))
    states = [TextureState.empty(surface.texel.size) for _ in range(2)]
    for state, order in zip(states, (folds, folds[::-1]), strict=True):
        for texels, colours, capture, falloff in order:
            integrate(state, texels, colours, capture, falloff=falloff)
    assert states[0].painted.mean() > 0.6
    np.testing.assert_array_equal(states[0].painted, states[1].painted)
    np.testing.assert_allclose(states[0].color, states[1].color, atol=2e-6)


def test_cancelling_a_whole_object_run_changes_nothing(lone_suzanne, tiny_model_dir):
    lone_suzanne.data.uv_layers.remove(lone_suzanne.data.uv_layers[0])  # run must make one
    before = scene_fingerprint()
    steps = []

    def on_change(_fraction: float, message: str) -> None:
        if "Step" in message and message not in steps:
            steps.append(message)
            if len(steps) >= 3:  # in the second view
                progress.cancel()

    progress = Progress(on_change)
    request = TextureRequest(
        views=ViewSource(resolution=128, orbit=4),
        targets=(lone_suzanne.name,),
        generation=GenerationSettings(prompt="x", steps=2),
        model=preferences.model_spec(str(tiny_model_dir)),
        output=OutputOptions(texture_size=64),
    )
    with pytest.raises(CancelledError):
        flow.prepare(request).run(progress)
    assert scene_fingerprint() == before  # the UV map made for the run is gone again


def test_command_line_whole_object_with_report(tmp_path, tiny_model_dir, addon):
    from sd_depth_texture.cli import main as cli

    sample.build_sample_scene()
    source = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(source))
    report = tmp_path / "report.json"
    code = cli.main(
        ["texture", str(source), "--prompt", "oak", "--model", str(tiny_model_dir), "--steps",
         "1", "--views", "4", "--object", "Suzanne", "--texture-size", "64", "--resolution", "128",
         "--report", str(report)]
    )  # fmt: skip
    assert code == 0
    data = json.loads(report.read_text())
    assert [o["name"] for o in data["objects"]] == ["Suzanne"]
    notes = data["objects"][0]["notes"]
    assert any("bottom view skipped" in note for note in notes)  # the floor hides it
    assert (tmp_path / "textures" / "scene_textured" / "Suzanne_SD_Texture.png").is_file()


def test_views_from_a_camera_collection(lone_suzanne, tiny_model_dir):
    rig = bpy.data.collections.new("Rig")
    bpy.context.scene.collection.children.link(rig)
    for name, location in (("A", (0, -6, 1)), ("B", (6, 0, 1)), ("C", (0, 6, 1))):
        camera = sample.add_camera(name, location, (0, 0, 1))
        bpy.context.scene.collection.objects.unlink(camera)
        rig.objects.link(camera)
    result = bpy.ops.sd_depth_texture.generate(
        prompt="wood", model=str(tiny_model_dir), steps=1, camera_collection="Rig",
        texture_size=64, resolution=128,
    )  # fmt: skip
    assert result == {"FINISHED"}
    with pytest.raises(RuntimeError, match="no collection named"):
        bpy.ops.sd_depth_texture.generate(
            prompt="wood", model=str(tiny_model_dir), camera_collection="Nope"
        )
