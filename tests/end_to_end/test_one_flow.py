"""What follows from one flow, through the command line and the operators: every number checked
before anything is read, one report schema for every kind of run, the depth map kept."""

from __future__ import annotations

import json
import time
from pathlib import Path

import bpy
import numpy as np
import pytest
from support.fingerprints import folder_fingerprint

from sd_depth_texture.blender import flow, images, sample
from sd_depth_texture.cli import main as cli


def picture_file(path: Path, colour, size=(256, 384)) -> Path:
    """A flat-colour PNG of the camera's 3:2 aspect."""
    picture = np.zeros((*size, 3), dtype=np.float32)
    picture[...] = colour
    image = images.array_to_image(path.stem, picture)
    image.filepath_raw, image.file_format = str(path), "PNG"
    image.save()
    bpy.data.images.remove(image)
    return path


BAD_NUMBERS = [
    (["--texture-size", "0"], "--texture-size must be an integer from 64 to 8192"),
    (["--texture-size", "-1"], "--texture-size must be"),
    (["--texture-size", "100000"], "--texture-size must be"),
    (["--resolution", "99992"], "--resolution must be an integer from 64 to 2048 in steps of 8"),
    (["--resolution", "100"], "--resolution must be"),
    (["--steps", "0"], "--steps must be an integer from 1 to 150"),
    (["--seed", str(2**70)], "--seed must be an integer from 0 to 2147483647"),
    (["--guidance", "nan"], "--guidance must be a number from 0 to 30"),
    (["--guidance", "inf"], "--guidance must be"),
    (["--views", "0"], "--views must be an integer from 1 to 26"),
    (["--margin", "-1"], "--margin must be"),
    (["--scheduler", "lms"], "--scheduler must be one of"),
]


@pytest.mark.parametrize("extra, message", BAD_NUMBERS)
def test_every_number_is_refused_before_anything_is_read_or_loaded(
    extra, message, sample_blend, tmp_path, capsys
):
    """A missing model folder is named too: the number must be refused before it is looked at,
    and well before any diffusion (the run takes well under a second)."""
    before = folder_fingerprint(tmp_path)
    started = time.perf_counter()
    code = cli.main(
        ["texture", str(sample_blend), "--prompt", "oak", "--model", str(tmp_path / "none"), *extra]
    )
    seconds = time.perf_counter() - started
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1
    assert lines == [f"error: {lines[0][7:]}"] and message in lines[0]
    assert folder_fingerprint(tmp_path) == before
    assert seconds < 5  # nothing was opened, read or loaded


def test_the_depth_and_project_commands_check_their_numbers_too(sample_blend, tmp_path, capsys):
    png = picture_file(tmp_path / "red.png", (1.0, 0.0, 0.0))
    assert cli.main(["depth", str(sample_blend), "--resolution", "4"]) == 1
    assert "--resolution must be" in capsys.readouterr().err
    assert cli.main(["project", str(sample_blend), "--image", str(png), "--margin", "99"]) == 1
    assert "--margin must be an integer from 0 to 64" in capsys.readouterr().err
    with pytest.raises(SystemExit) as malformed:  # argparse's own exit for a malformed value
        cli.main(["texture", str(sample_blend), "--prompt", "x", "--steps", "many"])
    assert malformed.value.code == 2


def check_report(path: Path, labels: list[str], generating: bool) -> dict:
    """The one report schema, whatever kind of run wrote it."""
    data = json.loads(path.read_text())
    assert data["schema"] == flow.REPORT_SCHEMA
    settings = data["settings"]
    assert {"views", "targets", "texture_size", "margin"} <= set(settings)
    assert ("generation" in settings) == generating and ("model" in settings) == generating
    assert {"prepare", "paint", "write"} <= set(data["seconds"])
    for entry in data["objects"]:
        assert [view["label"] for view in entry["views"]] == labels
        for view in entry["views"]:
            assert {"new", "refined", "kept", "coverage"} <= set(view)
            assert {"views", "picture", "projection"} <= set(view["seconds"])
            assert 0.0 < view["coverage"] <= 1.0
        assert set(entry["psnr_per_view"]) == set(labels)
        assert 0.0 < entry["coverage_before_fill"] <= 1.0
        assert entry["texture"].endswith(".png") or entry["texture"] == "packed in the .blend"
    return data


def test_every_kind_of_run_writes_the_same_report(sample_blend, tmp_path, tiny_model_dir):
    red = picture_file(tmp_path / "red.png", (1.0, 0.0, 0.0))
    blue = picture_file(tmp_path / "blue.png", (0.0, 0.0, 1.0))
    common = [str(sample_blend), "--object", "Cube", "--texture-size", "64"]

    one_view = tmp_path / "texture.json"
    code = cli.main(["texture", *common, "--prompt", "rust", "--model", str(tiny_model_dir),
                     "--steps", "1", "--resolution", "128", "--report", str(one_view)])  # fmt: skip
    assert code == 0
    data = check_report(one_view, ["Camera"], generating=True)
    assert data["settings"]["generation"]["prompt"] == "rust"
    assert data["settings"]["views"]["kind"] == "cameras"

    projected = tmp_path / "project.json"
    assert cli.main(["project", *common, "--image", str(red), "--report", str(projected)]) == 0
    data = check_report(projected, ["Camera"], generating=False)
    (cube,) = data["objects"]
    assert cube["psnr_per_view"]["Camera"] > 30  # a flat picture re-renders nearly exactly

    sample.add_camera("Left", (-5.0, -5.0, 3.0), (0.0, 0.0, 1.0))
    bpy.ops.wm.save_as_mainfile(filepath=str(sample_blend))
    several = tmp_path / "several.json"
    pairs = ["--image", str(red), "--camera", "Camera", "--image", str(blue), "--camera", "Left"]
    code = cli.main(["project", *common, *pairs, "--report", str(several)])
    assert code == 0
    data = check_report(several, ["Camera", "Left"], generating=False)
    assert data["settings"]["projected_images"] == 2


def test_the_operator_writes_the_report_for_one_view(sample_scene, tiny_model_dir, tmp_path):
    report = tmp_path / "operator.json"
    result = bpy.ops.sd_depth_texture.generate(
        prompt="moss", model=str(tiny_model_dir), steps=1, resolution=128, texture_size=64,
        report_path=str(report),
    )  # fmt: skip
    assert result == {"FINISHED"}
    check_report(report, ["Camera"], generating=True)


def kept_depth() -> np.ndarray:
    image = bpy.data.images[images.DEPTH_IMAGE]
    assert image.packed_file is not None and image.use_fake_user
    return images.image_to_array(image)[..., 0]


@pytest.mark.parametrize("views", [1, 4])
def test_the_depth_map_sent_survives_save_and_reload(views, sample_blend, tiny_model_dir, tmp_path):
    """One view keeps its depth map; a whole-object run keeps its last view's."""
    output = tmp_path / "out.blend"
    code = cli.main(["texture", str(sample_blend), "--object", "Suzanne", "--prompt", "stone",
                     "--model", str(tiny_model_dir), "--steps", "1", "--resolution", "128",
                     "--texture-size", "64", "--views", str(views),
                     "--output", str(output)])  # fmt: skip
    assert code == 0
    bpy.ops.wm.open_mainfile(filepath=str(output))
    depth = kept_depth()
    assert depth.shape == ((128, 192) if views == 1 else (128, 128))
    assert depth.max() == pytest.approx(1.0, abs=1e-3)
    assert depth.min() == (0.0 if views == 1 else pytest.approx(0.1, abs=1e-3))  # sky or floor
    if views == 1:  # exactly what the depth command writes for the same camera
        png = tmp_path / "depth.png"
        assert (
            cli.main(["depth", str(sample_blend), "--resolution", "128", "--output", str(png)]) == 0
        )
        written = bpy.data.images.load(str(png))
        written.colorspace_settings.name = "Non-Color"
        np.testing.assert_allclose(images.image_to_array(written)[..., 0], depth, atol=2 / 65535)
