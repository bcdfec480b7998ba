"""Where models are found and how they download: the shared Hugging Face cache, a Hub on
127.0.0.1 (real ``huggingface_hub`` downloads, real pipeline loads), cancelled downloads, and
model folders that used to hang or crash the loader."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path

import huggingface_hub
import pytest
import torch
from diffusers import StableDiffusionDepth2ImgPipeline
from safetensors.torch import save_file
from support.fake_hub import FakeHub, hub_environment

from sd_depth_texture.core.diffusion import device, hub, sources
from sd_depth_texture.core.diffusion.cache import (
    free_pipeline,
    load_model,
    load_pipeline,
    loading,
    pipeline_status,
)
from sd_depth_texture.core.diffusion.schedulers import SCHEDULER_CLASSES
from sd_depth_texture.core.diffusion.settings import ModelSpec
from sd_depth_texture.core.errors import CancelledError, TextureError
from sd_depth_texture.core.progress import Progress
from sd_depth_texture.defaults import MODEL_ID, MODEL_REVISION, SCHEDULERS

REPO = Path(__file__).resolve().parents[2]
STORAGE = "models--" + MODEL_ID.replace("/", "--")
UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"
DOWNLOAD_LINE = re.compile(
    re.escape(f"Downloading {MODEL_ID}: ") + r"[\d.]+ [kMG]?B of [\d.]+ [kMG]?B \((\d+)%\)"
)


@pytest.fixture(autouse=True)
def no_model_loaded():
    free_pipeline()
    yield
    free_pipeline()


@pytest.fixture
def home(tmp_path: Path):
    """A fresh ``HF_HOME`` for this test (so the standard cache is ``home/hub``), offline."""
    home = tmp_path / "hf_home"
    with hub_environment(HF_HOME=str(home), HF_HUB_OFFLINE="1"):
        yield home


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*_args, **_kwargs):
        raise AssertionError("went online")

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_tree", forbidden)
    monkeypatch.setattr(hub, "hf_hub_download", forbidden)


def put_in_cache(model_dir: Path, cache: Path) -> Path:
    """The tiny model laid out as a download of the pinned default revision leaves it."""
    storage = cache / STORAGE
    snapshot = storage / "snapshots" / MODEL_REVISION
    shutil.copytree(model_dir, snapshot)
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(MODEL_REVISION)
    return snapshot


def tree(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# ---- The standard Hugging Face cache ----------------------------------------------------------


def test_default_model_in_the_standard_cache_loads_offline(
    tiny_model_dir: Path, home: Path, no_network
) -> None:
    put_in_cache(tiny_model_dir, home / "hub")
    pipe = load_pipeline(ModelSpec(device="cpu"))  # the default id, no cache_dir, offline
    assert isinstance(pipe, StableDiffusionDepth2ImgPipeline)
    assert pipe.unet.config.in_channels == 5
    assert pipeline_status() == f"{MODEL_ID} on cpu (float32)"
    # The record says what was really loaded: the revision resolved in the cache.
    again = load_model(ModelSpec(device="cpu"))
    assert again.pipe is pipe and not again.record.loaded
    assert again.record.kind == "hub" and again.record.revision == MODEL_REVISION
    assert again.record.licence == "openrail++"  # the default model's, when its card is absent
    assert (again.record.device, again.record.precision) == ("cpu", "float32")


def test_a_hub_model_at_a_given_revision_loads_that_revision(
    tiny_model_dir: Path, home: Path, no_network
) -> None:
    """``ORG/NAME@REVISION`` picks that commit (or branch) from the cache: the pinned default
    and an older commit of the same repository are both there."""
    pinned = put_in_cache(tiny_model_dir, home / "hub")
    older = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(pinned, pinned.parent / older)
    (pinned.parent.parent / "refs" / "stable").write_text(older)
    for source, revision in (
        (MODEL_ID, MODEL_REVISION),
        (f"{MODEL_ID}@{older}", older),
        (f"{MODEL_ID}@stable", older),  # a branch, resolved through refs/
    ):
        free_pipeline()
        loaded = load_model(ModelSpec(source=source, device="cpu"))
        assert loaded.record.kind == "hub" and loaded.record.revision == revision
    free_pipeline()
    missing = "fedcba9876543210fedcba9876543210fedcba98"
    with pytest.raises(TextureError) as refused:
        load_model(ModelSpec(source=f"{MODEL_ID}@{missing}", device="cpu"))
    assert f"Model {MODEL_ID}@{missing} is not cached" in one_line(refused)


def test_the_record_names_the_licence_of_the_model_card_and_the_hash_of_a_single_file(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "README.md").write_text("---\nlanguage: en\nlicense: 'mit'\n---\n# A model\n")
    loaded = load_model(ModelSpec(source=str(folder), device="cpu"))
    assert loaded.record.loaded and loaded.record.kind == "folder"
    assert loaded.record.licence == "mit" and loaded.record.revision is None
    assert loaded.record.backend == "sd2-depth"
    assert loaded.record.pipeline == "StableDiffusionDepth2ImgPipeline"
    (folder / "README.md").write_text("# no front matter\nlicense: not-this\n")
    assert sources.model_licence(folder) is None


def test_a_cache_dir_is_searched_and_so_is_the_standard_cache(
    tiny_model_dir: Path, home: Path, tmp_path: Path, no_network
) -> None:
    put_in_cache(tiny_model_dir, home / "hub")
    own = tmp_path / "own_cache"
    own.mkdir()
    assert isinstance(load_pipeline(ModelSpec(device="cpu", cache_dir=str(own))), object)
    assert tree(own) == set()  # found in the standard cache: nothing copied or downloaded
    free_pipeline()
    shutil.rmtree(home / "hub")
    put_in_cache(tiny_model_dir, own)
    assert isinstance(load_pipeline(ModelSpec(device="cpu", cache_dir=str(own))), object)


def test_neither_cache_holds_it(home: Path, tmp_path: Path, no_network) -> None:
    with pytest.raises(TextureError, match="online access is off") as raised:
        load_pipeline(ModelSpec(device="cpu", cache_dir=str(tmp_path / "own")))
    message = one_line(raised)
    assert str(tmp_path / "own") in message and str(home / "hub") in message


def test_a_complete_copy_wins_over_an_incomplete_one(
    tiny_model_dir: Path, home: Path, tmp_path: Path, no_network
) -> None:
    own = tmp_path / "own_cache"
    shutil.rmtree(put_in_cache(tiny_model_dir, own) / "vae")
    put_in_cache(tiny_model_dir, home / "hub")
    assert isinstance(load_pipeline(ModelSpec(device="cpu", cache_dir=str(own))), object)


def test_a_fresh_process_takes_the_standard_cache_from_hf_home(tmp_path: Path) -> None:
    """Without any reloading: huggingface_hub reads HF_HOME / HF_HUB_CACHE at import."""
    script = "from sd_depth_texture.core.diffusion import hub; print(hub.standard_cache())"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    for extra, expected in [
        ({"HF_HOME": str(tmp_path / "home")}, tmp_path / "home" / "hub"),
        ({"HF_HUB_CACHE": str(tmp_path / "hub_cache")}, tmp_path / "hub_cache"),
    ]:
        result = subprocess.run(
            [sys.executable, "-c", script],
            env={**env, **extra, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert Path(result.stdout.strip()) == expected


def test_an_invalid_hub_id_is_one_line(home: Path, no_network) -> None:
    with pytest.raises(TextureError, match="not a valid Hugging Face id") as raised:
        load_pipeline(ModelSpec(source="someone/two--dashes", device="cpu"))
    one_line(raised)


# ---- Downloads from a Hub on 127.0.0.1 -------------------------------------------------------


@pytest.fixture
def server(tiny_model_dir: Path):
    with FakeHub.from_folder(MODEL_ID, MODEL_REVISION, tiny_model_dir) as running:
        yield running


@pytest.fixture
def online_home(tmp_path: Path, server: FakeHub):
    """A fresh ``HF_HOME`` with the endpoint pointing at the local Hub, online."""
    home = tmp_path / "hf_home"
    with hub_environment(HF_HOME=str(home), HF_ENDPOINT=server.endpoint):
        yield home


def test_a_download_goes_to_the_standard_cache_and_happens_once(
    server: FakeHub, online_home: Path
) -> None:
    seen: list[tuple[float, str]] = []
    progress = Progress(lambda fraction, message: seen.append((fraction, message)))
    pipe = load_pipeline(ModelSpec(device="cpu", allow_online=True), progress)
    assert isinstance(pipe, StableDiffusionDepth2ImgPipeline)
    assert UNET_WEIGHTS in server.downloaded()
    assert (online_home / "hub" / STORAGE / "snapshots" / MODEL_REVISION / UNET_WEIGHTS).is_file()

    lines = [(fraction, m) for fraction, m in seen if m.startswith("Downloading")]
    assert all(DOWNLOAD_LINE.fullmatch(m) for _, m in lines), lines[:3]
    percents = [int(DOWNLOAD_LINE.fullmatch(m)[1]) for _, m in lines]
    assert percents[0] == 0 and percents[-1] == 100 and len(set(percents)) > 3
    assert [f for f, _ in lines] == sorted(f for f, _ in lines)
    assert seen[-1] == (1.0, "Model loaded")

    requests = len(server.requests)
    free_pipeline()
    load_pipeline(ModelSpec(device="cpu", allow_online=True))  # cached: no request at all
    free_pipeline()
    load_pipeline(ModelSpec(device="cpu"))  # and offline
    assert len(server.requests) == requests


def cancel_at(percent: int) -> Progress:
    """A Progress that cancels once the download line reaches ``percent``."""

    def on_change(_fraction: float, message: str) -> None:
        line = DOWNLOAD_LINE.fullmatch(message)
        if line is not None and int(line[1]) >= percent:
            progress.cancel()

    progress = Progress(on_change)
    return progress


def test_a_download_cancelled_half_way_keeps_nothing(
    server: FakeHub, online_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks, so the cancel lands inside the UNet weights (~90 % of the bytes).
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    spec = ModelSpec(device="cpu", allow_online=True)
    with pytest.raises(CancelledError, match="downloading") as raised:
        load_pipeline(spec, cancel_at(50))
    one_line(raised)
    fetched = server.downloaded()
    assert "model_index.json" in fetched and UNET_WEIGHTS in fetched  # stopped half-way
    assert "vae/diffusion_pytorch_model.safetensors" not in fetched
    cache = online_home / "hub"
    assert not [p for p in cache.rglob("*") if p.name.endswith(".incomplete")]
    assert not (cache / STORAGE).exists()
    assert hub.cached_snapshot(MODEL_ID, MODEL_REVISION, cache) is None
    assert pipeline_status() == "not loaded" and not loading()

    with pytest.raises(TextureError, match="not cached"):  # offline: nothing mistaken for it
        load_pipeline(ModelSpec(device="cpu"))
    assert isinstance(load_pipeline(spec), StableDiffusionDepth2ImgPipeline)  # and it resumes


def test_a_cancelled_download_leaves_an_earlier_copy_as_it_was(
    server: FakeHub, online_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = ModelSpec(device="cpu", allow_online=True)
    load_pipeline(spec)
    free_pipeline()
    storage = online_home / "hub" / STORAGE
    pointer = storage / "snapshots" / MODEL_REVISION / UNET_WEIGHTS
    pointer.resolve().unlink()  # an earlier copy that lost a file
    pointer.unlink()
    before = tree(storage)

    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    with pytest.raises(CancelledError):
        load_pipeline(spec, cancel_at(50))
    assert tree(storage) == before
    with pytest.raises(TextureError, match=r"cached copy .* unusable"):
        load_pipeline(ModelSpec(device="cpu"))

    fetched = len(server.downloaded())
    assert isinstance(load_pipeline(spec), StableDiffusionDepth2ImgPipeline)
    assert server.downloaded()[fetched:] == [UNET_WEIGHTS]  # only what was missing


def test_a_failed_download_keeps_nothing(server: FakeHub, online_home: Path) -> None:
    server.broken.add("vae/diffusion_pytorch_model.safetensors")  # listed, but not served
    with pytest.raises(TextureError, match="Could not download") as raised:
        load_pipeline(ModelSpec(device="cpu", allow_online=True))
    one_line(raised)
    assert not (online_home / "hub" / STORAGE).exists()


def test_a_download_into_a_chosen_cache_dir(
    server: FakeHub, online_home: Path, tmp_path: Path
) -> None:
    own = tmp_path / "own_cache"
    load_pipeline(ModelSpec(device="cpu", cache_dir=str(own), allow_online=True))
    assert hub.cached_snapshot(MODEL_ID, MODEL_REVISION, own) is not None
    assert not (online_home / "hub" / STORAGE).exists()


# ---- Model folders that used to crash or hang --------------------------------------------------


def copy_model(model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(model_dir, target)
    return target


def load_quickly(spec: ModelSpec, seconds: float = 30.0) -> BaseException | None:
    """Load in a thread and return what it raised; fails the test if the load hangs."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            load_pipeline(spec)
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert outcome, f"loading {spec.source} hung"
    return outcome[0]


def unblock_fifos(folder: Path) -> None:
    """Open any FIFO for writing, so a reader stuck on it (a regression) gets EOF and ends."""
    for path in folder.rglob("*"):
        if path.is_fifo():
            with suppress(OSError):  # nobody reading: nothing to unblock
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def test_a_folder_without_a_tokenizer_is_one_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = copy_model(tiny_model_dir, tmp_path)
    shutil.rmtree(folder / "tokenizer")
    with pytest.raises(TextureError, match="has no tokenizer") as raised:
        load_pipeline(ModelSpec(source=str(folder), device="cpu"))
    one_line(raised)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("remove tokenizer_config.json", "tokenizer .* incomplete"),
        ("remove tokenizer.json", "tokenizer .* incomplete"),
        ("drop model_max_length", "model_max_length None"),
    ],
)
def test_a_broken_tokenizer_is_one_line(
    tiny_model_dir: Path, tmp_path: Path, change: str, expected: str
) -> None:
    folder = copy_model(tiny_model_dir, tmp_path)
    tokenizer = folder / "tokenizer"
    if change.startswith("remove"):
        (tokenizer / change.split()[1]).unlink()
    else:
        config = json.loads((tokenizer / "tokenizer_config.json").read_text())
        del config["model_max_length"]
        (tokenizer / "tokenizer_config.json").write_text(json.dumps(config))
    started = time.perf_counter()
    with pytest.raises(TextureError, match=expected) as raised:
        load_pipeline(ModelSpec(source=str(folder), device="cpu"))
    one_line(raised)
    assert time.perf_counter() - started < 5.0


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
@pytest.mark.parametrize(
    "name",
    [
        "unet/config.json",
        "model_index.json",
        "vae/config.json",
        "scheduler/scheduler_config.json",
        "tokenizer/tokenizer_config.json",
        "tokenizer/tokenizer.json",
    ],
)
def test_a_fifo_in_a_model_folder_is_refused_at_once(
    tiny_model_dir: Path, tmp_path: Path, name: str
) -> None:
    folder = copy_model(tiny_model_dir, tmp_path)
    (folder / name).unlink()
    os.mkfifo(folder / name)
    try:
        error = load_quickly(ModelSpec(source=str(folder), device="cpu"))
    finally:
        unblock_fifos(folder)
    assert isinstance(error, TextureError), error
    assert "not a regular file" in str(error) and name in str(error)
    assert "\n" not in str(error)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_next_to_a_single_file_is_refused_at_once(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = copy_model(tiny_model_dir, tmp_path)
    (config / "unet" / "config.json").unlink()
    os.mkfifo(config / "unet" / "config.json")
    checkpoint = tmp_path / "weights.safetensors"
    os.mkfifo(checkpoint)
    try:
        as_weights = load_quickly(ModelSpec(source=str(checkpoint), config=str(config)))
        real = tmp_path / "real.safetensors"  # an SD2 checkpoint's header: its family is read
        save_file({"cond_stage_model.model.positional_embedding": torch.zeros(1)}, str(real))
        as_config = load_quickly(ModelSpec(source=str(real), config=str(config)))
    finally:
        unblock_fifos(tmp_path)
    assert isinstance(as_weights, TextureError) and "not a regular file" in str(as_weights)
    assert isinstance(as_config, TextureError) and "unet/config.json" in str(as_config)


def test_a_broken_link_in_a_model_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = copy_model(tiny_model_dir, tmp_path)
    (folder / "vae" / "config.json").unlink()
    (folder / "vae" / "config.json").symlink_to(tmp_path / "gone.json")
    with pytest.raises(TextureError, match="broken link") as raised:
        load_pipeline(ModelSpec(source=str(folder), device="cpu"))
    one_line(raised)


# ---- The cache's status, devices, memory, schedulers -----------------------------------------


def test_status_never_waits_for_a_load() -> None:
    entered, release = threading.Event(), threading.Event()

    def on_change(_fraction: float, _message: str) -> None:
        entered.set()
        release.wait(30)  # the load holds its lock all this time

    worker = threading.Thread(
        target=load_pipeline,
        args=(ModelSpec(source="random", device="cpu"), Progress(on_change)),
        daemon=True,
    )
    worker.start()
    try:
        assert entered.wait(30)
        started = time.perf_counter()
        status, busy = pipeline_status(), loading()
        assert time.perf_counter() - started < 0.5
        assert status == "loading random" and busy
    finally:
        release.set()
        worker.join(60)
    assert not loading()
    assert pipeline_status().startswith("random test weights on cpu")


def test_out_of_memory_becomes_one_texture_error() -> None:
    for error in (
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("MPS backend out of memory (MPS allocated: 17 GB)"),
        MemoryError(),
    ):
        with (
            pytest.raises(TextureError, match="Out of memory while decoding") as raised,
            device.out_of_memory("decoding"),
        ):
            raise error
        one_line(raised)
        assert raised.value.__cause__ is error
    for other in (RuntimeError("shapes do not match"), ValueError("out of memory")):
        with pytest.raises(type(other)), device.out_of_memory("decoding"):
            raise other
    with pytest.raises(CancelledError), device.out_of_memory("decoding"):
        raise CancelledError("Cancelled")


def test_describe_devices_on_this_machine() -> None:
    devices = device.describe_devices()
    assert devices[-1].kind == "CPU" and devices[-1].device == "cpu"
    assert devices[-1].label.startswith("CPU: ")
    if not torch.cuda.is_available():
        assert all(d.kind != "CUDA" for d in devices)


def test_describe_devices_names_gpus_and_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    class Properties:
        name = "NVIDIA H200"
        total_memory = 143_771_000_000

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: Properties)
    devices = device.describe_devices()
    assert [d.device for d in devices[:2]] == ["cuda:0", "cuda:1"]
    assert devices[0].label == "CUDA: NVIDIA H200, 143.8 GB"
    assert devices[-1].kind == "CPU"


def test_every_scheduler_name_has_a_class() -> None:
    assert set(SCHEDULER_CLASSES) == set(SCHEDULERS)
