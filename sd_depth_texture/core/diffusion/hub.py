"""Hugging Face Hub models: the caches they are found in, and downloads that can be cancelled.

No bpy. The standard Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``, as
``huggingface_hub`` resolves them) is where every tool on a machine keeps its models, so it is
always searched, and a model already there is used offline and never downloaded twice. A
download reports its bytes through :class:`~sd_depth_texture.core.progress.Progress`, stops at
the next chunk once cancelled, and a download that does not finish takes back every file it
added: the cache then holds the complete model or exactly what it held before, never a snapshot
a later offline load could mistake for the model.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, constants, hf_hub_download, try_to_load_from_cache
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import filter_repo_objects
from tqdm import tqdm

from ..errors import CancelledError, TextureError
from ..progress import Progress
from .device import first_line

logger = logging.getLogger(__name__)

#: File types that are Python pickles: opening one can execute arbitrary code.
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl")
#: Components whose weights are loaded (depth_estimator / feature_extractor are never needed).
WEIGHT_COMPONENTS = ("unet", "vae", "text_encoder")
#: Every component folder a supported family may have weights in (SD, SDXL's second text
#: encoder, FLUX's transformer); a repository's own listing says which it has.
ANY_WEIGHT_COMPONENTS = ("unet", "transformer", "vae", "text_encoder", "text_encoder_2")
#: The index file of a whole pipeline, and of a single model (a ControlNet).
PIPELINE_INDEX = "model_index.json"
MODEL_INDEX = "config.json"
#: Never downloaded: pickles, and the depth estimator a given depth map makes unnecessary.
IGNORED_FILES = [f"*{suffix}" for suffix in PICKLE_SUFFIXES] + [
    "depth_estimator/*",
    "feature_extractor/*",
]
FP16_NAME = re.compile(r"\.fp16[.-]")


def standard_cache() -> Path:
    """The cache every Hugging Face tool on this machine shares, as huggingface_hub sees it."""
    return Path(constants.HF_HUB_CACHE)


def search_caches(cache_dir: str | None) -> list[Path]:
    """Where to look for a model: ``cache_dir`` (if set), then the standard cache."""
    caches = [Path(cache_dir).expanduser()] if cache_dir else []
    standard = standard_cache()
    if not any(_same_folder(cache, standard) for cache in caches):
        caches.append(standard)
    return caches


def download_cache(cache_dir: str | None) -> Path:
    """Where a new download goes.

    ``cache_dir`` when the user chose one; otherwise the standard cache, because every tool
    (diffusers, ComfyUI, other add-ons) shares it and a model is then downloaded once per
    machine, not once per program.
    """
    return Path(cache_dir).expanduser() if cache_dir else standard_cache()


def split_revision(source: str) -> tuple[str, str | None]:
    """``ORG/NAME@REVISION`` -> (``ORG/NAME``, ``REVISION``): a Hub model at a given commit,
    branch or tag (the ``pip``/``git`` way of naming one); without ``@``, no revision."""
    repo_id, at, revision = source.partition("@")
    return (repo_id, revision) if at and revision else (source, None)


def cached_snapshot(
    repo_id: str, revision: str | None, cache: Path, index: str = PIPELINE_INDEX
) -> Path | None:
    """The snapshot folder of ``repo_id`` at ``revision`` in ``cache``, if one was cached.

    Found by its ``index`` (``model_index.json``; a ControlNet's ``config.json``); whether the
    rest is complete is for the caller to check.
    """
    found = try_to_load_from_cache(repo_id, index, cache_dir=cache, revision=revision)
    return Path(found).parent if isinstance(found, str) else None


def download_patterns(
    repo_files: list[str], want_fp16: bool, index: str = PIPELINE_INDEX
) -> list[str]:
    """Only the files the pipeline needs: configs, tokenizers, one safetensors set per model
    (a single model such as a ControlNet: its ``config.json`` and weights at the top)."""
    if index == MODEL_INDEX:
        return [index, *_one_weight_set(repo_files, "", want_fp16, "the ControlNet")]
    # low_res_scheduler: the x4 upscaler's second scheduler (nothing else has one)
    patterns = [
        index,
        "scheduler/*.json",
        "low_res_scheduler/*.json",
        "tokenizer/*",
        "tokenizer_2/*",
    ]
    present = {name.split("/", 1)[0] for name in repo_files if "/" in name}
    for component in ANY_WEIGHT_COMPONENTS:
        if component not in present and component in WEIGHT_COMPONENTS[1:]:
            raise TextureError(f"The Hub model has no '{component}' folder")
        if component not in present:
            continue
        patterns += [f"{component}/config.json"]
        patterns += _one_weight_set(repo_files, f"{component}/", want_fp16, f"'{component}'")
    return patterns


def _one_weight_set(repo_files: list[str], prefix: str, want_fp16: bool, what: str) -> list[str]:
    """The safetensors files (and their shard index) of one model: fp16 or full, never pickles."""
    names = [f for f in repo_files if f.startswith(prefix) and "/" not in f[len(prefix) :]]
    weights = [f for f in names if f.endswith((".safetensors", ".json")) and "config" not in f]
    fp16 = [f for f in weights if FP16_NAME.search(f)]
    full = [f for f in weights if not FP16_NAME.search(f)]
    chosen = fp16 if fp16 and (want_fp16 or not full) else full
    if not any(f.endswith(".safetensors") for f in chosen):
        pickles = [f for f in names if f.lower().endswith(PICKLE_SUFFIXES)]
        if pickles:
            raise TextureError(
                f"Refusing to load {Path(pickles[0]).name}: pickle weights "
                f"({', '.join(PICKLE_SUFFIXES)}) can run arbitrary code when opened; use "
                ".safetensors weights instead"
            )
        raise TextureError(f"The Hub model has no safetensors weights for {what}")
    return chosen


def download_configs(
    repo_id: str, revision: str | None, names: tuple[str, ...], caches: list[Path]
) -> dict[str, str]:
    """The text of these small config files of ``repo_id`` (those it has): from ``caches`` where
    an earlier copy holds them, else fetched into a temporary folder that is removed again.
    Enough to tell the model's family before gigabytes of weights are downloaded, and nothing
    is kept if the download is then refused or fails."""
    import tempfile

    from huggingface_hub.errors import EntryNotFoundError

    found: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="sd_depth_texture_configs_") as scratch:
        for name in names:
            cached = [
                try_to_load_from_cache(repo_id, name, cache_dir=cache, revision=revision)
                for cache in caches
            ]
            local = next(
                (Path(c) for c in cached if isinstance(c, str) and Path(c).is_file()), None
            )
            if local is not None:
                found[name] = local.read_text(encoding="utf-8", errors="replace")
                continue
            try:
                path = hf_hub_download(
                    repo_id, name, revision=revision or constants.DEFAULT_REVISION,
                    cache_dir=scratch,
                )  # fmt: skip
                found[name] = Path(path).read_text(encoding="utf-8", errors="replace")
            except EntryNotFoundError:
                continue
            except Exception as error:
                logger.debug("Reading %s of %s failed", name, repo_id, exc_info=True)
                raise TextureError(f"Could not download {repo_id}: {first_line(error)}") from error
    return found


def download_snapshot(
    repo_id: str,
    revision: str | None,
    cache: Path,
    *,
    want_fp16: bool,
    progress: Progress | None = None,
    index: str = PIPELINE_INDEX,
) -> Path:
    """Download what the pipeline needs of ``repo_id`` into ``cache``; the snapshot folder.

    Files already cached are not fetched again. One file at a time, so a cancel stops within a
    chunk and at most one partial file exists (huggingface_hub deletes it when its download
    fails). On cancel or any error every file this call added is removed again. Files the Hub
    stores with Xet are fetched by ``hf_xet``; whether it stops inside such a file when its
    progress callback raises is up to ``hf_xet``, so a cancel lands there at the latest when
    the file is done.
    """
    progress = progress or Progress()
    branch = revision or constants.DEFAULT_REVISION
    try:
        listing = [
            entry
            for entry in HfApi().list_repo_tree(repo_id, revision=branch, recursive=True)
            if isinstance(entry, RepoFile)
        ]
        names = [entry.path for entry in listing]
        wanted = set(
            filter_repo_objects(
                names,
                allow_patterns=download_patterns(names, want_fp16, index),
                ignore_patterns=IGNORED_FILES,
            )
        )
    except TextureError:
        raise
    except Exception as error:
        logger.debug("Listing %s failed", repo_id, exc_info=True)
        raise TextureError(f"Could not download {repo_id}: {first_line(error)}") from error
    sizes = {entry.path: int(entry.size or 0) for entry in listing if entry.path in wanted}
    missing = [
        name
        for name in sorted(sizes)
        if not isinstance(
            try_to_load_from_cache(repo_id, name, cache_dir=cache, revision=branch), str
        )
    ]
    logger.info("Downloading %d files of %s@%s into %s", len(missing), repo_id, branch, cache)
    meter = _DownloadMeter(progress, repo_id, sum(sizes[name] for name in missing))
    undo = _Rollback(cache / repo_folder_name(repo_id=repo_id, repo_type="model"))
    try:
        meter.report()
        for name in missing:
            pointer = hf_hub_download(
                repo_id, name, revision=branch, cache_dir=cache, tqdm_class=meter.bar_class
            )
            undo.added(Path(pointer))
            meter.finished(sizes[name])
    except BaseException as error:
        undo.run()
        if progress.cancelled:
            raise CancelledError(
                f"Cancelled while downloading {repo_id}; the unfinished download was removed"
            ) from error
        if isinstance(error, TextureError) or not isinstance(error, Exception):
            raise
        logger.debug("Downloading %s failed", repo_id, exc_info=True)
        raise TextureError(f"Could not download {repo_id}: {first_line(error)}") from error
    folder = cached_snapshot(repo_id, branch, cache, index)
    if folder is None:
        raise TextureError(f"Downloading {repo_id} gave no {index}")
    return folder


def format_bytes(count: float) -> str:
    """``312 MB``-style sizes, in the decimal units disks and downloads are sold in."""
    return re.sub(r"(?<=\d)(?=[a-zA-Z])", " ", tqdm.format_sizeof(count, "B", 1000))


class _DownloadMeter:
    """Bytes done of the whole download, reported as one fraction and one line of text."""

    def __init__(self, progress: Progress, repo_id: str, total: int) -> None:
        self.progress = progress
        self.repo_id = repo_id
        self.total = total
        self.done = 0  # bytes of the files finished
        self.current = 0  # bytes of the file in flight
        self.bar_class = _bar_class(self)

    def report(self) -> None:
        done = min(self.done + self.current, self.total)
        fraction = done / self.total if self.total else 1.0
        self.progress.update(
            fraction,
            f"Downloading {self.repo_id}: {format_bytes(done)} of {format_bytes(self.total)} "
            f"({fraction:.0%})",
        )
        self.progress.check(f"while downloading {self.repo_id}")

    def finished(self, size: int) -> None:
        self.done += size
        self.current = 0
        self.report()


def _bar_class(meter: _DownloadMeter) -> type:
    """A tqdm stand-in for ``hf_hub_download``: it feeds ``meter`` and raises once cancelled.

    It has ``update_transfer`` like the aggregating bar of ``snapshot_download``, so Xet
    downloads report into this one bar instead of opening a second one; only ``update`` (bytes
    written to disk) is counted.
    """

    class _MeterBar:
        def __init__(self, *_args: Any, **kwargs: Any) -> None:
            self.total = kwargs.get("total")
            self.n = 0
            self.desc = kwargs.get("desc", "")
            self.format_dict: dict[str, Any] = {}
            self.update(kwargs.get("initial") or 0)

        def update(self, n: float | None = 1) -> None:
            step = int(n or 0)  # negative when a resumed download restarts from zero
            if step:
                self.n += step
                meter.current += step
                meter.report()

        def update_transfer(self, _n: float | None = 1) -> None:
            meter.progress.check(f"while downloading {meter.repo_id}")

        def set_postfix_str(self, *_args: Any, **_kwargs: Any) -> None:
            pass

        def set_transfer_postfix_str(self, *_args: Any, **_kwargs: Any) -> None:
            pass

        def refresh(self, *_args: Any, **_kwargs: Any) -> None:
            pass

        def close(self) -> None:
            pass

        def __enter__(self) -> _MeterBar:
            return self

        def __exit__(self, *_args: Any) -> None:
            self.close()

    return _MeterBar


class _Rollback:
    """Takes back what one download added to a repo's cache folder, and nothing else.

    A repo folder that did not exist before goes entirely. Otherwise the snapshot entries this
    download created go, with the blobs that appeared during it; blobs that were there before
    may be shared with other revisions and stay.
    """

    def __init__(self, storage: Path) -> None:
        self.storage = storage
        self.existed = storage.exists()
        blobs = storage / "blobs"
        self.blobs_before = set(os.listdir(blobs)) if blobs.is_dir() else set()
        self.pointers: list[Path] = []

    def added(self, pointer: Path) -> None:
        self.pointers.append(pointer)

    def run(self) -> None:
        if not self.existed:
            shutil.rmtree(self.storage, ignore_errors=True)
            logger.info("Removed the unfinished download %s", self.storage)
            return
        for pointer in self.pointers:
            pointer.unlink(missing_ok=True)
        blobs = self.storage / "blobs"
        if blobs.is_dir():
            for name in set(os.listdir(blobs)) - self.blobs_before:
                (blobs / name).unlink(missing_ok=True)
        snapshots = self.storage / "snapshots"
        for pointer in self.pointers:
            _remove_empty_parents(pointer.parent, snapshots)
        logger.info("Took back %d files of an unfinished download", len(self.pointers))


def _remove_empty_parents(folder: Path, stop: Path) -> None:
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:  # not empty (or already gone): what is left was there before
            return
        folder = folder.parent


def _same_folder(first: Path, second: Path) -> bool:
    try:
        return first.resolve() == second.resolve()
    except OSError:
        return False
