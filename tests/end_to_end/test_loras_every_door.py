"""LoRAs and the memory settings through every door: the command line, the operator with the
panel's list, the batch's template, and the add-on preferences; each run's record says which
LoRAs (name, sha256, weight), which precision, offload and VAE tiling made its textures."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import bpy
import pytest
from support.loras import make_lora
from support.scenes import save_box

from sd_depth_texture.batch import records
from sd_depth_texture.cli import main as cli
from sd_depth_texture.core.diffusion import cache

FAST = ["--steps", "2", "--resolution", "64", "--texture-size", "64"]


@pytest.fixture(scope="module")
def wood(tmp_path_factory) -> Path:
    return make_lora(tmp_path_factory.mktemp("loras") / "wood.safetensors", seed=1)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def texture_argv(blend: Path, model: Path, report: Path, *extra: str) -> list[str]:
    return ["texture", str(blend), "--prompt", "oak", "--object", "Suzanne", "--model",
            str(model), "--report", str(report), *FAST, *extra]  # fmt: skip


def test_the_command_line_applies_loras_and_records_them(
    sample_blend, tiny_model_dir, wood, tmp_path, capsys
):
    report = tmp_path / "report.json"
    argv = texture_argv(sample_blend, tiny_model_dir, report, "--lora", f"{wood}:0.75",
                        "--precision", "bf16", "--vae-tiling", "off")  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr().err
    model = json.loads(report.read_text())["record"]["model"]
    assert model["loras"] == [{"name": "wood.safetensors", "sha256": sha256(wood), "scale": 0.75}]
    assert (model["precision"], model["offload"], model["vae_tiling"]) == (
        "bfloat16",
        "none",
        False,
    )
    settings = json.loads(report.read_text())["record"]["settings"]["model"]
    assert settings["loras"] == [{"path": str(wood), "scale": 0.75}]
    assert settings["precision"] == "bf16"


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--lora", "style.ckpt"], "Refusing to load style.ckpt: pickle weights"),
        (["--lora", "absent.safetensors:0.5"], "LoRA file not found"),
        (["--lora", "wood.safetensors:heavy"], "--lora must be a number from -8 to 8"),
        (["--offload", "model"], "--offload model moves the model between the CPU and a GPU"),
        (["--offload", "all"], "--offload must be one of none, model, sequential"),
        (["--precision", "fp8"], "--precision must be one of auto, fp16, bf16, fp32"),
    ],
)
def test_bad_lora_or_memory_options_are_one_line_and_write_nothing(
    sample_blend, tiny_model_dir, tmp_path, capsys, extra, words
):
    report = tmp_path / "report.json"
    output = tmp_path / "out.blend"
    code = cli.main([*texture_argv(sample_blend, tiny_model_dir, report, *extra), "--output",
                     str(output)])  # fmt: skip
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress line
    assert code == 1 and last.startswith("error: ") and words in last
    assert not output.exists() and not report.exists()


def test_the_operator_reads_the_panels_lora_list(sample_scene, tiny_model_dir, wood, tmp_path):
    settings = bpy.context.scene.sd_depth_texture
    settings.loras.clear()
    assert bpy.ops.sd_depth_texture.lora_add() == {"FINISHED"}
    settings.loras[0].path = str(wood)
    settings.loras[0].scale = 0.5
    bpy.ops.sd_depth_texture.lora_add()
    settings.loras[1].path = str(tmp_path / "unused.safetensors")  # not there, but not used:
    settings.loras[1].enabled = False
    try:
        report = tmp_path / "panel.json"
        result = bpy.ops.sd_depth_texture.generate(
            prompt="moss", steps=1, resolution=64, texture_size=64, model=str(tiny_model_dir),
            report_path=str(report),
        )  # fmt: skip
        assert result == {"FINISHED"}
        model = json.loads(report.read_text())["record"]["model"]
        assert model["loras"] == [
            {"name": "wood.safetensors", "sha256": sha256(wood), "scale": 0.5}
        ]
        # A script's own list replaces the panel's for this run only.
        report = tmp_path / "script.json"
        result = bpy.ops.sd_depth_texture.generate(
            prompt="moss", steps=1, resolution=64, texture_size=64, model=str(tiny_model_dir),
            report_path=str(report),
            loras=[{"name": "wood", "path": str(wood), "scale": -1.0, "enabled": True}],
        )  # fmt: skip
        assert result == {"FINISHED"}
        record = json.loads(report.read_text())["record"]["model"]
        assert [lora["scale"] for lora in record["loras"]] == [-1.0]
        assert record["loaded"] is False  # other LoRAs, the same loaded base
        # A used row whose file is not there: one line, and the run does nothing.
        settings.loras[1].enabled = True
        with pytest.raises(RuntimeError, match=r"LoRA file not found: .*unused\.safetensors$"):
            bpy.ops.sd_depth_texture.generate(
                prompt="moss", steps=1, resolution=64, texture_size=64, model=str(tiny_model_dir)
            )
        # Remove takes the selected row and keeps the selection in the list.
        settings.lora_index = 1
        assert bpy.ops.sd_depth_texture.lora_remove() == {"FINISHED"}
        assert len(settings.loras) == 1 and settings.lora_index == 0
        assert bpy.ops.sd_depth_texture.lora_remove() == {"FINISHED"}
        assert not bpy.ops.sd_depth_texture.lora_remove.poll()
    finally:
        settings.loras.clear()
        cache.free_pipeline()


def test_the_batch_template_carries_the_loras_to_every_asset(tiny_model_dir, wood, tmp_path):
    source = save_box(tmp_path / "lib" / "box.blend")
    out = tmp_path / "out"
    argv = ["batch", str(source), "--out", str(out), "--model", str(tiny_model_dir), "--prompt",
            "a crate", "--lora", f"{wood}:0.25", *FAST, "--preview-size", "64"]  # fmt: skip
    assert cli.main(argv) == 0
    (line,) = [r for r in records.Manifest(str(out / records.MANIFEST_NAME)).records()]
    assert line["status"] == "done"
    assert line["record"]["model"]["loras"] == [
        {"name": "wood.safetensors", "sha256": sha256(wood), "scale": 0.25}
    ]
