"""The SD 1.5 and SDXL depth-ControlNet backends through every door: one view and a whole
object from the command line (a base folder or a single checkpoint file), the operator and the
batch, each run's record naming the backend, the ControlNet and the conditioning it was sent; a
wrong combination stops the run in the door's words with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import bpy
import pytest
from safetensors.torch import save_file
from support.backends import TINY_MODELS
from support.fingerprints import folder_fingerprint
from support.ldm_keys import pipeline_to_ldm
from support.scenes import save_box

from sd_depth_texture.batch import records
from sd_depth_texture.cli import main as cli
from sd_depth_texture.core.diffusion.cache import free_pipeline
from sd_depth_texture.core.diffusion.settings import ModelSpec
from sd_depth_texture.core.diffusion.tiny import build_tiny_controlnet_pipeline
from sd_depth_texture.core.record import sha256_of_file

FAST = ["--steps", "1", "--resolution", "64", "--texture-size", "64"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, ModelSpec]:
    root = tmp_path_factory.mktemp("doors")
    names = ("sd15-controlnet", "sdxl-controlnet", "sdxl-union")
    yield {name: TINY_MODELS[name](root / name) for name in names}
    free_pipeline()


def model_options(spec: ModelSpec) -> list[str]:
    return ["--model", spec.source, "--controlnet", spec.controlnet]


def check_record(record: dict, backend: str, spec: ModelSpec, views: int, scale: float) -> None:
    model = record["model"]
    assert model["backend"] == backend and model["source"] == spec.source
    assert model["controlnet"]["source"] == spec.controlnet
    assert model["controlnet"]["family"] in ("sd", "sdxl", "sdxl-union")
    assert len(record["views"]) == views
    for view in record["views"]:
        assert view["origin"] == "generated" and view["conditioning_scale"] == scale
        assert (view["control_start"], view["control_end"]) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("backend", "views"), [("sd15-controlnet", 1), ("sdxl-controlnet", 3), ("sdxl-union", 1)]
)
def test_the_command_line_textures_with_a_controlnet(
    backend, views, tiny, sample_blend, tmp_path
) -> None:
    spec = tiny[backend]
    report = tmp_path / "report.json"
    code = cli.main(["texture", str(sample_blend), "--object", "Cube", "--prompt", "rust",
                     *model_options(spec), *FAST, "--views", str(views),
                     "--conditioning-scale", "0.7", "--report", str(report)])  # fmt: skip
    assert code == 0
    data = json.loads(report.read_text())
    check_record(data["record"], backend, spec, views, 0.7)
    assert data["settings"]["model"]["controlnet"] == spec.controlnet
    assert data["settings"]["generation"]["conditioning_scale"] == 0.7
    (cube,) = data["objects"]
    assert Path(cube["texture"]).is_file()


@pytest.mark.parametrize(("backend", "views"), [("sdxl-union", 3), ("sd15-controlnet", 1)])
def test_the_operator_textures_with_a_controlnet(backend, views, tiny, sample_scene, tmp_path):
    spec = tiny[backend]
    report = tmp_path / "operator.json"
    result = bpy.ops.sd_depth_texture.generate(
        prompt="moss", model=spec.source, controlnet=spec.controlnet, steps=1, resolution=64,
        texture_size=64, views=views, control_end=0.5, report_path=str(report),
    )  # fmt: skip
    assert result == {"FINISHED"}
    record = json.loads(report.read_text())["record"]
    assert record["model"]["backend"] == backend
    assert record["model"]["controlnet"]["source"] == spec.controlnet
    assert [view["control_end"] for view in record["views"]] == [0.5] * views


def test_the_batch_textures_with_a_controlnet(tiny, tmp_path, addon) -> None:
    spec = tiny["sdxl-controlnet"]
    library = tmp_path / "library"
    save_box(library / "box.blend")
    out = tmp_path / "out"
    code = cli.main(["batch", str(library), "--out", str(out), "--prompt", "a crate",
                     "--contact-sheet", "none", *model_options(spec), *FAST,
                     "--preview-size", "64", "--control-start", "0.2"])  # fmt: skip
    assert code == 0
    line = records.Manifest(str(out / records.MANIFEST_NAME)).read()["box.blend::Box"]
    assert line["status"] == records.DONE
    assert line["record"]["model"]["backend"] == "sdxl-controlnet"
    assert [view["control_start"] for view in line["record"]["views"]] == [0.2]


def test_the_command_line_textures_with_a_single_checkpoint_file(
    tiny, sample_blend, tmp_path
) -> None:
    """An SD 1.5 base as one original-layout .safetensors, its configs from --config."""
    spec = tiny["sd15-controlnet"]
    checkpoint = tmp_path / "sd15-base.safetensors"
    save_file(pipeline_to_ldm(build_tiny_controlnet_pipeline("sd15", seed=2)), str(checkpoint))
    report = tmp_path / "report.json"
    code = cli.main(["texture", str(sample_blend), "--object", "Cube", "--prompt", "rust",
                     "--model", str(checkpoint), "--config", spec.source,
                     "--controlnet", spec.controlnet, *FAST, "--report", str(report)])  # fmt: skip
    assert code == 0
    model = json.loads(report.read_text())["record"]["model"]
    assert (model["backend"], model["kind"]) == ("sd15-controlnet", "file")
    assert model["weights_sha256"] == sha256_of_file(str(checkpoint))
    assert model["controlnet"]["source"] == spec.controlnet


def test_a_wrong_combination_stops_the_command_with_nothing_written(
    tiny, sample_blend, tmp_path, capsys
) -> None:
    before = folder_fingerprint(sample_blend.parent)
    code = cli.main(["texture", str(sample_blend), "--object", "Cube", "--prompt", "rust",
                     "--model", tiny["sd15-controlnet"].source,
                     "--controlnet", tiny["sdxl-controlnet"].controlnet, *FAST])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1].split("\r")[-1]  # after the progress
    assert err.startswith("error: ")
    assert "The ControlNet in --controlnet is for SDXL" in err
    assert folder_fingerprint(sample_blend.parent) == before


def test_a_wrong_combination_stops_the_operator_in_the_panels_words(tiny, sample_scene):
    with pytest.raises(RuntimeError, match="The ControlNet in 'ControlNet' is for SDXL"):
        bpy.ops.sd_depth_texture.generate(
            prompt="moss", model=tiny["sd15-controlnet"].source,
            controlnet=tiny["sdxl-union"].controlnet, steps=1, resolution=64, texture_size=64,
        )  # fmt: skip
