"""A batch asks for PBR maps like the texture command: each asset's maps beside its texture,
recorded in its manifest line."""

from __future__ import annotations

from pathlib import Path

import bpy

from sd_depth_texture.batch import records
from sd_depth_texture.cli import main as cli


def test_a_batch_writes_each_assets_maps_beside_its_texture(tmp_path, addon, tiny_model_dir):
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.5, segments=12, ring_count=6)
    vase = bpy.context.active_object
    vase.name = "Vase"
    vase.asset_mark()
    library = tmp_path / "library"
    library.mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(library / "props.blend"))
    out = tmp_path / "out"

    code = cli.main(
        ["batch", str(library), "--out", str(out), "--model", str(tiny_model_dir), "--prompt",
         "a vase", "--steps", "1", "--resolution", "64", "--texture-size", "64",
         "--preview-size", "16", "--contact-sheet", "none", "--maps", "albedo,roughness",
         "--maps-model", "random"]
    )  # fmt: skip

    assert code == 0
    names = sorted(path.name for path in out.rglob("Vase_SD_*.png"))
    assert names == ["Vase_SD_Albedo.png", "Vase_SD_Roughness.png", "Vase_SD_Texture.png"]
    done = [line for line in records.Manifest(str(out / records.MANIFEST_NAME)).records()
            if line["status"] == records.DONE]  # fmt: skip
    assert len(done) == 1
    assert done[0]["record"]["maps"] == ["albedo", "roughness"]
    assert done[0]["record"]["maps_model"]["pipeline"] == "MarigoldIntrinsicsPipeline"
    assert all(Path(path).is_file() for path in out.rglob("*.png"))
