"""Which of the model's Python packages are installed, and the pip command that installs them.

Standard library only: this runs in a Blender that has no torch, to tell the user what is
missing and how to get it. An installed extension carries no ``requirements.txt``, so the pins
live here; they are the ones the repository's ``requirements.txt`` lists (a test keeps the two
equal).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import shlex
import sys

from ..errors import TextureError

logger = logging.getLogger(__name__)

#: Package (as pip and importlib.metadata name it) -> the version the add-on is tested with.
PINNED_VERSIONS: dict[str, str] = {
    "torch": "2.13.0",
    "diffusers": "0.42.1",
    "transformers": "5.23.0",
    "huggingface_hub": "2.4.0",
    "safetensors": "0.8.0",
    "accelerate": "1.15.0",
}
#: Optional packages: name (as pip names it) -> (import name, pinned version, what it adds and
#: what happens without it). Without them every run without that feature works.
OPTIONAL_PACKAGES: dict[str, tuple[str, str, str]] = {
    "c2pa-python": (
        "c2pa",
        "0.38.1",
        "each texture's signed C2PA manifest; without it, runs skip that",
    ),
    "peft": ("peft", "0.21.2", "LoRAs; without it, a run given LoRAs stops and says so"),
}
#: torch wheels built against CUDA 12.8, for NVIDIA GPUs on Linux and Windows.
TORCH_CUDA_INDEX = "https://download.pytorch.org/whl/cu128"
#: CPU-only torch wheels for Linux and Windows (much smaller than the CUDA ones).
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def missing_packages() -> list[str]:
    """The pinned packages this Python cannot import, in install order; empty when all are."""
    return [name for name in PINNED_VERSIONS if not _importable(name)]


def missing_optional() -> list[str]:
    """The optional packages this Python cannot import (generating does not need them)."""
    return [name for name, (module, _, _) in OPTIONAL_PACKAGES.items() if not _importable(module)]


def optional_versions() -> dict[str, str | None]:
    """Each optional package's installed version, None where it is not installed."""
    versions: dict[str, str | None] = {}
    for name, (module, _, _) in OPTIONAL_PACKAGES.items():
        try:
            versions[name] = importlib.metadata.version(name) if _importable(module) else None
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def optional_install_command(python_executable: str, platform: str) -> str:
    """The pip command that installs the optional packages (PyPI wheels for every platform)."""
    python = (
        f'"{python_executable}"'
        if _system(platform) == "windows"
        else shlex.quote(python_executable)
    )
    packages = " ".join(f"{name}=={pin}" for name, (_, pin, _) in OPTIONAL_PACKAGES.items())
    return f"{python} -m pip install {packages}"


def installed_versions() -> dict[str, str | None]:
    """Each pinned package's installed version, None where it is not installed."""
    versions: dict[str, str | None] = {}
    for name in PINNED_VERSIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def untested_versions() -> list[str]:
    """One line per installed package whose version differs from the pin, e.g. for a panel.

    A local build label (``2.13.0+cu128``) is the same release and is not reported.
    """
    lines = []
    for name, found in installed_versions().items():
        pinned = PINNED_VERSIONS[name]
        if found is not None and found.split("+")[0] != pinned:
            lines.append(f"{name} {found} is installed; the add-on is tested with {pinned}")
    return lines


def install_command(python_executable: str, platform: str, *, cuda: bool = True) -> str:
    """The exact pip command that installs the pinned packages into ``python_executable``.

    ``platform`` is ``sys.platform`` (or ``platform.system()``) of the machine that runs it.
    On Linux and Windows torch comes from PyTorch's own index: the CUDA 12.8 build, or with
    ``cuda=False`` the much smaller CPU build. On macOS PyPI's torch already supports Apple GPUs
    (MPS), so no extra index is needed.
    """
    system = _system(platform)
    # cmd.exe and PowerShell both take a double-quoted path; POSIX shells take shlex quoting.
    python = f'"{python_executable}"' if system == "windows" else shlex.quote(python_executable)
    packages = " ".join(f"{name}=={version}" for name, version in PINNED_VERSIONS.items())
    command = f"{python} -m pip install {packages}"
    if system != "macos":
        # An extra index, not a replacement: the other packages come from PyPI, and pip
        # prefers the index's 2.13.0+cu128 (or +cpu) build to PyPI's plain 2.13.0.
        command += f" --extra-index-url {TORCH_CUDA_INDEX if cuda else TORCH_CPU_INDEX}"
    return command


def _system(platform: str) -> str:
    name = platform.strip().lower()
    if name.startswith(("win", "cygwin")):
        return "windows"
    if name.startswith(("darwin", "mac")):
        return "macos"
    if name.startswith("linux"):
        return "linux"
    raise TextureError(f"No install command for platform '{platform}' (use linux, win32, darwin)")


def _importable(name: str) -> bool:
    """find_spec without importing: torch alone takes seconds to import."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken parent package, or a module without a spec
        module = sys.modules.get(name)
        return module is not None
