"""Per-asset overhead of ``batch`` and its scaling on Ray, with the tiny pipeline.

    python benchmarks/bench_batch.py [--assets 50] [--files 10] [--texture-size 1024]
        [--resolution 512] [--steps 1] [--workers 1 2] [--no-full-step] [--json FILE]

What is measured, on a library the benchmark builds (``--files`` .blend files, ``--assets`` mesh
assets in all, each a subdivided, UV-mapped Suzanne of ~4k triangles):

- a sequential batch: each asset's time split as the manifest records it (file open, prepare:
  scene read, depth and texel surface; paint: the diffusion and the projection into the
  texture; PNG write, preview render, .blend save). The diffusion itself is each view's
  ``picture`` time in the asset's per-view report; the overhead is everything but that. The
  asset that loaded the model is left out of the figures;
- one denoising step of the full-size SD2-depth UNet (866 M parameters, batch 2 for
  classifier-free guidance, 64x64 latents = 512^2) on this machine's CPU, to put the overhead in
  proportion. FLOPs depend only on the configs, so random weights time it faithfully;
- the same batch on a local Ray cluster with 1 and with 2 workers (one CPU each): wall time with
  worker start-up, and the steady throughput from the manifest's finish times.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import redirect_stdout
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import bpy  # noqa: E402

from sd_depth_texture.batch.records import DONE, MANIFEST_NAME, Manifest  # noqa: E402
from sd_depth_texture.cli import main as cli  # noqa: E402

STAGES = ("open", "prepare", "load", "paint", "write", "preview", "save")


def build_library(root: Path, files: int, assets: int) -> None:
    """``assets`` Suzannes spread over ``files`` files, all at the origin (as libraries do)."""
    root.mkdir(parents=True)
    per_file = [assets // files + (1 if i < assets % files else 0) for i in range(files)]
    number = 0
    for index, count in enumerate(per_file):
        bpy.ops.wm.read_homefile(use_empty=True)
        for _ in range(count):
            bpy.ops.mesh.primitive_monkey_add(size=1.5, calc_uvs=True)
            obj = bpy.context.active_object
            obj.name = f"Prop{number:03d}"
            obj.modifiers.new("Subdivision", "SUBSURF").levels = 1
            obj.asset_mark()
            obj.asset_data.description = f"prop number {number}"
            obj.asset_data.tags.new("prop")
            number += 1
        with redirect_stdout(io.StringIO()):
            bpy.ops.wm.save_as_mainfile(filepath=str(root / f"props_{index:02d}.blend"))


def run_batch(library: Path, out: Path, model: Path, args, *extra: str) -> float:
    argv = [
        "batch", str(library), "--out", str(out), "--model", str(model),
        "--prompt-template", "a {name}, {description}", "--steps", str(args.steps),
        "--resolution", str(args.resolution), "--texture-size", str(args.texture_size),
        "--cpu-threads", "1", "--contact-sheet", "none", *extra,
    ]  # fmt: skip
    started = time.perf_counter()
    with redirect_stdout(io.StringIO()):
        code = cli.main(argv)
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"batch failed ({code}); see {out / MANIFEST_NAME}")
    return seconds


def done_records(out: Path) -> list[dict]:
    records = Manifest(str(out / MANIFEST_NAME)).read().values()
    return [r for r in records if r["status"] == DONE]


def diffusion_seconds(record: dict) -> float:
    """The asset's time in the model itself: each view's picture (its per-view report)."""
    return sum(
        view["seconds"].get("picture", 0.0)
        for target in record.get("report") or []
        for view in target["views"]
    )


def stage_table(records: list[dict]) -> dict[str, dict[str, float]]:
    warm = [r for r in records if not r.get("model_loaded")]
    table = {}
    for stage in STAGES:
        values = [r["seconds"].get(stage, 0.0) for r in warm]
        table[stage] = {"mean": statistics.fmean(values), "median": statistics.median(values)}
    columns = {
        "diffusion": [diffusion_seconds(r) for r in warm],
        "total": [r["seconds"]["total"] for r in warm],
        "overhead": [r["seconds"]["total"] - diffusion_seconds(r) for r in warm],
    }
    for name, values in columns.items():
        table[name] = {"mean": statistics.fmean(values), "median": statistics.median(values)}
    return table


def throughput(records: list[dict]) -> float:
    """Assets per second between the first and the last finish (start-up excluded)."""
    times = sorted(datetime.fromisoformat(r["finished"]).timestamp() for r in records)
    return (len(times) - 1) / max(times[-1] - times[0], 1e-9)


def full_unet_step() -> float:
    """Seconds for one classifier-free-guidance step of the full-size SD2-depth UNet (CPU)."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=5,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        block_out_channels=(320, 640, 1280, 1280),
        attention_head_dim=(5, 10, 20, 20),
        cross_attention_dim=1024,
        use_linear_projection=True,
        layers_per_block=2,
    ).eval()
    latents = torch.randn(2, 5, 64, 64)
    text = torch.randn(2, 77, 1024)
    with torch.inference_mode():
        started = time.perf_counter()
        unet(latents, torch.tensor([500, 500]), encoder_hidden_states=text)
        seconds = time.perf_counter() - started
    del unet
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=50)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--texture-size", type=int, default=1024)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--no-full-step", dest="full_step", action="store_false")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)

    from sd_depth_texture.core.diffusion.tiny import build_tiny_pipeline

    work = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    figures: dict = {"settings": vars(args)}
    try:
        library, model = work / "library", work / "model"
        build_library(library, args.files, args.assets)
        build_tiny_pipeline(seed=0).save_pretrained(model)

        wall = run_batch(library, work / "sequential", model, args)
        records = done_records(work / "sequential")
        table = stage_table(records)
        figures["sequential"] = {
            "assets": len(records), "wall_s": wall, "stages_s": table,
            "throughput_per_s": throughput(records),
        }  # fmt: skip
        print(f"Sequential: {len(records)} assets in {wall:.1f} s (model load included)")
        print(f"  per asset (warm), seconds:      {'mean':>8} {'median':>8}")
        for stage, value in table.items():
            print(f"  {stage:<30}  {value['mean']:8.4f} {value['median']:8.4f}")

        if args.full_step:
            step = full_unet_step()
            figures["full_unet_step_cpu_s"] = step
            print(f"One full-size SD2-depth UNet step with guidance on this CPU: {step:.2f} s")
            share = table["overhead"]["mean"] / step
            print(f"  per-asset overhead = {share:.1%} of one full-model step (CPU)")

        for count in args.workers:
            out = work / f"ray_{count}"
            wall = run_batch(
                library, out, model, args, "--ray", "auto", "--ray-workers", str(count)
            )
            records = done_records(out)
            rate = throughput(records)
            figures[f"ray_{count}"] = {
                "assets": len(records), "wall_s": wall, "throughput_per_s": rate,
                "workers": len({r["worker"] for r in records}),
            }  # fmt: skip
            print(
                f"Ray, {count} worker(s): {len(records)} assets in {wall:.1f} s with start-up; "
                f"steady {rate:.2f} assets/s"
            )
        if {"ray_1", "ray_2"} <= set(figures):
            ratio = figures["ray_2"]["throughput_per_s"] / figures["ray_1"]["throughput_per_s"]
            figures["ray_scaling_2_vs_1"] = ratio
            print(f"  2 workers vs 1: {ratio:.2f}x the throughput")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
