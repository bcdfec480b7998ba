"""Cameras framed exactly as Cycles frames them, and the ones the project refuses.

Each camera setting is checked against Cycles' Depth pass rendered at the scene's own
resolution and pixel aspect: the project's view (``scene.camera_view``) keeps its matrices and
is rasterised on Cycles' pixel grid, so silhouettes and depths compare pixel for pixel whatever
the pixel aspect, and whatever the depth map's own size (the frame is the camera's exactly,
even where rounding to multiples of 8 leaves the depth map's pixels not quite square).
Renders are tiny (1 sample, at most 20k pixels). Figures print with ``-s``.
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from support import cycles_render, runs

from sd_depth_texture.blender import sample, scene
from sd_depth_texture.core.errors import TextureError
from sd_depth_texture.core.geometry.depth import capture_depth
from sd_depth_texture.core.geometry.mesh import scene_geometry
from sd_depth_texture.core.geometry.orbit import NamedView
from sd_depth_texture.core.geometry.views import View


@dataclass(frozen=True)
class Setting:
    """A camera and render setting of the sample scene."""

    resolution: tuple[int, int]
    pixel_aspect: tuple[float, float] = (1.0, 1.0)
    sensor_fit: str = "AUTO"
    shift: tuple[float, float] = (0.0, 0.0)
    orthographic: bool = False
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    percentage: int = 100

    @property
    def frame_aspect(self) -> float:
        (x, y), (ax, ay) = self.resolution, self.pixel_aspect
        return x * ax / (y * ay)

    @property
    def rendered(self) -> tuple[int, int]:
        """The size Cycles renders: the resolution at its percentage."""
        return tuple(side * self.percentage // 100 for side in self.resolution)


def sample_with(setting: Setting) -> tuple[bpy.types.Scene, bpy.types.Object]:
    """The sample scene with its camera and render set up as ``setting`` says."""
    context_scene = sample.build_sample_scene(setting.resolution)
    camera = context_scene.camera
    camera.data.sensor_fit = setting.sensor_fit
    camera.data.shift_x, camera.data.shift_y = setting.shift
    if setting.orthographic:
        camera.data.type = "ORTHO"
        camera.data.ortho_scale = 6.0
    camera.scale = setting.scale
    cycles_render.use_cycles(context_scene, *setting.resolution, samples=1, filter_width=0.01)
    context_scene.render.pixel_aspect_x, context_scene.render.pixel_aspect_y = setting.pixel_aspect
    context_scene.render.resolution_percentage = setting.percentage
    return context_scene, camera


@dataclass
class Agreement:
    iou: float
    interior: int  # pixels compared for depth: one object all around, in both
    median_error: float
    max_error: float
    generation: tuple[int, int]  # the depth map's size for the view


def agreement_with_cycles(setting: Setting, short_side: int = 64) -> Agreement:
    """Cycles' Depth pass at the setting's resolution against the project's view on that grid."""
    context_scene, camera = sample_with(setting)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    view = scene.camera_view(context_scene, camera, depsgraph, short_side)
    objects = scene.visible_meshes(context_scene, bpy.context.view_layer)
    for number, obj in enumerate(objects, start=1):
        obj.pass_index = number
    reference, index = cycles_render.render_depth(context_scene)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    geometry = scene_geometry([scene.mesh_arrays(obj, depsgraph) for obj in objects])
    on_grid = View(view.world_to_view, view.projection, *setting.rendered)
    capture = capture_depth(on_grid, geometry.vertices, geometry.triangles)
    theirs, ours = np.isfinite(reference), capture.foreground
    labels = np.zeros(index.shape, dtype=np.int32)
    labels[ours] = geometry.owner[capture.raster.triangle[ours]] + 1
    # Depth is compared where one object fills the 3x3 neighbourhood in both renders.
    same = (labels == index) & (index > 0)
    for found in (labels, index):
        window = sliding_window_view(np.pad(found, 1, mode="edge"), (3, 3))
        same &= (window == found[..., None, None]).all(axis=(2, 3))
    error = np.abs(capture.view_depth[same] - reference[same]) / reference[same]
    return Agreement(
        iou=float((theirs & ours).sum() / max((theirs | ours).sum(), 1)),
        interior=int(same.sum()),
        median_error=float(np.median(error)) if error.size else np.inf,
        max_error=float(error.max()) if error.size else np.inf,
        generation=(view.width, view.height),
    )


SETTINGS = {
    "square pixels, landscape": Setting((96, 64)),
    "16:9 at 5 %, a depth map not quite 16:9": Setting((1920, 1080), percentage=5),
    "anamorphic 2:1 pixels": Setting((96, 64), pixel_aspect=(2.0, 1.0)),
    "200:1 pixels": Setting((20, 1000), pixel_aspect=(200.0, 1.0)),
    "1:200 pixels": Setting((1000, 20), pixel_aspect=(1.0, 200.0)),
    "1000 x 10 resolution": Setting((1000, 10)),
    "10 x 1000 resolution": Setting((10, 1000)),
    "sensor fit vertical, landscape": Setting((96, 64), sensor_fit="VERTICAL"),
    "sensor fit horizontal, portrait": Setting((64, 96), sensor_fit="HORIZONTAL"),
    "sensor fit auto, portrait": Setting((64, 96)),
    "sensor fit vertical, 2:1 pixels": Setting((96, 64), (2.0, 1.0), sensor_fit="VERTICAL"),
    "lens shift": Setting((96, 64), shift=(0.2, -0.15)),
    "lens shift, 2:1 pixels, vertical fit": Setting((96, 64), (2.0, 1.0), "VERTICAL", (-0.1, 0.3)),
    "orthographic": Setting((96, 64), orthographic=True),
    "orthographic, portrait, vertical fit": Setting(
        (64, 96), sensor_fit="VERTICAL", orthographic=True
    ),
    "orthographic, shift, 2:1 pixels": Setting(
        (96, 64), (2.0, 1.0), shift=(0.1, 0.2), orthographic=True
    ),
    "scaled camera": Setting((96, 64), scale=(1.0, 2.0, 0.5)),
    "scaled orthographic camera": Setting((96, 64), scale=(2.0, 2.0, 2.0), orthographic=True),
    "mirrored camera": Setting((96, 64), scale=(-1.0, 1.0, 1.0)),
}


@pytest.mark.parametrize("label", list(SETTINGS))
def test_the_view_frames_what_cycles_renders(label: str) -> None:
    setting = SETTINGS[label]
    found = agreement_with_cycles(setting)
    width, height = found.generation
    print(
        f"\n[{label}] render {setting.rendered[0]}x{setting.rendered[1]}, pixel aspect "
        f"{setting.pixel_aspect[0]:g}:{setting.pixel_aspect[1]:g}, depth map {width}x{height}: "
        f"silhouette IoU {found.iou:.5f}; relative depth error on {found.interior} interior "
        f"pixels: median {found.median_error:.1e}, max {found.max_error:.1e}"
    )
    # The depth map has the frame's shape (pixel aspect included), its short side as asked.
    assert min(width, height) == 64
    assert width / height == pytest.approx(setting.frame_aspect, rel=8 / 64)
    # Same frame, same pixel centres: silhouettes may differ only where an edge passes within
    # float rounding of a centre, and depths agree to float32 rounding.
    assert found.iou > 0.995
    assert found.interior > 400
    assert found.median_error < 1e-5
    assert found.max_error < 1e-3


@pytest.mark.parametrize("label", ["200:1 pixels", "1000 x 10 resolution"])
def test_extreme_frames_paint_the_texels_they_see(label: str) -> None:
    """A thin strip of a frame still textures what it sees (the strip across Suzanne)."""
    context_scene, camera = sample_with(SETTINGS[label])
    view = scene.camera_view(context_scene, camera, bpy.context.evaluated_depsgraph_get(), 32)
    picture = np.full((view.height, view.width, 3), 0.8, dtype=np.float32)
    outcome = runs.project(
        ["Suzanne"], [picture], views=[NamedView(camera.name, view)], texture_size=128, margin=0
    )
    assert outcome.coverage["Suzanne"] > 0.003


def test_a_frame_too_long_for_memory_is_refused_naming_the_size() -> None:
    context_scene, camera = sample_with(Setting((10000, 10)))
    depsgraph = bpy.context.evaluated_depsgraph_get()
    with pytest.raises(TextureError, match=r"512000 x 512 depth map") as refused:
        scene.camera_view(context_scene, camera, depsgraph, 512)
    assert "\n" not in str(refused.value) and "short side of at most 176" in str(refused.value)
    assert scene.camera_view(context_scene, camera, depsgraph, 176).width == 176_000


def test_a_camera_scaled_to_zero_is_refused_naming_it() -> None:
    context_scene, camera = sample_with(Setting((96, 64), scale=(1.0, 0.0, 1.0)))
    with pytest.raises(TextureError, match=r"The camera 'Camera' is scaled to zero") as refused:
        scene.camera_view(context_scene, camera, bpy.context.evaluated_depsgraph_get(), 64)
    assert "\n" not in str(refused.value)


def test_a_panoramic_camera_is_refused_naming_it() -> None:
    context_scene, camera = sample_with(Setting((96, 64)))
    camera.data.type = "PANO"
    with pytest.raises(TextureError) as refused:
        scene.camera_view(context_scene, camera, bpy.context.evaluated_depsgraph_get(), 64)
    message = str(refused.value)
    assert "'Camera'" in message and "\n" not in message
    assert "only perspective and orthographic cameras are supported" in message
