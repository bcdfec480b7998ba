"""A user's images that happen to carry a name the add-on uses are never changed or removed."""

from __future__ import annotations

import bpy
import numpy as np

from sd_depth_texture.blender import images
from sd_depth_texture.blender.images import DEPTH_MARK


def test_writing_a_depth_png_leaves_a_users_image_of_the_scratch_name_alone(tmp_path, addon):
    bpy.ops.wm.read_homefile(use_empty=True)
    mine = images.array_to_image(
        "SD Depth (export)", np.full((4, 4, 3), 0.25, np.float32), float_buffer=True
    )
    mine.use_fake_user = True
    depth = np.linspace(0.0, 1.0, 48, dtype=np.float32).reshape(6, 8)

    images.save_depth_png(depth, str(tmp_path / "depth.png"), bpy.context.scene)

    kept = bpy.data.images.get("SD Depth (export)")
    assert kept is not None and kept == mine and tuple(kept.size) == (4, 4)
    assert np.allclose(images.image_to_array(kept)[..., :3], 0.25)
    assert [image.name for image in bpy.data.images] == ["SD Depth (export)"]
    written = bpy.data.images.load(str(tmp_path / "depth.png"))
    assert tuple(written.size) == (8, 6)


def test_a_users_image_called_sd_depth_is_left_alone_and_the_depth_kept_beside_it(sample_scene):
    mine = images.array_to_image(  # float, as the depth map is: it used to be taken over
        "SD Depth", np.full((4, 4, 3), 0.25, np.float32), float_buffer=True
    )
    before = images.image_to_array(mine).copy()
    assert bpy.ops.sd_depth_texture.capture_depth(resolution=64) == {"FINISHED"}
    assert bpy.data.images["SD Depth"] == mine and DEPTH_MARK not in mine
    np.testing.assert_array_equal(images.image_to_array(mine), before)
    kept = images.depth_image()
    assert kept is not None and kept != mine and kept[DEPTH_MARK] and kept.packed_file
    assert bpy.ops.sd_depth_texture.capture_depth(resolution=64) == {"FINISHED"}
    assert images.depth_image() == kept  # the next capture reuses the add-on's own
