"""What a texture says about what made it, without Blender: the marking chosen from the record,
the minimal record, the parameters line, the certificates, and a real C2PA signature read back
with the real c2pa library."""

from __future__ import annotations

import datetime
import io
import json
import os
import stat
from pathlib import Path

import c2pa
import numpy as np
import pytest
from PIL import Image

from sd_depth_texture.core import certificates, provenance
from sd_depth_texture.core.bake.png import encode_png
from sd_depth_texture.core.errors import SettingError, TextureError
from sd_depth_texture.core.record import BOTH, GENERATED, MINIMAL, PROJECTED, RunRecord, ViewRecord


def view(origin: str = GENERATED, prompt: str | None = "oak bark, front view") -> ViewRecord:
    generated = origin == GENERATED
    return ViewRecord(
        label="front", origin=origin, targets=["Suzanne"], width=64, height=48,
        camera={"world_to_view": [], "projection": [], "orthographic": False},
        prompt=prompt if generated else None, negative_prompt="blur" if generated else None,
        seed=7 if generated else None, steps=2 if generated else None,
        guidance=7.5 if generated else None, scheduler="dpmpp" if generated else None,
        image=None if generated else {"name": "photo.png", "sha256": "ab" * 32},
    )  # fmt: skip


def generated_record(provenance_level: str = "full") -> RunRecord:
    settings = {
        "generation": {"prompt": "oak bark", "negative_prompt": "blur", "steps": 2,
                       "guidance": 7.5, "seed": 7, "scheduler": "dpmpp"},
        "view_prompts": True,
    }  # fmt: skip
    record = RunRecord.begin("0.1.0", settings, provenance_level)
    record.model = None
    record.views.append(view())
    return record


def with_model(data: dict) -> dict:
    data["model"] = {"source": "some/model", "revision": "0123456789abcdef", "licence": "mit"}
    return data


@pytest.mark.parametrize(
    ("origin", "under", "expected"),
    [
        (GENERATED, [], provenance.TRAINED),
        (GENERATED, [{"target": "a", "origin": None}], provenance.COMPOSITE),
        (BOTH, [], provenance.COMPOSITE),
        (PROJECTED, [], provenance.DIGITAL_CREATION),
        (PROJECTED, [{"target": "a", "origin": None}], provenance.DIGITAL_CREATION),
        (PROJECTED, [{"target": "a", "origin": GENERATED}], provenance.COMPOSITE),
    ],
)
def test_the_digital_source_type_follows_the_record(origin, under, expected):
    assert provenance.source_type({"origin": origin, "painted_over": under}) == expected


def test_a_minimal_record_has_no_prompt_anywhere_and_keeps_the_rest():
    full = generated_record().to_dict()
    minimal = generated_record(MINIMAL).to_dict()
    assert "oak bark" in json.dumps(full) and "blur" in json.dumps(full)
    assert "oak bark" not in json.dumps(minimal) and "blur" not in json.dumps(minimal)
    assert minimal["provenance"] == MINIMAL and minimal["origin"] == GENERATED
    assert minimal["views"][0]["seed"] == 7 and minimal["settings"]["generation"]["steps"] == 2
    # The record object itself keeps them (the flow still sends them to the model).
    assert generated_record(MINIMAL).views[0].prompt == "oak bark, front view"


def test_the_parameters_line_is_a1111s_and_minimal_leaves_the_prompts_out():
    line = provenance.parameters_line(with_model(generated_record().to_dict()))
    prompt, negative, settings = line.split("\n")
    assert prompt == "oak bark" and negative == "Negative prompt: blur"
    assert settings.startswith("Steps: 2, Sampler: DPM++ 2M, CFG scale: 7.5, Seed: 7, ")
    assert "Size: 64x48" in settings and "Model hash: 0123456789, Model: some/model" in settings
    assert "Licence: mit" in settings and "Version: sd_depth_texture 0.1.0" in settings
    minimal = provenance.parameters_line(with_model(generated_record(MINIMAL).to_dict()))
    assert minimal.startswith("Steps: 2") and "oak" not in minimal and "\n" not in minimal
    projected = {"origin": PROJECTED, "settings": {}, "model": None, "views": []}
    assert provenance.parameters_line(projected) is None


def test_the_installation_certificate_is_made_once_readable_by_the_user_only(tmp_path):
    folder = tmp_path / "home" / "c2pa"
    first = certificates.installation_credentials(str(folder))
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    for name in (certificates.CHAIN_FILE, certificates.KEY_FILE):
        assert stat.S_IMODE(os.stat(folder / name).st_mode) == 0o600
    again = certificates.installation_credentials(str(folder))
    assert again.serial == first.serial and again.origin == certificates.INSTALLATION
    assert first.issuer.endswith(" CA") and first.algorithm == "ES256"
    # Nothing of the key in what a report may say, nor in the repr.
    body = key_body(first.key)
    assert body not in json.dumps(first.describe()) and body not in repr(first)


def key_body(key_pem: bytes) -> str:
    """The base64 body of a PEM key (what must never appear in an output)."""
    return "".join(key_pem.decode().strip().splitlines()[1:-1])


def write_pair(folder, name: str = "Studio Test") -> tuple[str, str]:
    chain, key = certificates.make_chain(name)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "chain.pem").write_bytes(chain)
    (folder / "key.pem").write_bytes(key)
    return str(folder / "chain.pem"), str(folder / "key.pem")


def test_a_studio_certificate_is_checked_in_one_line(tmp_path):
    cert, key = write_pair(tmp_path / "a")
    _, other_key = write_pair(tmp_path / "b")
    assert certificates.studio_credentials(None, None) is None
    studio = certificates.studio_credentials(cert, key)
    assert studio.origin == certificates.STUDIO and studio.subject == "Studio Test"
    cases = [
        ((cert, None), "c2pa_key", "A certificate was given without its key"),
        ((None, key), "c2pa_cert", "A key was given without its certificate"),
        ((str(tmp_path / "none.pem"), key), "c2pa_cert", "cannot be read: No such file"),
        ((key, key), "c2pa_cert", "holds no PEM certificate"),
        ((cert, cert), "c2pa_key", "holds no unencrypted PEM private key"),
        ((cert, other_key), "c2pa_key", "is not the key of the certificate"),
    ]
    for (cert_path, key_path), setting, message in cases:
        with pytest.raises(SettingError, match=message) as caught:
            certificates.studio_credentials(cert_path, key_path)
        assert caught.value.key == setting and "\n" not in str(caught.value)
        assert key_body(Path(key).read_bytes()) not in str(caught.value)


def test_a_self_signed_leaf_is_refused_before_anything_runs(tmp_path):
    """C2PA refuses a self-signed signer: the test signature says so, in one line."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    credentials = certificates.studio_credentials(str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))
    with pytest.raises(SettingError, match="cannot sign") as caught:
        provenance.check_signing(credentials, str(tmp_path / "c.pem"))
    assert caught.value.key == "c2pa_cert" and "\n" not in str(caught.value)


def test_a_signed_png_reads_back_valid_with_its_record_text_and_pixels(tmp_path):
    credentials = certificates.installation_credentials(str(tmp_path / "c2pa"))
    pixels = np.random.default_rng(1).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    record = with_model(generated_record().to_dict())
    text = {"sd_depth_texture:record": json.dumps(record), "parameters": "oak"}
    signed = provenance.sign_png(
        encode_png(pixels, text=text), provenance.manifest(record, "t.png"), credentials
    )
    path = tmp_path / "t.png"
    path.write_bytes(signed)
    with Image.open(io.BytesIO(signed)) as image:
        assert image.text == text
        assert np.array_equal(np.asarray(image.convert("RGB")), pixels)
    with c2pa.Reader(str(path)) as reader:
        store = json.loads(reader.json())
    # Valid apart from the signer no reader trusts yet.
    assert [s["code"] for s in store["validation_status"]] == ["signingCredential.untrusted"]
    active = store["manifests"][store["active_manifest"]]
    assertions = {a["label"]: a["data"] for a in active["assertions"]}
    (action,) = assertions["c2pa.actions.v2"]["actions"]
    assert action["action"] == "c2pa.created"
    assert action["digitalSourceType"] == provenance.TRAINED
    assert action["softwareAgent"]["name"] == "sd_depth_texture"
    assert assertions[provenance.RECORD_LABEL] == record
    assert active["signature_info"]["cert_serial_number"] == credentials.serial
    assert "thumbnail" not in active  # the texture is the picture


def test_a_certificate_folder_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    folder = tmp_path / "a_file" / "c2pa"
    with pytest.raises(TextureError, match="Cannot keep this installation's C2PA certificate"):
        certificates.installation_credentials(str(folder))


def test_a_request_built_by_hand_is_refused_an_unknown_provenance_level():
    from sd_depth_texture.request import OutputOptions, TextureRequest, ViewSource

    request = TextureRequest(
        views=ViewSource(cameras=("",)),
        pictures=(np.zeros((4, 4, 3), np.float32),),
        output=OutputOptions(provenance="none"),
    )
    with pytest.raises(SettingError, match="must be one of full, minimal") as caught:
        request.check()
    assert caught.value.key == "provenance"
