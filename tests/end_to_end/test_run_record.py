"""One run record, built once per run and handed to every writer: the JSON report, the texture
PNG (files and packed images) and, through the batch, its manifest lines and contact sheet."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import bpy
from PIL import Image
from test_one_flow import picture_file

from sd_depth_texture.blender import images
from sd_depth_texture.cli import main as cli
from sd_depth_texture.core.diffusion import cache
from sd_depth_texture.core.record import GENERATED, PROJECTED, RECORD_SCHEMA
from sd_depth_texture.version import extension_version

FAST = ["--steps", "2", "--resolution", "64", "--texture-size", "64"]


def png_record(path: str | Path) -> dict:
    with Image.open(path) as image:
        return json.loads(image.text[images.RECORD_KEY])


def test_a_whole_object_run_records_what_each_view_was_really_sent(
    sample_blend, tiny_model_dir, tmp_path, capsys
):
    cache.free_pipeline()  # this run loads the model: the record says so
    report = tmp_path / "report.json"
    argv = ["texture", str(sample_blend), "--prompt", "oak bark", "--negative-prompt", "blur",
            "--seed", "40", "--views", "3", "--object", "Suzanne", "--model",
            str(tiny_model_dir), "--report", str(report), "--scheduler", "ddim", *FAST]  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr().err
    record = json.loads(report.read_text())["record"]
    assert record["schema"] == RECORD_SCHEMA and record["version"] == extension_version()
    assert record["origin"] == GENERATED
    model = record["model"]
    assert model["source"] == str(tiny_model_dir) and model["kind"] == "folder"
    assert model["loaded"] is True and model["backend"] == "sd2-depth"
    views = record["views"]
    assert len(views) == 3 and views[0]["label"] == "front"
    for number, view in enumerate(views):
        assert view["prompt"].startswith("oak bark, ")  # as sent, with the view's words
        assert view["prompt"].endswith(" view") and view["prompt"] != "oak bark, "
        assert view["seed"] == 40 + number  # the base seed plus the view's number
        assert view["negative_prompt"] == "blur" and view["steps"] == 2
        assert view["scheduler"] == "ddim" and view["origin"] == GENERATED
        assert view["targets"] == ["Suzanne"] and len(view["camera"]["world_to_view"]) == 4
    # The texture file carries the same record.
    texture = json.loads(report.read_text())["objects"][0]["texture"]
    assert png_record(texture)["views"] == views
    # Run again: the model was already loaded.
    assert cli.main([*argv[: -len(FAST)], *FAST, "--output", str(tmp_path / "b.blend")]) == 0
    assert json.loads(report.read_text())["record"]["model"]["loaded"] is False


def test_a_projection_records_its_images_and_makes_no_generation_claim(
    sample_blend, tmp_path, capsys
):
    picture = picture_file(tmp_path / "photo.png", (0.2, 0.5, 0.7))
    report = tmp_path / "report.json"
    argv = ["project", str(sample_blend), "--image", str(picture), "--report", str(report),
            "--resolution", "64", "--texture-size", "64"]  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr().err
    record = json.loads(report.read_text())["record"]
    assert record["origin"] == PROJECTED and record["model"] is None
    (view,) = record["views"]
    assert view["image"] == {
        "name": "photo.png",
        "sha256": hashlib.sha256(picture.read_bytes()).hexdigest(),
    }
    assert view["prompt"] is None and view["seed"] is None


def test_a_packed_texture_carries_the_record_too(sample_scene, tiny_model_dir):
    """An unsaved file's texture is packed: the packed PNG holds the record as a file would."""
    result = bpy.ops.sd_depth_texture.generate(
        prompt="moss", steps=1, resolution=64, texture_size=64, model=str(tiny_model_dir)
    )
    assert result == {"FINISHED"}
    image = bpy.data.images["Suzanne SD Texture"]
    packed = Path(bpy.app.tempdir or "/tmp") / "packed_record.png"
    packed.write_bytes(bytes(image.packed_file.data))
    record = png_record(packed)
    assert record["views"][0]["prompt"] == "moss" and record["origin"] == GENERATED
