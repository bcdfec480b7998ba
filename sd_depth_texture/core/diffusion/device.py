"""Where the model runs, in which precision, and what running out of memory becomes.

No bpy. Every place that can exhaust GPU or host memory (loading weights, moving them to the
device, encoding, denoising) runs inside :func:`out_of_memory`, so the user always gets the same
one-line :class:`~sd_depth_texture.core.errors.TextureError` and the device caches are emptied
before the next try.
"""

from __future__ import annotations

import gc
import logging
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ...defaults import VAE_TILING_BELOW_BYTES
from ..errors import SettingError, TextureError

logger = logging.getLogger(__name__)

OUT_OF_MEMORY_ADVICE = (
    "lower the resolution, use fp16 precision, or close other programs using GPU memory"
)
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass(frozen=True)
class DeviceInfo:
    """One device this machine can run the model on, as the preferences panel shows it."""

    kind: str  # "CUDA", "MPS" or "CPU"
    name: str
    memory_bytes: int | None  # total memory of a GPU; None where torch cannot tell
    device: str  # what to type as the device setting: "cuda:0", "mps", "cpu"

    @property
    def label(self) -> str:
        memory = f", {self.memory_bytes / 1e9:.1f} GB" if self.memory_bytes else ""
        return f"{self.kind}: {self.name}{memory}"


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def describe_devices() -> list[DeviceInfo]:
    """Every device torch sees here, GPUs first; the CPU is always last."""
    devices: list[DeviceInfo] = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            properties = torch.cuda.get_device_properties(index)
            devices.append(
                DeviceInfo("CUDA", properties.name, int(properties.total_memory), f"cuda:{index}")
            )
    if mps_available():
        memory = getattr(torch.mps, "recommended_max_memory", None)
        devices.append(DeviceInfo("MPS", "Apple GPU", int(memory()) if memory else None, "mps"))
    devices.append(DeviceInfo("CPU", platform.processor() or platform.machine(), None, "cpu"))
    return devices


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda, then mps, then cpu; an explicit device must exist on this machine."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as error:
        raise TextureError(
            f"Unknown device '{name}' (use auto, cpu, cuda, cuda:N or mps)"
        ) from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TextureError(f"Device '{name}' requested but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise TextureError(
                f"Device '{name}' requested but only {torch.cuda.device_count()} GPU(s) exist"
            )
    elif device.type == "mps" and not mps_available():
        raise TextureError(f"Device '{name}' requested but Apple MPS is not available here")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise TextureError(f"Unsupported device '{name}' (use auto, cpu, cuda, cuda:N or mps)")
    return device


def resolve_dtype(
    precision: str, device: torch.device, *, prefer_bf16: bool = False
) -> torch.dtype:
    """``auto`` -> half precision on a GPU (half the memory, fast), fp32 on the CPU (fp16 is slow
    there). ``prefer_bf16``: a model trained and published in bf16 (FLUX), whose activations
    overflow fp16, gets bf16 as its half precision."""
    precision = (precision or "auto").strip().lower()
    if precision == "auto":
        if device.type == "cpu":
            return torch.float32
        return torch.bfloat16 if prefer_bf16 else torch.float16
    if precision not in _DTYPES:
        raise TextureError(f"Unknown precision '{precision}' (use auto, fp16, bf16 or fp32)")
    if device.type == "cpu" and precision == "fp16":
        logger.warning("fp16 on the CPU is slow and may be unsupported; consider fp32 or bf16")
    return _DTYPES[precision]


def check_offload(offload: str, device: torch.device) -> None:
    """CPU offload moves the model between the CPU and a GPU: refused in one line where the
    model runs on the CPU (diffusers would raise a RuntimeError only once the model is loaded)."""
    if offload != "none" and device.type == "cpu":
        raise SettingError(
            "offload", offload, "none on a machine without a GPU",
            f"{{name}} {offload} moves the model between the CPU and a GPU, and this run has "
            "no GPU (it runs on the CPU): set it to none.",
        )  # fmt: skip


def place_pipeline(pipe, device: torch.device, offload: str):
    """The pipeline on ``device``: whole (``none``), or with accelerate's offload hooks that
    keep it in host memory and move one model (``model``) or one layer (``sequential``) to the
    GPU as it runs."""
    with out_of_memory(f"loading the model onto {device}"):
        if offload == "model":
            pipe.enable_model_cpu_offload(device=device)
        elif offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=device)
        else:
            pipe = pipe.to(device=device)
    return pipe


def vae_tiling_wanted(mode: str, device: torch.device, offload: str) -> bool:
    """``on``/``off`` as given; ``auto``: tile where GPU memory is scarce (offloading, or a GPU
    under :data:`~...defaults.VAE_TILING_BELOW_BYTES`), never on the CPU (host memory is large
    and whole decoding leaves no tile seams)."""
    if mode != "auto":
        return mode == "on"
    if offload != "none":
        return True
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.get_device_properties(index).total_memory < VAE_TILING_BELOW_BYTES
    return False


def set_vae_tiling(pipe, tiled: bool) -> None:
    """Decode (and encode) in tiles, or whole; the pinned diffusers has this on the VAE only.
    diffusers tiles only pictures larger than the VAE's tile (its ``sample_size``)."""
    vae = getattr(pipe, "vae", None)
    if vae is None or not hasattr(vae, "enable_tiling"):
        return
    if tiled:
        vae.enable_tiling()
    else:
        vae.disable_tiling()


def empty_device_caches() -> None:
    """Hand freed tensors back to the driver, so other programs (and the next load) can use it."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if mps_available():
        torch.mps.empty_cache()


def is_out_of_memory(error: BaseException) -> bool:
    """torch's own OOM type, a backend's "out of memory" RuntimeError, or Python's MemoryError."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def first_line(error: BaseException) -> str:
    """An exception as one line: the first line of its message, else its type."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextmanager
def out_of_memory(doing: str) -> Iterator[None]:
    """Turn running out of memory while ``doing`` into one TextureError; other errors pass."""
    try:
        yield
    except TextureError:
        raise
    except (RuntimeError, MemoryError) as error:
        if not is_out_of_memory(error):
            raise
        empty_device_caches()
        logger.error("Out of memory while %s: %s", doing, first_line(error))
        raise TextureError(f"Out of memory while {doing}: {OUT_OF_MEMORY_ADVICE}") from error
