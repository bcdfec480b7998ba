"""Meshes no one means to make: UVs stacked on one another, Array copies sharing one layout,
a vertex at NaN. Each gets a true reason, in one line, and no file is touched on a refusal."""

from __future__ import annotations

import json
import math
from pathlib import Path

import bpy
import numpy as np
from support.fingerprints import folder_fingerprint
from test_safe_files import write_picture

from sd_depth_texture.blender import sample
from sd_depth_texture.cli import main as cli


def _save_with(path: Path, change) -> Path:
    sample.build_sample_scene()
    change(bpy.data.objects["Cube"])
    path.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return path


def _two_stacked_quads(_cube: bpy.types.Object) -> None:
    """An object of two quads on one UV rectangle: one facing the camera, and the one the UV
    raster draws last (and so each texel keeps) behind the camera, out of its view."""
    mesh = bpy.data.meshes.new("Stacked")
    front = [(-1.0, 0.0, 0.5), (1.0, 0.0, 0.5), (1.0, 0.0, 2.0), (-1.0, 0.0, 2.0)]
    behind = [(x, -30.0, z) for x, _, z in front]
    mesh.from_pydata(front + behind, [], [(0, 1, 2, 3), (4, 5, 6, 7)])
    layer = mesh.uv_layers.new(name="UVMap")
    rectangle = [(0.05, 0.1), (0.93, 0.1), (0.93, 0.87), (0.05, 0.87)]  # no centre on a diagonal
    layer.uv.foreach_set("vector", np.array(rectangle * 2).ravel())
    bpy.context.scene.collection.objects.link(bpy.data.objects.new("Stacked", mesh))


def test_uvs_stacked_on_one_another_are_named_as_the_reason_nothing_was_painted(
    tmp_path, addon, capsys
):
    source = _save_with(tmp_path / "scene" / "s.blend", _two_stacked_quads)
    picture = write_picture(tmp_path / "p.png", (0.4, 0.4, 0.4))
    before = folder_fingerprint(tmp_path)
    capsys.readouterr()

    code = cli.main(["project", str(source), "--image", str(picture), "--object", "Stacked",
                     "--texture-size", "64"])  # fmt: skip

    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert code == 1 and len(lines) == 1
    assert "'Stacked' was not painted: its UVs overlap (100% of its texels" in lines[0]
    assert "edge-on" not in lines[0]
    assert folder_fingerprint(tmp_path) == before


def test_array_copies_sharing_one_layout_share_at_most_every_texel(tmp_path, addon):
    def array(cube: bpy.types.Object) -> None:
        modifier = cube.modifiers.new("Array", "ARRAY")
        modifier.count = 3
        modifier.relative_offset_displace = (1.1, 0.0, 0.0)

    source = _save_with(tmp_path / "s.blend", array)
    report = tmp_path / "report.json"
    picture = write_picture(tmp_path / "p.png", (0.4, 0.4, 0.4))
    code = cli.main(["project", str(source), "--image", str(picture), "--object", "Cube",
                     "--texture-size", "64", "--report", str(report)])  # fmt: skip
    assert code == 0
    entry = json.loads(report.read_text())["objects"][0]
    assert 0.9 < entry["shared_texels"] <= 1.0
    assert any(note.startswith("100% of the texels of 'Cube'") for note in entry["notes"])


def test_a_vertex_at_nan_is_named_not_taken_for_an_object_no_view_sees(
    tmp_path, addon, tiny_model_dir, capsys
):
    def broken(cube: bpy.types.Object) -> None:
        cube.data.vertices[0].co = (math.nan, 0.0, 0.0)

    source = _save_with(tmp_path / "scene" / "s.blend", broken)
    before = folder_fingerprint(tmp_path)
    capsys.readouterr()

    code = cli.main(["texture", str(source), "--prompt", "stone", "--model", str(tiny_model_dir),
                     "--object", "Cube", "--views", "3", "--steps", "1", "--resolution", "64",
                     "--texture-size", "64"])  # fmt: skip

    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert code == 1
    assert lines == [
        "error: 'Cube' has 1 vertex position(s) that are not finite numbers (NaN or infinite, "
        "after its modifiers and transform): fix or delete those vertices, or hide the object."
    ]
    assert folder_fingerprint(tmp_path) == before
