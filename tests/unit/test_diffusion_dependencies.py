"""What the model needs installed, found without importing torch, and the command to get it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sd_depth_texture.core.diffusion import dependencies
from sd_depth_texture.core.diffusion.dependencies import install_command, missing_packages
from sd_depth_texture.core.errors import TextureError

REPO = Path(__file__).resolve().parents[2]
PACKAGES = (
    "torch==2.13.0 diffusers==0.42.1 transformers==5.23.0 huggingface_hub==2.4.0 "
    "safetensors==0.8.0 accelerate==1.15.0"
)


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        requirement = line.split("#")[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==")
            pins[name.strip().replace("-", "_")] = version.strip()
    return pins


def test_the_pins_are_the_ones_requirements_txt_lists() -> None:
    pins = requirement_pins()
    assert {name: pins.get(name) for name in dependencies.PINNED_VERSIONS} == (
        dependencies.PINNED_VERSIONS
    )


def test_nothing_is_missing_in_the_test_environment() -> None:
    assert missing_packages() == []
    versions = dependencies.installed_versions()
    assert versions["torch"] is not None and versions["torch"].startswith("2.13.0")
    assert set(versions) == set(dependencies.PINNED_VERSIONS)


def test_torch_missing_by_find_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def without_torch(name: str, *args):
        return None if name == "torch" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_torch)
    assert missing_packages() == ["torch"]


def test_packages_missing_by_sys_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """``sys.modules[name] = None`` is how Python marks a module as not importable."""
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "accelerate", None)
    assert missing_packages() == ["torch", "accelerate"]


def test_versions_of_missing_and_different_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        dependencies,
        "PINNED_VERSIONS",
        {**dependencies.PINNED_VERSIONS, "torch": "9.9.9", "no_such_package_here": "1.0"},
    )
    assert dependencies.installed_versions()["no_such_package_here"] is None
    (line,) = dependencies.untested_versions()
    assert line.startswith("torch 2.13.0") and "tested with 9.9.9" in line


def test_no_version_notes_for_local_build_labels() -> None:
    assert dependencies.untested_versions() == []  # torch here is 2.13.0+cpu


@pytest.mark.parametrize(
    ("python", "platform", "cuda", "expected"),
    [
        (
            "/usr/bin/python3.11",
            "linux",
            True,
            f"/usr/bin/python3.11 -m pip install {PACKAGES} "
            "--extra-index-url https://download.pytorch.org/whl/cu128",
        ),
        (
            "/opt/blender 4.2/python/bin/python3.11",
            "linux",
            False,
            f"'/opt/blender 4.2/python/bin/python3.11' -m pip install {PACKAGES} "
            "--extra-index-url https://download.pytorch.org/whl/cpu",
        ),
        (
            r"C:\Program Files\Blender Foundation\Blender 4.2\4.2\python\bin\python.exe",
            "win32",
            True,
            r'"C:\Program Files\Blender Foundation\Blender 4.2\4.2\python\bin\python.exe"'
            f" -m pip install {PACKAGES} --extra-index-url https://download.pytorch.org/whl/cu128",
        ),
        (
            "/Applications/Blender.app/Contents/Resources/4.2/python/bin/python3.11",
            "darwin",
            True,
            "/Applications/Blender.app/Contents/Resources/4.2/python/bin/python3.11 "
            f"-m pip install {PACKAGES}",
        ),
    ],
    ids=["linux-cuda", "linux-cpu-spaces", "windows", "macos"],
)
def test_install_command(python: str, platform: str, cuda: bool, expected: str) -> None:
    assert install_command(python, platform, cuda=cuda) == expected


def test_install_command_takes_platform_system_names_and_refuses_others() -> None:
    assert install_command("py", "Windows") == install_command("py", "win32")
    assert install_command("py", "Darwin") == install_command("py", "darwin")
    assert install_command("py", "Linux") == install_command("py", "linux")
    with pytest.raises(TextureError, match="sunos5"):
        install_command("py", "sunos5")


def test_settings_and_dependencies_import_in_a_python_without_torch() -> None:
    """As in a Blender without the packages: importing them must not touch torch at all."""
    script = (
        "import sys\n"
        "for name in ('torch', 'diffusers', 'transformers', 'huggingface_hub', 'safetensors'):\n"
        "    sys.modules[name] = None\n"
        "from sd_depth_texture.core.diffusion import dependencies, settings\n"
        "from sd_depth_texture.core.diffusion.dependencies import install_command\n"
        "settings.validate_settings(settings.GenerationSettings('x'), has_init_image=False)\n"
        "print(','.join(dependencies.missing_packages()))\n"
        "print(install_command(sys.executable, sys.platform))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    missing, command = result.stdout.splitlines()
    assert missing == "torch,diffusers,transformers,huggingface_hub,safetensors"
    assert "torch==2.13.0" in command


def test_c2pa_is_optional_pinned_as_requirements_txt_and_found_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """c2pa-python and peft never count as missing for generating; they have their own state
    and command."""
    pins = requirement_pins()
    for name, (_, version, _) in dependencies.OPTIONAL_PACKAGES.items():
        assert pins.get(name.replace("-", "_")) == version
        assert name not in dependencies.PINNED_VERSIONS
    assert dependencies.missing_optional() == []
    assert dependencies.optional_versions()["c2pa-python"] == "0.38.1"
    assert dependencies.optional_versions()["peft"] == "0.21.2"
    monkeypatch.setitem(
        dependencies.OPTIONAL_PACKAGES, "c2pa-python", ("no_such_c2pa_module", "0.38.1", "")
    )
    assert dependencies.missing_optional() == ["c2pa-python"]
    assert dependencies.optional_versions()["c2pa-python"] is None
    assert missing_packages() == []  # generating is still ready
    assert dependencies.optional_install_command("/usr/bin/python3.11", "linux") == (
        "/usr/bin/python3.11 -m pip install c2pa-python==0.38.1 peft==0.21.2"
    )
