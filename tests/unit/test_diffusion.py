"""Tests for model loading and generation, on a real tiny random-weight SD2-depth pipeline."""

from __future__ import annotations

import gc
import json
import pickle
import shutil
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import (
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    StableDiffusionDepth2ImgPipeline,
)
from safetensors.torch import save_file
from support.fake_hub import FakeHub, hub_environment
from support.ldm_keys import pipeline_to_ldm

from sd_depth_texture.core.diffusion import device, hub
from sd_depth_texture.core.diffusion.backends import sd2_depth
from sd_depth_texture.core.diffusion.cache import free_pipeline, load_pipeline, pipeline_status
from sd_depth_texture.core.diffusion.generate import generate
from sd_depth_texture.core.diffusion.schedulers import SCHEDULERS
from sd_depth_texture.core.diffusion.settings import GenerationSettings, ModelSpec
from sd_depth_texture.core.diffusion.tiny import build_tiny_pipeline
from sd_depth_texture.core.errors import CancelledError, ModelUnavailableError, TextureError
from sd_depth_texture.core.progress import Progress
from sd_depth_texture.defaults import MODEL_ID as DEFAULT_MODEL
from sd_depth_texture.defaults import MODEL_REVISION as DEFAULT_REVISION
from sd_depth_texture.messages import CLI, word

SETTINGS = GenerationSettings(prompt="weathered red brick wall", steps=3, seed=1)


def make_depth(height: int = 64, width: int = 96) -> np.ndarray:
    """A smooth non-trivial depth map: a ramp plus a bump (near = bright)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    bump = np.exp(-(((x - width / 2) / 12) ** 2 + ((y - height / 2) / 12) ** 2))
    depth = 0.3 * x / (width - 1) + 0.6 * bump
    return (depth / depth.max()).astype(np.float32)


def make_image(height: int = 64, width: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)


def steps_progress(seen: list[tuple[int, int]], cancel_after: int | None = None) -> Progress:
    """A Progress recording each reported step as (done, total); cancels after some steps."""

    def on_change(_fraction: float, message: str) -> None:
        done, total = message.removeprefix("Step ").split("/")
        seen.append((int(done), int(total)))
        if cancel_after is not None and len(seen) >= cancel_after:
            progress.cancel()

    progress = Progress(on_change)
    return progress


def cancelled() -> Progress:
    progress = Progress()
    progress.cancel()
    return progress


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_sd2_depth")
    build_tiny_pipeline(seed=0).save_pretrained(str(folder), safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def pipe(model_dir: Path):
    loaded = load_pipeline(ModelSpec(source=str(model_dir), device="cpu"))
    yield loaded
    free_pipeline()


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything tries to unpickle."""

    def forbidden(*_args, **_kwargs):
        raise AssertionError("a pickle was opened")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)


def copy_model(model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(model_dir, target)
    return target


# ---- Generation -------------------------------------------------------------------------------


def test_loaded_from_folder_is_a_depth_pipeline(pipe) -> None:
    assert isinstance(pipe, StableDiffusionDepth2ImgPipeline)
    assert pipe.unet.config.in_channels == 5
    assert pipe.vae_scale_factor == 8
    assert pipe.tokenizer.model_max_length == 77
    assert pipe.depth_estimator is None and pipe.feature_extractor is None


def test_same_seed_same_result_different_seed_differs(pipe) -> None:
    depth = make_depth()
    first = generate(pipe, depth, SETTINGS)
    again = generate(pipe, depth, SETTINGS)
    other = generate(pipe, depth, GenerationSettings(prompt=SETTINGS.prompt, steps=3, seed=2))
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).mean() > 1e-3


@pytest.mark.parametrize(("height", "width"), [(64, 96), (96, 64), (64, 64)])
def test_output_shape_dtype_range(pipe, height: int, width: int) -> None:
    result = generate(pipe, make_depth(height, width), SETTINGS)
    assert result.shape == (height, width, 3)
    assert result.dtype == np.float32
    assert np.isfinite(result).all()
    assert result.min() >= 0.0 and result.max() <= 1.0
    assert result.std() > 0.01


def test_vae_encoder_only_runs_with_an_init_image(pipe) -> None:
    calls: list[int] = []
    handle = pipe.vae.encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        generate(pipe, make_depth(), SETTINGS)
        assert calls == []
        generate(pipe, make_depth(), SETTINGS, init_image=make_image())
        assert calls == [1]
    finally:
        handle.remove()


def test_result_without_init_does_not_depend_on_any_image(
    pipe, monkeypatch: pytest.MonkeyPatch
) -> None:
    depth = make_depth()
    baseline = generate(pipe, depth, SETTINGS)
    monkeypatch.setattr(sd2_depth, "_placeholder_image", lambda h, w: torch.rand((1, 3, h, w)))
    np.testing.assert_array_equal(generate(pipe, depth, SETTINGS), baseline)


def test_pure_noise_start_is_undone_after_the_call(pipe) -> None:
    generate(pipe, make_depth(), SETTINGS)
    assert "prepare_latents" not in vars(pipe)
    with pytest.raises(CancelledError):
        generate(pipe, make_depth(), SETTINGS, progress=cancelled())
    assert "prepare_latents" not in vars(pipe)


def test_init_image_and_strength_change_the_result(pipe) -> None:
    depth = make_depth()
    settings = GenerationSettings(prompt=SETTINGS.prompt, steps=4, seed=1, strength=0.5)
    plain = generate(pipe, depth, settings)
    first = generate(pipe, depth, settings, init_image=make_image(seed=0))
    second = generate(pipe, depth, settings, init_image=make_image(seed=1))
    assert np.abs(first - plain).mean() > 1e-3
    assert np.abs(first - second).mean() > 1e-3


def test_on_step_reports_every_step_with_the_total(pipe) -> None:
    seen: list[tuple[int, int]] = []
    settings = GenerationSettings(prompt=SETTINGS.prompt, steps=4, seed=1)
    generate(pipe, make_depth(), settings, progress=steps_progress(seen))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    seen.clear()
    half = GenerationSettings(prompt=SETTINGS.prompt, steps=4, seed=1, strength=0.5)
    generate(pipe, make_depth(), half, init_image=make_image(), progress=steps_progress(seen))
    assert seen == [(1, 2), (2, 2)]


def test_cancel_after_k_steps(pipe) -> None:
    seen: list[tuple[int, int]] = []
    unet_calls: list[int] = []
    handle = pipe.unet.register_forward_hook(lambda *_: unet_calls.append(1))
    try:
        with pytest.raises(CancelledError):
            generate(
                pipe,
                make_depth(),
                GenerationSettings(prompt=SETTINGS.prompt, steps=5),
                progress=steps_progress(seen, cancel_after=2),
            )
    finally:
        handle.remove()
    assert seen == [(1, 5), (2, 5)]
    assert len(unet_calls) == 2


def test_cancel_before_the_first_step(pipe) -> None:
    seen: list[tuple[int, int]] = []
    progress = steps_progress(seen)
    progress.cancel()
    with pytest.raises(CancelledError):
        generate(pipe, make_depth(), SETTINGS, progress=progress)
    assert seen == []


def test_on_latents_can_replace_latents(pipe) -> None:
    depth = make_depth()
    baseline = generate(pipe, depth, SETTINGS)
    steps: list[int] = []

    def keep(step: int, latents: torch.Tensor) -> torch.Tensor:
        steps.append(step)
        assert latents.shape == (1, 4, 8, 12)
        return latents

    np.testing.assert_array_equal(generate(pipe, depth, SETTINGS, on_latents=keep), baseline)
    assert steps == [1, 2, 3]
    zeroed = generate(pipe, depth, SETTINGS, on_latents=lambda s, lat: torch.zeros_like(lat))
    assert np.abs(zeroed - baseline).mean() > 1e-3


def test_on_latents_with_a_wrong_shape_is_refused(pipe) -> None:
    with pytest.raises(TextureError, match="on_latents"):
        generate(pipe, make_depth(), SETTINGS, on_latents=lambda s, lat: lat[:, :, :4])


@pytest.mark.parametrize(
    ("name", "cls"),
    [("euler_a", EulerAncestralDiscreteScheduler), ("dpmpp", DPMSolverMultistepScheduler)],
)
def test_scheduler_is_swapped(pipe, name: str, cls: type) -> None:
    settings = GenerationSettings(prompt=SETTINGS.prompt, steps=3, scheduler=name)
    generate(pipe, make_depth(), settings)
    assert isinstance(pipe.scheduler, cls)
    if name == "dpmpp":
        assert pipe.scheduler.config.algorithm_type == "dpmsolver++"


def test_every_scheduler_runs(pipe) -> None:
    for name in SCHEDULERS:
        settings = GenerationSettings(prompt=SETTINGS.prompt, steps=2, scheduler=name)
        assert generate(pipe, make_depth(), settings).shape == (64, 96, 3)


def test_guidance_zero_is_allowed(pipe) -> None:
    settings = GenerationSettings(prompt=SETTINGS.prompt, steps=2, guidance=0.0)
    assert generate(pipe, make_depth(), settings).shape == (64, 96, 3)


@pytest.mark.parametrize(
    "settings",
    [
        GenerationSettings(prompt=""),
        GenerationSettings(prompt="   \n"),
        GenerationSettings(prompt="x", steps=0),
        GenerationSettings(prompt="x", guidance=-0.5),
        GenerationSettings(prompt="x", guidance=float("nan")),
        GenerationSettings(prompt="x", strength=0.0),
        GenerationSettings(prompt="x", strength=1.5),
        GenerationSettings(prompt="x", scheduler="lms"),
    ],
)
def test_bad_settings_are_refused(pipe, settings: GenerationSettings) -> None:
    with pytest.raises(TextureError):
        generate(pipe, make_depth(), settings)


def test_strength_leaving_no_step_is_refused(pipe) -> None:
    settings = GenerationSettings(prompt="x", steps=2, strength=0.3)
    with pytest.raises(TextureError, match="no step"):
        generate(pipe, make_depth(), settings, init_image=make_image())


def _bad_depths() -> list[np.ndarray]:
    nan = make_depth()
    nan[3, 3] = np.nan
    inf = make_depth()
    inf[0, 0] = np.inf
    return [
        nan,
        inf,
        np.full((64, 96), 0.5, np.float32),
        make_depth()[None],
        make_depth(60, 96),
        make_depth() * 2.0,
        (make_depth() * 255).astype(np.uint8),
    ]


@pytest.mark.parametrize(
    "depth", _bad_depths(), ids=["nan", "inf", "constant", "3d", "size", "range", "int"]
)
def test_bad_depth_is_refused(pipe, depth: np.ndarray) -> None:
    with pytest.raises(TextureError):
        generate(pipe, depth, SETTINGS)


def test_init_image_must_match_the_depth(pipe) -> None:
    with pytest.raises(TextureError, match="init image"):
        generate(pipe, make_depth(), SETTINGS, init_image=make_image(64, 64))


def test_nan_weights_give_a_texture_error() -> None:
    broken = build_tiny_pipeline()
    with torch.no_grad():
        broken.vae.decoder.conv_out.bias.fill_(float("nan"))
    with pytest.raises(TextureError, match="invalid image"):
        generate(broken, make_depth(), SETTINGS)


def test_all_black_output_gives_a_texture_error() -> None:
    broken = build_tiny_pipeline()
    with torch.no_grad():
        broken.vae.decoder.conv_out.weight.zero_()
        broken.vae.decoder.conv_out.bias.fill_(-5.0)
    with pytest.raises(TextureError, match="invalid image"):
        generate(broken, make_depth(), SETTINGS)


@pytest.mark.parametrize(
    "error",
    [torch.OutOfMemoryError("CUDA out of memory."), RuntimeError("MPS backend out of memory")],
)
def test_out_of_memory_during_generation(pipe, error: Exception) -> None:
    def explode(*_args):
        raise error

    handle = pipe.unet.register_forward_pre_hook(explode)
    try:
        with pytest.raises(TextureError, match="Out of memory") as caught:
            generate(pipe, make_depth(), SETTINGS)
    finally:
        handle.remove()
    assert "resolution" in str(caught.value)


# ---- Loading, caching ------------------------------------------------------------------------


def test_cache_returns_the_same_object_and_free_releases_it(model_dir: Path) -> None:
    free_pipeline()
    spec = ModelSpec(source=str(model_dir), device="cpu")
    first = load_pipeline(spec)
    assert load_pipeline(ModelSpec(source=str(model_dir), device="cpu")) is first
    assert pipeline_status() == f"{model_dir} on cpu (float32)"
    assert free_pipeline() is True
    assert pipeline_status() == "not loaded"
    assert free_pipeline() is False
    assert load_pipeline(spec) is not first
    free_pipeline()


def test_a_different_spec_releases_the_old_pipeline() -> None:
    free_pipeline()
    old = weakref.ref(load_pipeline(ModelSpec(source="random", device="cpu")))
    gc.collect()
    assert old() is not None
    messages: list[str] = []
    alive_when_loading: list[bool] = []

    def progress(message: str, fraction: float) -> None:
        messages.append(message)
        alive_when_loading.append(old() is not None)
        assert 0.0 <= fraction <= 1.0

    new = load_pipeline(
        ModelSpec(source="random", device="cpu", precision="fp32"),
        Progress(lambda fraction, message: progress(message, fraction)),
    )
    assert new is not old()
    assert old() is None
    assert alive_when_loading and not any(alive_when_loading)
    assert messages[-1] == "Model loaded"
    free_pipeline()


def test_random_source_and_status() -> None:
    free_pipeline()
    random_pipe = load_pipeline(ModelSpec(source="random", device="cpu"))
    assert isinstance(random_pipe, StableDiffusionDepth2ImgPipeline)
    status = pipeline_status()
    assert "noise" in status and "random" in status and "cpu" in status
    assert generate(random_pipe, make_depth(), SETTINGS).shape == (64, 96, 3)
    free_pipeline()


def test_tiny_pipeline_is_deterministic_per_seed() -> None:
    a, b, c = build_tiny_pipeline(0), build_tiny_pipeline(0), build_tiny_pipeline(1)
    weight = "conv_in.weight"
    assert torch.equal(a.unet.state_dict()[weight], b.unet.state_dict()[weight])
    assert not torch.equal(a.unet.state_dict()[weight], c.unet.state_dict()[weight])


@pytest.mark.parametrize("suffix", [".ckpt", ".bin", ".pt", ".pth", ".pkl"])
def test_pickle_files_are_refused_unopened(tmp_path: Path, no_unpickling, suffix: str) -> None:
    path = tmp_path / f"model{suffix}"
    path.write_bytes(pickle.dumps({"state_dict": {}}))
    with pytest.raises(TextureError, match="Refusing"):
        load_pipeline(ModelSpec(source=str(path), device="cpu"))


def test_folder_with_only_bin_weights_is_refused(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = copy_model(model_dir, tmp_path)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save({"conv_in.weight": torch.zeros(1)}, folder / "unet" / "diffusion_pytorch_model.bin")
    weights.unlink()

    def forbidden(*_args, **_kwargs):
        raise AssertionError("a pickle was opened")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    with pytest.raises(TextureError, match=r"Refusing to load diffusion_pytorch_model\.bin"):
        load_pipeline(ModelSpec(source=str(folder), device="cpu"))


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(TextureError, match="not found"):
        load_pipeline(ModelSpec(source=str(tmp_path / "no_such_model"), device="cpu"))


def test_folder_without_model_index(model_dir: Path, tmp_path: Path) -> None:
    folder = copy_model(model_dir, tmp_path)
    (folder / "model_index.json").unlink()
    with pytest.raises(TextureError, match=r"model_index\.json"):
        load_pipeline(ModelSpec(source=str(folder), device="cpu"))


def test_folder_of_another_model_is_refused(model_dir: Path, tmp_path: Path) -> None:
    folder = copy_model(model_dir, tmp_path)
    config_path = folder / "unet" / "config.json"
    config = json.loads(config_path.read_text())
    config["in_channels"] = 4
    config_path.write_text(json.dumps(config))
    with pytest.raises(TextureError, match="not a Stable Diffusion 2 depth model"):
        load_pipeline(ModelSpec(source=str(folder), device="cpu"))


def test_truncated_safetensors_is_refused(model_dir: Path, tmp_path: Path) -> None:
    folder = copy_model(model_dir, tmp_path)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(TextureError, match="corrupt or truncated"):
        load_pipeline(ModelSpec(source=str(folder), device="cpu"))


def test_offline_hub_id_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def no_network(*_args, **_kwargs):
        raise AssertionError("went online")

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_tree", no_network)
    for source in (DEFAULT_MODEL, "someone/some-depth-model"):
        spec = ModelSpec(source=source, device="cpu", cache_dir=str(tmp_path), allow_online=False)
        with pytest.raises(ModelUnavailableError, match="online access is off") as caught:
            load_pipeline(spec)
        assert "--model" not in str(caught.value)  # the core names no door's options
        assert "--model PATH" in word(caught.value, CLI)
    assert pipeline_status() == "not loaded"


def fake_hub_cache(model_dir: Path, cache: Path, listed: list[str]) -> Path:
    """A Hugging Face cache holding the tiny model as the pinned default revision.

    ``listed`` goes into the hub's cached tree listing, as after a real download: files listed
    there but absent from the snapshot (the other weight variant) were never downloaded.
    """
    storage = cache / ("models--" + DEFAULT_MODEL.replace("/", "--"))
    snapshot = storage / "snapshots" / DEFAULT_REVISION
    shutil.copytree(model_dir, snapshot)
    files = {name: {"size": 1, "blob_id": "0" * 40} for name in listed}
    (storage / "trees").mkdir()
    (storage / "trees" / f"{DEFAULT_REVISION}.json").write_text(
        json.dumps({"format_version": 1, "files": files})
    )
    return snapshot


def test_offline_hub_id_loads_from_a_partial_cache(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    def no_network(*_args, **_kwargs):
        raise AssertionError("went online")

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_tree", no_network)
    have = [p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()]
    fake_hub_cache(model_dir, tmp_path, [*have, *REPO_FILES])
    free_pipeline()
    spec = ModelSpec(source=DEFAULT_MODEL, device="cpu", cache_dir=str(tmp_path))
    loaded = load_pipeline(spec)
    assert isinstance(loaded, StableDiffusionDepth2ImgPipeline)
    assert pipeline_status().startswith(DEFAULT_MODEL)
    free_pipeline()


def test_offline_hub_id_with_an_incomplete_cache(model_dir: Path, tmp_path: Path) -> None:
    snapshot = fake_hub_cache(model_dir, tmp_path, ["model_index.json"])
    shutil.rmtree(snapshot / "vae")
    spec = ModelSpec(source=DEFAULT_MODEL, device="cpu", cache_dir=str(tmp_path))
    with pytest.raises(TextureError, match=r"cached copy .* online access is off"):
        load_pipeline(spec)


def test_online_download_asks_only_for_needed_files(model_dir: Path, tmp_path: Path) -> None:
    """A Hub imitation on 127.0.0.1 serves the repository; download and pipeline are real."""
    extras = {name: b"never downloaded" for name in REPO_FILES if not (model_dir / name).exists()}
    free_pipeline()
    seen: list[tuple[str, float]] = []
    spec = ModelSpec(source=DEFAULT_MODEL, device="cpu", cache_dir=str(tmp_path), allow_online=True)
    server = FakeHub.from_folder(DEFAULT_MODEL, DEFAULT_REVISION, model_dir, **extras)
    home = tmp_path / "home"
    with server, hub_environment(HF_HOME=str(home), HF_ENDPOINT=server.endpoint):
        loaded = load_pipeline(
            spec, Progress(lambda fraction, message: seen.append((message, fraction)))
        )
    assert isinstance(loaded, StableDiffusionDepth2ImgPipeline)
    downloaded = server.downloaded()
    assert ("API", f"tree/{DEFAULT_REVISION}") in server.requests
    assert hub.cached_snapshot(DEFAULT_MODEL, DEFAULT_REVISION, tmp_path) is not None
    assert not (home / "hub").exists()  # cache_dir was given: nothing in the standard cache
    assert "unet/diffusion_pytorch_model.safetensors" in downloaded  # fp32 on CPU
    assert not any("fp16" in p or p.endswith(".bin") for p in downloaded)
    assert not any(p.startswith(("depth_estimator", "feature_extractor")) for p in downloaded)
    downloads = [(m, f) for m, f in seen if m.startswith("Downloading")]
    assert [f for _, f in downloads] == sorted(f for _, f in downloads)
    assert downloads[-1][0].endswith("(100%)") and 0.5 < downloads[-1][1] <= 0.9
    assert seen[-1] == ("Model loaded", 1.0)
    free_pipeline()


def test_folder_with_only_fp16_variant_weights_loads_in_fp32(
    model_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "fp16_only"
    source = build_tiny_pipeline(seed=0)
    source.save_pretrained(str(folder), variant="fp16")
    assert (folder / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    assert not (folder / "unet" / "diffusion_pytorch_model.safetensors").exists()
    free_pipeline()
    loaded = load_pipeline(ModelSpec(source=str(folder), device="cpu"))
    assert loaded.unet.dtype == torch.float32
    assert torch.equal(loaded.unet.conv_in.weight, source.unet.conv_in.weight)
    free_pipeline()


def test_out_of_memory_during_loading(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*_args, **_kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    free_pipeline()
    monkeypatch.setattr(StableDiffusionDepth2ImgPipeline, "from_pretrained", explode)
    with pytest.raises(TextureError, match="Out of memory"):
        load_pipeline(ModelSpec(source=str(model_dir), device="cpu"))


def test_bad_device_and_precision() -> None:
    with pytest.raises(TextureError):
        device.resolve_device("tpu9")
    with pytest.raises(TextureError):
        device.resolve_dtype("fp8", torch.device("cpu"))
    assert device.resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert device.resolve_dtype("auto", torch.device("cuda")) == torch.float16
    # FLUX is published in bf16 and overflows fp16: its automatic half precision is bf16.
    cuda = torch.device("cuda")
    assert device.resolve_dtype("auto", cuda, prefer_bf16=True) == torch.bfloat16
    assert device.resolve_dtype("auto", torch.device("cpu"), prefer_bf16=True) == torch.float32
    assert device.resolve_dtype("fp16", cuda, prefer_bf16=True) == torch.float16
    assert device.resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    if not torch.cuda.is_available():
        assert device.resolve_device("auto").type in ("cpu", "mps")
        with pytest.raises(TextureError, match="CUDA"):
            device.resolve_device("cuda")


# ---- Hub download planning (no network) ------------------------------------------------------

REPO_FILES = [
    "model_index.json",
    "depth_estimator/model.safetensors",
    "feature_extractor/preprocessor_config.json",
    "scheduler/scheduler_config.json",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "text_encoder/model.fp16.safetensors",
    "text_encoder/pytorch_model.bin",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "unet/diffusion_pytorch_model.fp16.safetensors",
    "unet/diffusion_pytorch_model.bin",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.fp16.safetensors",
]


def test_download_patterns_pick_one_safetensors_set() -> None:
    fp16 = hub.download_patterns(REPO_FILES, want_fp16=True)
    full = hub.download_patterns(REPO_FILES, want_fp16=False)
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in fp16
    assert "unet/diffusion_pytorch_model.safetensors" not in fp16
    assert "unet/diffusion_pytorch_model.safetensors" in full
    assert "text_encoder/model.fp16.safetensors" not in full
    for patterns in (fp16, full):
        assert not any(p.endswith(".bin") or p.startswith("depth_estimator") for p in patterns)
        assert {"model_index.json", "unet/config.json", "text_encoder/config.json"} <= set(patterns)


def test_download_patterns_refuse_pickle_only_repos() -> None:
    files = [f for f in REPO_FILES if not f.startswith("unet/diffusion_pytorch_model.")]
    with pytest.raises(TextureError, match="Refusing"):
        hub.download_patterns([*files, "unet/diffusion_pytorch_model.bin"], want_fp16=False)


def test_download_progress_is_forwarded() -> None:
    seen: list[tuple[str, float]] = []
    progress = Progress(lambda fraction, message: seen.append((message, fraction)))
    with progress.span(0.0, 0.9):
        meter = hub._DownloadMeter(progress, "owner/name", total=10)
        bar = meter.bar_class(total=10, desc="Downloading bytes", name="ignored")
        bar.update(5)
        bar.update(5)
        bar.close()
    assert [round(f, 3) for _, f in seen[:2]] == [0.45, 0.9]
    assert seen[0][0].startswith("Downloading owner/name: 5.00 B of 10.0 B (50%)")


# ---- Single original-layout .safetensors file ------------------------------------------------


@pytest.fixture(scope="module")
def ldm_file(tmp_path_factory: pytest.TempPathFactory):
    source = build_tiny_pipeline(seed=5)
    path = tmp_path_factory.mktemp("ldm") / "512-depth-tiny.safetensors"
    save_file(pipeline_to_ldm(source), str(path))
    return source, path


def test_single_file_round_trip(model_dir: Path, ldm_file) -> None:
    source, path = ldm_file
    folder_weights = build_tiny_pipeline(seed=0)  # what the config folder's own weights are
    loaded = load_pipeline(ModelSpec(source=str(path), config=str(model_dir), device="cpu"))
    for name in ("unet", "vae", "text_encoder"):
        expected = getattr(source, name).state_dict()
        actual = getattr(loaded, name).state_dict()
        assert expected.keys() == actual.keys()
        for key, value in expected.items():
            assert torch.equal(value, actual[key]), f"{name}.{key}"
    unet_key = "conv_in.weight"
    assert not torch.equal(
        actual_unet := loaded.unet.state_dict()[unet_key],
        folder_weights.unet.state_dict()[unet_key],
    )
    assert actual_unet.shape == (32, 5, 3, 3)
    source.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(
        generate(loaded, make_depth(), SETTINGS),
        generate(source, make_depth(), SETTINGS),
        atol=1e-5,
    )
    free_pipeline()


def test_single_file_with_a_missing_tensor_is_refused(
    model_dir: Path, ldm_file, tmp_path: Path
) -> None:
    source, _ = ldm_file
    checkpoint = pipeline_to_ldm(source)
    del checkpoint["first_stage_model.decoder.mid.attn_1.q.weight"]
    path = tmp_path / "partial.safetensors"
    save_file(checkpoint, str(path))
    with pytest.raises(TextureError, match=r"VAE weights .* do not match"):
        load_pipeline(ModelSpec(source=str(path), config=str(model_dir), device="cpu"))


def test_single_file_with_a_mis_shaped_tensor_is_refused(
    model_dir: Path, ldm_file, tmp_path: Path
) -> None:
    source, _ = ldm_file
    checkpoint = pipeline_to_ldm(source)
    checkpoint["model.diffusion_model.out.2.bias"] = torch.zeros(3)
    path = tmp_path / "bad_shape.safetensors"
    save_file(checkpoint, str(path))
    with pytest.raises(TextureError, match="shape"):
        load_pipeline(ModelSpec(source=str(path), config=str(model_dir), device="cpu"))


def test_single_file_needs_a_config(ldm_file, tmp_path: Path) -> None:
    _, path = ldm_file
    with pytest.raises(TextureError, match="config folder"):
        load_pipeline(ModelSpec(source=str(path), device="cpu"))
    with pytest.raises(TextureError, match="lacks"):
        load_pipeline(ModelSpec(source=str(path), config=str(tmp_path), device="cpu"))


def test_truncated_single_file_is_refused(model_dir: Path, ldm_file, tmp_path: Path) -> None:
    _, path = ldm_file
    data = path.read_bytes()
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(data[: len(data) // 3])
    with pytest.raises(TextureError, match="corrupt or truncated"):
        load_pipeline(ModelSpec(source=str(broken), config=str(model_dir), device="cpu"))
