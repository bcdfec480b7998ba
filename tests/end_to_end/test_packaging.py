"""The extension zip: built with Blender's own tool, valid, and installable by Blender itself.

Everything here runs the real tools: ``build.py`` drives ``blender_ext.py`` from the bpy wheel, and
the end-to-end checks install the zip with ``bpy.ops.extensions.package_install_files`` in a
subprocess with an isolated ``BLENDER_USER_RESOURCES``. The ``--with-wheels`` test downloads one
tiny pure-Python wheel (tomli-w, ~7 kB) through pip, so it needs the package index.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import re
import runpy
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
from support import REPO
from support.blender_install import describe, install_and_run

REPO_ROOT = REPO

MANIFEST = "blender_manifest.toml"
EXTENSION_ID = "sd_depth_texture"
MODULE = f"bl_ext.user_default.{EXTENSION_ID}"


def _load_build() -> ModuleType:
    """Import ``build.py`` by path: the repository root is not on ``sys.path`` under pytest."""
    spec = importlib.util.spec_from_file_location("sd_depth_texture_build", REPO_ROOT / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build()


def run_build(argv: list[str]) -> tuple[int, str, str]:
    """``build.main(argv)`` with its stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = build.main(argv)
    return rc, out.getvalue(), err.getvalue()


def valid_addon_tags() -> set[str]:
    tags_py = build.tags_file_for(build.find_blender_ext())
    assert tags_py is not None
    return set(runpy.run_path(str(tags_py))["addons"])


def zip_manifest(zip_path: Path) -> dict:
    with zipfile.ZipFile(zip_path) as zf:
        return tomllib.loads(zf.read(MANIFEST).decode("utf-8"))


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plain zip (no wheels), built once for this module with the default options."""
    out_dir = tmp_path_factory.mktemp("dist")
    rc, stdout, stderr = run_build(["--output-dir", str(out_dir)])
    assert rc == 0, stderr
    paths = [Path(line) for line in stdout.splitlines() if line.strip()]
    assert len(paths) == 1, stdout
    return paths[0]


# -----------------------------------------------------------------------------------------------
# The plain zip.


def test_build_prints_the_zip_it_wrote(built_zip: Path) -> None:
    assert built_zip.is_file()
    assert built_zip.name == f"{EXTENSION_ID}-0.1.0.zip"


def test_zip_passes_blender_validate_with_tags(built_zip: Path) -> None:
    blender_ext = build.find_blender_ext()
    tags = build.tags_file_for(blender_ext)
    proc = subprocess.run(
        [sys.executable, str(blender_ext), "validate", str(built_zip), f"--valid-tags={tags}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zip_root_holds_manifest_and_package(built_zip: Path) -> None:
    with zipfile.ZipFile(built_zip) as zf:
        names = set(zf.namelist())
    assert MANIFEST in names
    assert "__init__.py" in names
    assert not any(n.startswith(f"{EXTENSION_ID}/") for n in names), "package nested one level"
    junk = [
        n
        for n in names
        if "__pycache__" in n.split("/")
        or n.endswith(".pyc")
        or n.split("/")[0] == "tests"
        or any(part.startswith(".") for part in n.split("/"))
    ]
    assert not junk


def test_zip_holds_every_package_source_file(built_zip: Path) -> None:
    package = REPO_ROOT / EXTENSION_ID
    expected = {
        p.relative_to(package).as_posix()
        for p in package.rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and p.suffix != ".pyc"
        and not any(part.startswith(".") for part in p.relative_to(package).parts)
        and p.relative_to(package).parts[0] != "tests"
    }
    with zipfile.ZipFile(built_zip) as zf:
        names = set(zf.namelist()) - {MANIFEST, "LICENSE"}
    assert names == expected


def test_manifest_fields(built_zip: Path) -> None:
    manifest = zip_manifest(built_zip)
    assert manifest == tomllib.loads((REPO_ROOT / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["schema_version"] == "1.0.0"
    assert manifest["id"] == EXTENSION_ID
    assert manifest["name"] == "SD Depth Texture"
    assert manifest["type"] == "add-on"
    assert re.fullmatch(r"\d+\.\d+\.\d+", manifest["version"])
    assert manifest["maintainer"]
    assert manifest["license"] == ["SPDX:GPL-3.0-or-later"]
    assert manifest["blender_version_min"] == "4.2.0"
    tagline = manifest["tagline"]
    assert 0 < len(tagline) <= 64 and tagline[-1].isalnum()
    assert manifest["tags"] and set(manifest["tags"]) <= valid_addon_tags()
    assert set(manifest["permissions"]) == {"files", "network"}
    for reason in manifest["permissions"].values():
        assert 0 < len(reason) <= 64 and reason[-1].isalnum()
    assert "wheels" not in manifest and "platforms" not in manifest


# -----------------------------------------------------------------------------------------------
# Failures: one clear line, non-zero exit.


def test_missing_init_fails_with_one_line(tmp_path: Path) -> None:
    empty = tmp_path / EXTENSION_ID
    empty.mkdir()
    rc, stdout, stderr = run_build(
        ["--package-dir", str(empty), "--output-dir", str(tmp_path / "out")]
    )
    assert rc == 1 and stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("build.py: error:")
    assert "__init__.py" in stderr
    assert not (tmp_path / "out").exists()


def test_invalid_tag_is_rejected(tmp_path: Path) -> None:
    text = (REPO_ROOT / MANIFEST).read_text(encoding="utf-8")
    bad, n = re.subn(r"(?m)^tags = .*$", 'tags = ["Not A Blender Tag"]', text)
    assert n == 1
    (tmp_path / MANIFEST).write_text(bad, encoding="utf-8")
    rc, _, stderr = run_build(
        ["--manifest", str(tmp_path / MANIFEST), "--output-dir", str(tmp_path / "out")]
    )
    assert rc == 1
    assert stderr.count("\n") == 1 and "Not A Blender Tag" in stderr


def test_unpinned_torch_is_refused_before_downloading(tmp_path: Path) -> None:
    rc, _, stderr = run_build(
        [
            "--output-dir",
            str(tmp_path),
            "--with-wheels",
            "linux-x64",
            "--package",
            "torch>=2",
        ]
    )
    assert rc == 1 and "torch must be pinned" in stderr
    assert build.TORCH_REQUIREMENT == "torch==2.13.0"


def test_wheel_keys_go_to_the_top_level_table() -> None:
    text = (REPO_ROOT / MANIFEST).read_text(encoding="utf-8")
    wheels = ["./wheels/a-1.0-py3-none-any.whl", "./wheels/b-2.0-cp311-cp311-win_amd64.whl"]
    new = tomllib.loads(build.manifest_with_wheels(text, ["windows-x64"], wheels))
    assert new["wheels"] == wheels and new["platforms"] == ["windows-x64"]
    assert "wheels" not in new.get("permissions", {}) and "wheels" not in new.get("build", {})


# -----------------------------------------------------------------------------------------------
# End to end: Blender's own installer.


def test_installs_and_enables_in_blender(built_zip: Path, tmp_path: Path) -> None:
    proc = install_and_run(
        built_zip,
        """
        import addon_utils

        assert ADDON.__name__ == ADDON_MODULE, ADDON.__name__
        assert ADDON.__file__.startswith(USER_DIR), ADDON.__file__
        assert hasattr(ADDON, "register") and hasattr(ADDON, "unregister")
        # An absolute `import sd_depth_texture...` would have pulled in a second copy.
        assert "sd_depth_texture" not in sys.modules, "absolute import of the package"
        ops = sorted(dir(bpy.ops.sd_depth_texture))
        print("OPERATORS", ops)
        assert ops, "the add-on registered no bpy.ops.sd_depth_texture operators"

        bpy.ops.preferences.addon_disable(module=ADDON_MODULE)
        assert not addon_utils.check(ADDON_MODULE)[1]
        assert not dir(bpy.ops.sd_depth_texture), "operators left after unregister()"
        print("E2E_OK")
        """,
        tmp_path,
    )
    assert proc.returncode == 0 and "E2E_OK" in proc.stdout, describe(proc)


def test_with_wheels_bundles_and_blender_installs_them(tmp_path: Path) -> None:
    host = build.host_platform()
    if host not in build.PIP_PLATFORMS:
        pytest.skip(f"no wheel platform mapping for this machine ({host})")
    rc, stdout, stderr = run_build(
        [
            "--output-dir",
            str(tmp_path / "dist"),
            "--with-wheels",
            host,
            "--package",
            "tomli-w==1.2.0",
        ]
    )
    assert rc == 0, stderr
    (zip_path,) = (Path(line) for line in stdout.splitlines())
    assert zip_path.name == f"{EXTENSION_ID}-0.1.0-{host.replace('-', '_')}.zip"

    wheel = "./wheels/tomli_w-1.2.0-py3-none-any.whl"
    manifest = zip_manifest(zip_path)
    assert manifest["wheels"] == [wheel]
    assert manifest["platforms"] == [host]
    assert manifest["build"]["generated"]["platforms"] == [host]
    with zipfile.ZipFile(zip_path) as zf:
        assert wheel[2:] in zf.namelist() and "__init__.py" in zf.namelist()

    proc = install_and_run(
        zip_path,
        """
        import tomli_w

        # Blender unpacked the bundled wheel into the extensions' own site-packages.
        assert "/extensions/.local/lib/" in tomli_w.__file__.replace("\\\\", "/"), tomli_w.__file__
        assert tomli_w.dumps({"a": 1}).strip() == "a = 1"
        print("WHEEL_OK")
        """,
        tmp_path,
    )
    assert proc.returncode == 0 and "WHEEL_OK" in proc.stdout, describe(proc)


def test_optional_wheels_go_where_the_index_has_them_and_never_stop_the_build(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """c2pa-python is offered in each platform's zip; a platform the index has no wheel for
    gets its zip without it (the add-on then says the manifest was skipped)."""
    assert build.OPTIONAL_REQUIREMENTS == ("c2pa-python==0.38.1", "cryptography==51.0.1")
    requirements = (REPO_ROOT / "requirements.txt").read_text()
    for pin in build.OPTIONAL_REQUIREMENTS:
        assert pin in requirements
    host = build.host_platform()
    if host not in build.PIP_PLATFORMS:
        pytest.skip(f"no wheel platform mapping for this machine ({host})")
    caplog.set_level(logging.WARNING, logger="build")
    wheels = build.download_wheels(
        tmp_path / "wheels",
        [host],
        ["tomli-w==1.2.0"],
        python_version="3.11",
        exclude=(),
        optional=["c2pa-python==0.0.0"],  # no such release: the build goes on without it
    )
    assert wheels == ["./wheels/tomli_w-1.2.0-py3-none-any.whl"]
    assert f"{host} goes without c2pa-python==0.0.0" in caplog.text
