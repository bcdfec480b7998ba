"""Shared fixtures: a tiny SD2-depth model saved to disk, the registered add-on, fresh scenes."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

# Nothing is ever downloaded during tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The installation's C2PA certificate is made here, never in the real user's folders.
_HOME = tempfile.TemporaryDirectory(prefix="sd_depth_texture_home_")
os.environ["SD_DEPTH_TEXTURE_HOME"] = _HOME.name


def pytest_sessionfinish(session, exitstatus) -> None:
    session.config.sd_exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config) -> None:
    """Leave with pytest's status once it has reported everything.

    The bpy 4.2 module can crash while tearing itself down at interpreter exit after a long
    suite (a segfault after "N passed" was seen), which would turn a green run red.
    """
    status = getattr(config, "sd_exit_status", None)
    if status is not None and "bpy" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random-weight pipeline saved with save_pretrained (safetensors), loaded by path."""
    from sd_depth_texture.core.diffusion.tiny import build_tiny_pipeline

    path = tmp_path_factory.mktemp("tiny_sd2_depth")
    build_tiny_pipeline(seed=0).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_flux_dir(tmp_path_factory) -> Path:
    """A tiny random-weight FLUX.1 Depth (``FluxControlPipeline``) saved with save_pretrained."""
    from sd_depth_texture.core.diffusion.flux_tiny import build_tiny_flux_pipeline

    path = tmp_path_factory.mktemp("tiny_flux_depth")
    build_tiny_flux_pipeline(seed=0).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_maps_dir(tmp_path_factory) -> Path:
    """A tiny random-weight Marigold intrinsics (maps) pipeline saved as a diffusers folder."""
    from sd_depth_texture.core.diffusion.tiny_auxiliary import build_tiny_marigold

    path = tmp_path_factory.mktemp("tiny_marigold")
    build_tiny_marigold(seed=0).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_flux_base_dir(tmp_path_factory) -> Path:
    """A tiny random-weight FLUX.1-dev base (``FluxPipeline``: no depth input of its own)."""
    from sd_depth_texture.core.diffusion.flux_tiny import build_tiny_flux_pipeline

    path = tmp_path_factory.mktemp("tiny_flux_dev")
    build_tiny_flux_pipeline(seed=0, depth=False).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_flux_depth_lora(tmp_path_factory) -> Path:
    """The depth control LoRA that makes :func:`tiny_flux_base_dir` a depth model."""
    from sd_depth_texture.core.diffusion.flux_tiny import save_tiny_depth_lora

    return save_tiny_depth_lora(tmp_path_factory.mktemp("tiny_flux_lora"))


@pytest.fixture(scope="session")
def addon():
    """The add-on registered from source into this process's Blender (once per session)."""
    import bpy

    import sd_depth_texture

    if not hasattr(bpy.types.Scene, "sd_depth_texture"):
        sd_depth_texture.register()
    return sd_depth_texture


@pytest.fixture
def sample_scene(addon):
    """A fresh sample scene with Suzanne selected; the generated model is freed afterwards."""
    from sd_depth_texture.blender import sample

    scene = sample.build_sample_scene()
    yield scene
