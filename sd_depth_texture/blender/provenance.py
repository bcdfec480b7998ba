"""How a run signs its textures: which certificate, kept where (the Blender side).

:func:`marking_for` is called by :func:`.flow.prepare` before anything runs, so a studio's
missing, unreadable or mismatched certificate or key is one line with nothing changed. Without
``c2pa-python`` the run still writes the text record and the image properties, and says the
manifest was skipped. The installation's own certificate lives in the extension's user folder
(:func:`user_folder`), readable by the user only.
"""

from __future__ import annotations

import logging
import os
import sys

import bpy

from ..core import certificates
from ..core.certificates import HOME_VARIABLE, Credentials
from ..core.provenance import Marking, check_signing, skip_reason

log = logging.getLogger(__name__)

ADDON_ID = __package__.rpartition(".")[0]
FOLDER = "c2pa"
_checked: dict[tuple, Credentials] = {}  # credentials already test-signed, by file and time


def user_folder() -> str:
    """The folder of this installation's certificate: ``$SD_DEPTH_TEXTURE_HOME/c2pa``, else the
    extension's user folder (installed as an extension), else the user's config folder."""
    home = os.environ.get(HOME_VARIABLE)
    if home:
        return os.path.join(os.path.abspath(home), FOLDER)
    if ADDON_ID.startswith("bl_ext."):
        try:
            return bpy.utils.extension_path_user(ADDON_ID, path=FOLDER, create=True)
        except (ValueError, AttributeError) as error:  # not installed as an extension
            log.debug("No extension folder (%s): using the config folder", error)
    return os.path.join(_config_home(), "sd_depth_texture", FOLDER)


def _config_home() -> str:
    if sys.platform.startswith("win"):
        return os.environ.get("APPDATA") or os.path.expanduser("~")
    if sys.platform == "darwin":
        return os.path.expanduser("~/Library/Application Support")
    return os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")


def marking_for(cert_path: str | None, key_path: str | None) -> Marking:
    """How this run marks its textures: a studio's chain and key (both paths), else this
    installation's; checked by signing a one-pixel PNG. Without c2pa-python: the manifest is
    skipped, but a studio's files given must still be readable."""
    reason = skip_reason()
    if reason is not None:
        for setting, path in (("c2pa_cert", cert_path), ("c2pa_key", key_path)):
            if path:
                certificates.read_pem(setting, path)
        return Marking(skipped=reason)
    studio = certificates.studio_credentials(cert_path, key_path)
    if studio is not None:
        return Marking(_test_signed(studio, cert_path, key_path))
    folder = user_folder()
    credentials = certificates.installation_credentials(folder)
    return Marking(
        _test_signed(
            credentials,
            os.path.join(folder, certificates.CHAIN_FILE),
            os.path.join(folder, certificates.KEY_FILE),
        )
    )


def _test_signed(credentials: Credentials, cert_path: str, key_path: str) -> Credentials:
    """``credentials``, once a test signature worked (remembered while the files are unchanged)."""
    stamp = tuple(
        (path, os.stat(path).st_mtime_ns, os.stat(path).st_size) for path in (cert_path, key_path)
    )
    if _checked.get(stamp) != credentials:
        check_signing(credentials, cert_path)
        _checked[stamp] = credentials
    return credentials
