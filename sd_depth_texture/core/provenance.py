"""What a texture says about what made it, in the forms other tools read (no bpy).

From the run record (:mod:`.record`) this builds the C2PA manifest (a ``c2pa.actions``
assertion whose ``c2pa.created`` action names the IPTC digital source type, the software agent
and the record itself), the A1111-style ``parameters`` line that image browsers show, and signs
a PNG with a certificate chain and key (:mod:`.certificates`). ``c2pa-python`` is optional and
imported only to sign: without it the text record and the image properties are still written
and the run says the manifest was skipped (:func:`skip_reason`).

The marking cannot be turned off: there is no level without it. ``minimal`` (see
:func:`.record.RunRecord.to_dict`) drops the prompts, never the marking, the model or the
licence.
"""

from __future__ import annotations

import importlib.util
import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .certificates import Credentials
from .errors import SettingError, TextureError
from .record import BOTH, GENERATED, PROJECTED

log = logging.getLogger(__name__)

SOFTWARE = "sd_depth_texture"
RECORD_LABEL = "org.sd_depth_texture.record"  # the C2PA assertion that holds the run record
PARAMETERS_KEY = "parameters"  # the PNG text key A1111, ComfyUI viewers and image browsers read
_IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
TRAINED = _IPTC + "trainedAlgorithmicMedia"  # a trained model made it
COMPOSITE = _IPTC + "compositeWithTrainedAlgorithmicMedia"  # a model's pixels over others
# Projected from the user's own pictures with a digital tool: no claim of a trained model.
DIGITAL_CREATION = _IPTC + "digitalCreation"
AI_SOURCE_TYPES = (TRAINED, COMPOSITE)
SIGNED = "signed"
SKIPPED = "skipped"
# A1111's names for the schedulers it shares; the others keep their own.
_SAMPLERS = {"dpmpp": "DPM++ 2M", "euler_a": "Euler a", "ddim": "DDIM", "pndm": "PLMS"}


@dataclass(frozen=True)
class Marking:
    """How a run marks its textures: signed with ``credentials``, or (None) the manifest
    skipped for ``skipped`` (a one-line reason the report and the run's notes give)."""

    credentials: Credentials | None = None
    skipped: str | None = None

    def notes(self) -> list[str]:
        """What the run's message adds: why the manifest was skipped, if it was."""
        return [self.skipped] if self.skipped else []

    def status(self) -> dict[str, Any]:
        """The C2PA status the report and each batch manifest line carry (never the key)."""
        if self.credentials is None:
            return {"status": SKIPPED, "reason": self.skipped}
        return {"status": SIGNED, **self.credentials.describe()}


def c2pa_installed() -> bool:
    """Whether ``c2pa-python`` can be imported (found without importing it)."""
    try:
        return importlib.util.find_spec("c2pa") is not None
    except (ImportError, ValueError):
        return False


def skip_reason() -> str | None:
    """Why this Python cannot sign, or None when it can."""
    if c2pa_installed():
        return None
    return "The C2PA manifest was skipped: c2pa-python is not installed (see docs/install.md)"


def source_type(record: Mapping[str, Any]) -> str:
    """The IPTC digital source type of a texture from its record (``to_dict`` form).

    A trained model's pixels alone: trainedAlgorithmicMedia. Mixed with other pixels (a
    projected view, or a one-view run painting over an existing texture):
    compositeWithTrainedAlgorithmicMedia. The user's own pictures alone: digitalCreation, no AI
    claim, unless they were painted over a texture a model made (its record says so).
    """
    origin = record.get("origin")
    under = [entry.get("origin") for entry in record.get("painted_over") or []]
    under_ai = any(kind in (GENERATED, BOTH) for kind in under)
    if origin == GENERATED:
        return COMPOSITE if under else TRAINED
    if origin == BOTH or (origin == PROJECTED and under_ai):
        return COMPOSITE
    return DIGITAL_CREATION


def manifest(record: Mapping[str, Any], title: str) -> dict[str, Any]:
    """The C2PA manifest definition of one texture (``record``: its record, already filtered
    by the run's provenance level)."""
    version = str(record.get("version", ""))
    agent = {"name": SOFTWARE, "version": version}
    action: dict[str, Any] = {
        "action": "c2pa.created",
        "digitalSourceType": source_type(record),
        "softwareAgent": agent,
    }
    return {
        "claim_generator_info": [agent],
        "title": title,
        "format": "image/png",
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [action]}},
            {"label": RECORD_LABEL, "data": dict(record)},
        ],
    }


def parameters_line(record: Mapping[str, Any]) -> str | None:
    """The A1111-style ``parameters`` text of a generated texture: the prompt, the negative
    prompt (both absent in a minimal record) and one line of settings; None for a texture that
    no model made (a projection has no generation parameters)."""
    generation = (record.get("settings") or {}).get("generation")
    model = record.get("model")
    if record.get("origin") not in (GENERATED, BOTH) or not generation or not model:
        return None
    views = [view for view in record.get("views") or [] if view.get("origin") == GENERATED]
    first = views[0] if views else {}
    width, height = first.get("width"), first.get("height")

    # What the views were really sent: a family's recommended steps and guidance where the run
    # left them unset, its own scheduler (FLUX).
    def sent(name: str) -> Any:
        value = first.get(name)
        return generation.get(name) if value is None else value

    scheduler = str(sent("scheduler") or "")
    digest = model.get("weights_sha256") or model.get("revision") or ""
    fields = [
        ("Steps", sent("steps")),
        ("Sampler", _SAMPLERS.get(scheduler, scheduler)),
        ("CFG scale", sent("guidance")),
        ("Seed", generation.get("seed")),
        ("Size", f"{width}x{height}" if width and height else None),
        ("Model hash", digest[:10] or None),
        ("Model", model.get("source")),
        ("Licence", model.get("licence")),
        ("Views", len(views)),
        ("Version", f"{SOFTWARE} {record.get('version', '')}"),
    ]
    settings = ", ".join(f"{key}: {_plain(value)}" for key, value in fields if value is not None)
    lines = []
    if "prompt" in generation:
        lines.append(str(generation["prompt"]))
        if generation.get("negative_prompt"):
            lines.append(f"Negative prompt: {generation['negative_prompt']}")
    return "\n".join([*lines, settings])


def _plain(value: Any) -> str:
    """A settings value as A1111 writes it: no commas or line breaks inside a field."""
    return str(value).replace("\n", " ").replace(",", ";")


def sign_png(data: bytes, definition: Mapping[str, Any], credentials: Credentials) -> bytes:
    """``data`` (a PNG file's bytes) with the C2PA manifest ``definition`` embedded and signed.

    No thumbnail is embedded: the texture is the picture, and a JPEG of a UV atlas would only
    add to every file. Raises :class:`TextureError` with one line where signing fails.
    """
    import c2pa

    settings = c2pa.Settings.from_dict({"builder": {"thumbnail": {"enabled": False}}})
    signer_info = c2pa.C2paSignerInfo(
        getattr(c2pa.C2paSigningAlg, credentials.algorithm),
        credentials.chain,
        credentials.key,
        None,  # no time-stamp authority: signing stays offline
    )
    signed = io.BytesIO()
    try:
        with (
            c2pa.Signer.from_info(signer_info) as signer,
            c2pa.Context(settings) as context,
            c2pa.Builder(dict(definition), context=context) as builder,
        ):
            builder.sign(signer, "image/png", io.BytesIO(data), signed)
    except c2pa.C2paError as error:
        # The library's message names the certificate's problem, never the key's bytes.
        raise TextureError(f"Cannot sign the C2PA manifest: {_first_line(error)}.") from error
    return signed.getvalue()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0].rstrip(".") if text else type(error).__name__


def check_signing(credentials: Credentials, cert_path: str) -> None:
    """Sign a one-pixel PNG with ``credentials`` so that a chain C2PA refuses (a self-signed
    leaf, an expired or CA certificate) is one line before anything runs, not after."""
    from .bake.png import encode_png

    probe = encode_png(np.zeros((1, 1, 3), dtype=np.uint8))
    try:
        sign_png(probe, manifest({"version": "", "origin": PROJECTED}, "probe.png"), credentials)
    except TextureError as error:
        raise SettingError(
            "c2pa_cert", cert_path, "a certificate C2PA signs with",
            f"{{name}} '{cert_path}' cannot sign: {_first_line(error.__cause__ or error)}.",
        ) from None  # fmt: skip
