"""``--upscale``: each generated picture upscaled by a real (tiny, random-weight) diffusers
upscaler before projection, through the command line; the report shows the denser pictures."""

from __future__ import annotations

import json

import pytest
from support.fingerprints import folder_fingerprint

from sd_depth_texture.cli import main as cli


def _run(sample_blend, tiny_model_dir, tmp_path, name: str, *extra: str) -> dict:
    report = tmp_path / f"{name}.json"
    output = tmp_path / name / "out.blend"
    output.parent.mkdir()
    code = cli.main(
        ["texture", str(sample_blend), "--prompt", "old brick", "--model", str(tiny_model_dir),
         "--steps", "1", "--texture-size", "64", "--resolution", "64", "--object", "Cube",
         "--output", str(output), "--report", str(report), *extra]
    )  # fmt: skip
    assert code == 0
    assert (output.parent / "textures" / "out" / "Cube_SD_Texture.png").is_file()
    return json.loads(report.read_text())


def test_upscale_projects_a_picture_twice_as_large(sample_blend, tiny_model_dir, tmp_path):
    plain = _run(sample_blend, tiny_model_dir, tmp_path, "plain")
    upscaled = _run(sample_blend, tiny_model_dir, tmp_path, "x2", "--upscale", "2",
                    "--upscale-model", "random")  # fmt: skip

    record = upscaled["record"]
    assert record["upscaler"]["pipeline"] == "StableDiffusionLatentUpscalePipeline"
    assert record["views"][0]["upscale"] == 2 and plain["record"]["upscaler"] is None
    # The same texels, painted from four times the pixels.
    before, after = plain["objects"][0]["views"][0], upscaled["objects"][0]["views"][0]
    assert after["texels"] == before["texels"]
    assert after["texel_density"] == pytest.approx(4 * before["texel_density"], rel=1e-6)
    assert upscaled["objects"][0]["texel_density"] == pytest.approx(after["texel_density"])


def test_an_upscale_of_three_is_one_line_and_touches_no_file(
    sample_blend, tiny_model_dir, tmp_path, capsys
):
    before = folder_fingerprint(tmp_path)
    code = cli.main(["texture", str(sample_blend), "--prompt", "x", "--model",
                     str(tiny_model_dir), "--upscale", "3"])  # fmt: skip
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1
    assert lines[-1] == "error: --upscale must be one of 1, 2, 4, got 3"
    assert folder_fingerprint(tmp_path) == before
