"""FLUX.1 Depth through every door (command line, operator, batch) with the tiny FLUX pipeline
saved to disk, and each wrong combination's one line, with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import bpy
import numpy as np
import pytest
from support.fingerprints import folder_fingerprint
from support.textures import unpainted

from sd_depth_texture.batch import records
from sd_depth_texture.blender import images, sample
from sd_depth_texture.blender.targets import texture_name
from sd_depth_texture.cli import main as cli
from sd_depth_texture.core.diffusion import cache
from sd_depth_texture.core.diffusion.backends.flux import FLUX_DEPTH, FLUX_SCHEDULER
from sd_depth_texture.defaults import FLUX_LICENCE

FAST = ["--steps", "2", "--texture-size", "64", "--resolution", "128", "--guidance", "10"]


def texture_argv(blend: Path, model: Path, report: Path, *extra: str) -> list[str]:
    return [
        "texture", str(blend), "--prompt", "verdigris bronze", "--model", str(model),
        "--object", "Suzanne", "--report", str(report), *FAST, *extra,
    ]  # fmt: skip


def flux_record(report: Path) -> dict:
    record = json.loads(report.read_text())["record"]
    assert record["model"]["backend"] == FLUX_DEPTH.name
    assert record["model"]["pipeline"] == "FluxControlPipeline"
    assert record["model"]["licence"] == FLUX_LICENCE
    assert {view["scheduler"] for view in record["views"]} == {FLUX_SCHEDULER}
    assert all(view["negative_prompt"] is None for view in record["views"])
    return record


def test_one_view_from_the_command_line(sample_blend, tiny_flux_dir, tmp_path, capsys):
    report = tmp_path / "report.json"
    assert cli.main(texture_argv(sample_blend, tiny_flux_dir, report)) == 0
    err = capsys.readouterr().err
    assert "FLUX.1 [dev] Non-Commercial License" in err  # shown where the model is chosen
    record = flux_record(report)
    assert [view["label"] for view in record["views"]] == ["Camera"]
    bpy.ops.wm.open_mainfile(filepath=str(sample_blend.with_name("sample_textured.blend")))
    texture = images.image_to_array(bpy.data.images[texture_name("Suzanne")])
    assert (~unpainted(texture)).any()


def test_whole_object_with_the_base_and_its_depth_lora(
    sample_blend, tiny_flux_base_dir, tiny_flux_depth_lora, tmp_path
):
    report = tmp_path / "report.json"
    argv = texture_argv(
        sample_blend, tiny_flux_base_dir, report,
        "--views", "4", "--depth-lora", str(tiny_flux_depth_lora),
    )  # fmt: skip
    assert cli.main(argv) == 0
    record = flux_record(report)
    [lora] = record["model"]["loras"]
    assert lora["role"] == "depth control" and lora["name"] == tiny_flux_depth_lora.name
    assert str(tiny_flux_depth_lora.parent) not in json.dumps(record["model"])  # no folders
    assert record["settings"]["model"]["depth_lora"] == str(tiny_flux_depth_lora)
    # A ring of two, then top; the floor hides the bottom view.
    assert [view["label"] for view in record["views"]] == ["front", "back", "top"]
    objects = json.loads(report.read_text())["objects"][0]
    assert objects["views"][-1]["kept"] > 0  # the top view held what front and back painted


@pytest.mark.parametrize("views", [1, 3])
def test_the_operator_paints_one_view_or_all_around(views, addon, tiny_flux_dir, tmp_path):
    sample.build_sample_scene()
    bpy.ops.object.select_all(action="DESELECT")
    bpy.data.objects["Suzanne"].select_set(True)
    report = tmp_path / "report.json"
    result = bpy.ops.sd_depth_texture.generate(
        prompt="glazed ceramic", model=str(tiny_flux_dir), steps=2, views=views, resolution=128,
        texture_size=64, guidance=10.0, report_path=str(report),
    )  # fmt: skip
    assert result == {"FINISHED"}
    assert len(flux_record(report)["views"]) == views
    texture = images.image_to_array(bpy.data.images[texture_name("Suzanne")])
    assert np.all(texture[..., 3] == 1.0)
    assert (~unpainted(texture)).any()


@pytest.mark.parametrize("views", [1, 3])
def test_the_batch_textures_an_asset_with_flux(views, addon, tiny_flux_dir, tmp_path):
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.mesh.primitive_cube_add()
    cube = bpy.context.active_object
    cube.name = "Crate"
    cube.asset_mark()
    library = tmp_path / "library"
    library.mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(library / "props.blend"))
    out = tmp_path / "out"
    argv = [
        "batch", str(library), "--out", str(out), "--model", str(tiny_flux_dir),
        "--prompt", "a wooden crate", "--steps", "2", "--resolution", "64",
        "--texture-size", "64", "--preview-size", "64", "--views", str(views),
    ]  # fmt: skip
    assert cli.main(argv) == 0
    [entry] = records.Manifest(str(out / records.MANIFEST_NAME)).read().values()
    assert entry["status"] == "done"
    assert entry["record"]["model"]["backend"] == FLUX_DEPTH.name
    assert len(entry["record"]["views"]) == views


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("base without lora", "FLUX.1-dev base without depth control: give the depth LoRA"),
        ("depth model with lora", "already a FLUX depth model: it takes no depth LoRA"),
        ("sd2 with lora", "a depth LoRA goes with the FLUX.1-dev base only"),
        ("pickled lora", "pickle weights"),
        ("negative prompt", "FLUX.1 Depth takes no negative prompt"),
    ],
)
def test_wrong_combinations_say_so_and_write_nothing(
    case, message, sample_blend, tiny_flux_dir, tiny_flux_base_dir, tiny_flux_depth_lora,
    tiny_model_dir, tmp_path, capsys,
):  # fmt: skip
    pickled = tmp_path / "depth.ckpt"
    pickled.write_bytes(b"never opened")
    model, extra = {
        "base without lora": (tiny_flux_base_dir, []),
        "depth model with lora": (tiny_flux_dir, ["--depth-lora", str(tiny_flux_depth_lora)]),
        "sd2 with lora": (tiny_model_dir, ["--depth-lora", str(tiny_flux_depth_lora)]),
        "pickled lora": (tiny_flux_base_dir, ["--depth-lora", str(pickled)]),
        "negative prompt": (tiny_flux_dir, ["--negative-prompt", "blurry"]),
    }[case]
    cache.free_pipeline()
    before = folder_fingerprint(sample_blend.parent)
    code = cli.main(texture_argv(sample_blend, model, tmp_path / "report.json", *extra))
    err = capsys.readouterr().err
    assert code == 1
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert message in line
    if case == "negative prompt":
        assert "--negative-prompt" in line  # worded for this door
    if "lora" in case and case != "pickled lora":
        assert "--depth-lora" in line
    assert folder_fingerprint(sample_blend.parent) == before
    assert not (tmp_path / "report.json").exists()
