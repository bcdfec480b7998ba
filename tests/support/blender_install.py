"""Install an extension zip into a throwaway Blender user folder and run code next to it.

``bpy`` is a per-process singleton and reads ``BLENDER_USER_RESOURCES`` when it is imported, so
each install runs in its own Python subprocess: the zip goes through Blender's own installer
(``bpy.ops.extensions.package_install_files``, exactly what "Install from Disk" does), the add-on is
enabled, and then the caller's snippet runs in the same process, where it can drive the installed
extension like a user script would.

The snippet runs with these names defined:

- ``bpy``: the module, already holding the installed and enabled extension;
- ``ADDON_MODULE``: the extension's module name, ``bl_ext.user_default.<id>``;
- ``ADDON``: that module object;
- ``USER_DIR``: the isolated ``BLENDER_USER_RESOURCES`` folder (a ``str``);
- ``ZIP_PATH``: the zip that was installed (a ``str``).

The driver exits with code 3 if the install or the enabling fails, before the snippet runs, and
prints ``INSTALL_OK <module>`` on success, so a failure points at the right stage.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
EXTENSION_ID = "sd_depth_texture"
REPO_ID = "user_default"
INSTALL_FAILED = 3

_DRIVER = r"""
import importlib
import sys
import traceback

ZIP_PATH = {zip_path!r}
USER_DIR = {user_dir!r}
ADDON_MODULE = {module!r}
REPO_ID = {repo_id!r}


def _fail(message):
    print("INSTALL_FAILED " + message, flush=True)
    sys.exit({install_failed})


import bpy  # noqa: E402  (BLENDER_USER_RESOURCES is already set in the environment)
import addon_utils  # noqa: E402

try:
    result = bpy.ops.extensions.package_install_files(
        repo=REPO_ID, filepath=ZIP_PATH, enable_on_install=True
    )
except Exception:
    traceback.print_exc()
    _fail("package_install_files raised")
if result != {{"FINISHED"}}:
    _fail("package_install_files returned " + repr(result))

loaded_default, loaded_state = addon_utils.check(ADDON_MODULE)
if not loaded_state or ADDON_MODULE not in bpy.context.preferences.addons:
    _fail("add-on not enabled after install: " + repr((loaded_default, loaded_state)))
ADDON = sys.modules.get(ADDON_MODULE) or importlib.import_module(ADDON_MODULE)
print("INSTALL_OK " + ADDON_MODULE, flush=True)
"""


def _clean_env(user_dir: Path, extra_env: Mapping[str, str] | None) -> dict[str, str]:
    """Environment for the child: isolated user folder, and the repository kept off ``sys.path``.

    Without the repository on the path, an absolute ``import sd_depth_texture...`` inside the add-on
    fails here exactly as it would in a real Blender, instead of silently importing the checkout.
    """
    env = dict(os.environ)
    env["BLENDER_USER_RESOURCES"] = str(user_dir)
    env["PYTHONNOUSERSITE"] = "1"
    env.setdefault("HF_HUB_OFFLINE", "1")
    pythonpath = [
        p
        for p in env.get("PYTHONPATH", "").split(os.pathsep)
        if p and Path(p).resolve() != REPO_ROOT
    ]
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    else:
        env.pop("PYTHONPATH", None)
    if extra_env:
        env.update(extra_env)
    return env


def install_and_run(
    zip_path: str | os.PathLike[str],
    script: str,
    tmp_path: str | os.PathLike[str],
    *,
    extension_id: str = EXTENSION_ID,
    env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
) -> subprocess.CompletedProcess[str]:
    """Install ``zip_path`` in a fresh Blender user folder under ``tmp_path``; run ``script`` there.

    Returns the finished process (text mode, stdout and stderr captured); it does not raise on a
    non-zero exit, so callers can assert on ``returncode`` and print the output themselves.
    ``env`` adds or overrides environment variables (``HF_HUB_OFFLINE=1`` is the default).
    """
    tmp = Path(tmp_path)
    user_dir = tmp / "blender_user"
    user_dir.mkdir(parents=True, exist_ok=True)
    driver = _DRIVER.format(
        zip_path=str(Path(zip_path).resolve()),
        user_dir=str(user_dir),
        module=f"bl_ext.{REPO_ID}.{extension_id}",
        repo_id=REPO_ID,
        install_failed=INSTALL_FAILED,
    )
    script_path = tmp / "blender_install_driver.py"
    script_path.write_text(driver + "\n" + textwrap.dedent(script), encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(script_path)],
        cwd=tmp,
        env=_clean_env(user_dir, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    """The child's exit code and output, for assertion messages."""
    return (
        f"exit code {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )
