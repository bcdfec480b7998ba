"""Every texture says what made it, through every door, in real files read back: the signed C2PA
manifest (c2pa.Reader), the PNG text chunks (Pillow), the image's properties after saving,
reloading, packing and appending; projections make no AI claim; minimal drops the prompts; a
studio's certificate signs when given; no key material in any output or log."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import bpy
import c2pa
import numpy as np
import pytest
from PIL import Image
from support.fingerprints import folder_fingerprint
from test_one_flow import picture_file

from sd_depth_texture.blender import images, provenance
from sd_depth_texture.cli import main as cli
from sd_depth_texture.core import certificates
from sd_depth_texture.core import provenance as marking
from sd_depth_texture.core.record import GENERATED, PROJECTED

FAST = ["--steps", "2", "--resolution", "64", "--texture-size", "64"]
SECRET = "confidential walnut recipe"


def manifest_of(path: str | Path) -> tuple[dict, list[str]]:
    """The active manifest of a signed file and its validation codes."""
    with c2pa.Reader(str(path)) as reader:
        store = json.loads(reader.json())
    codes = [status["code"] for status in store.get("validation_status", [])]
    return store["manifests"][store["active_manifest"]], codes


def assertions(manifest: dict) -> dict:
    return {assertion["label"]: assertion["data"] for assertion in manifest["assertions"]}


def source_type(manifest: dict) -> str:
    (action,) = assertions(manifest)["c2pa.actions.v2"]["actions"]
    assert action["action"] == "c2pa.created"
    return action["digitalSourceType"]


def png_text(path: str | Path) -> dict:
    with Image.open(path) as image:
        return dict(image.text)


def texture_args(blend: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return ["texture", str(blend), "--prompt", SECRET, "--negative-prompt", "blurry oak",
            "--seed", "11", "--object", "Suzanne", "--model", str(model), "--output", str(out),
            "--report", str(out.with_suffix(".json")), *FAST, *extra]  # fmt: skip


def installation_key() -> bytes:
    folder = provenance.user_folder()
    return (Path(folder) / certificates.KEY_FILE).read_bytes()


def key_body(key_pem: bytes) -> bytes:
    return b"".join(key_pem.strip().splitlines()[1:-1])


def every_file(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def test_a_generated_texture_is_signed_and_says_what_made_it(
    sample_blend, tiny_model_dir, tmp_path, capsys, caplog
):
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out" / "textured.blend"
    assert cli.main(texture_args(sample_blend, tiny_model_dir, out)) == 0, capsys.readouterr()
    report = json.loads(out.with_suffix(".json").read_text())
    texture = report["objects"][0]["texture"]
    text = png_text(texture)
    record = json.loads(text[images.RECORD_KEY])
    assert record["origin"] == GENERATED and record["provenance"] == "full"
    assert record["views"][0]["prompt"].startswith(SECRET)
    # The A1111 parameters line image browsers show.
    prompt, negative, settings = text[marking.PARAMETERS_KEY].split("\n")
    assert prompt == SECRET and negative == "Negative prompt: blurry oak"
    assert "Seed: 11" in settings and f"Model: {tiny_model_dir}" in settings
    # The C2PA manifest: valid apart from the unknown signer, the AI marking, the record.
    manifest, codes = manifest_of(texture)
    assert codes == ["signingCredential.untrusted"]
    assert source_type(manifest) == marking.TRAINED
    assert assertions(manifest)[marking.RECORD_LABEL] == record
    assert manifest["title"] == os.path.basename(texture)
    assert report["c2pa"]["status"] == marking.SIGNED
    assert report["c2pa"]["certificate"] == certificates.INSTALLATION
    assert manifest["signature_info"]["cert_serial_number"] == report["c2pa"]["serial"]
    # The image datablock carries the same record through saving and reloading.
    bpy.ops.wm.open_mainfile(filepath=str(out))
    image = bpy.data.images["Suzanne SD Texture"]
    assert json.loads(image[images.RECORD_PROPERTY]) == record
    # No key material anywhere: outputs, report, printed text, log.
    body = key_body(installation_key())
    assert len(body) > 100
    for path in every_file(tmp_path):
        assert body not in path.read_bytes(), path
    printed = capsys.readouterr()
    for text_out in (printed.out, printed.err, caplog.text):
        assert body.decode() not in text_out


def test_minimal_drops_the_prompts_and_keeps_the_marking(
    sample_blend, tiny_model_dir, tmp_path, capsys
):
    out = tmp_path / "out" / "minimal.blend"
    args = texture_args(sample_blend, tiny_model_dir, out, "--provenance", "minimal")
    assert cli.main(args) == 0, capsys.readouterr()
    report = json.loads(out.with_suffix(".json").read_text())
    texture = report["objects"][0]["texture"]
    text = png_text(texture)
    manifest, codes = manifest_of(texture)
    assert codes == ["signingCredential.untrusted"]
    record = json.loads(text[images.RECORD_KEY])
    assert record["provenance"] == "minimal" and "prompt" not in record["views"][0]
    assert record["model"]["source"] == str(tiny_model_dir)
    assert source_type(manifest) == marking.TRAINED  # the marking stays
    assert text[marking.PARAMETERS_KEY].startswith("Steps: 2")
    bpy.ops.wm.open_mainfile(filepath=str(out))
    prop = bpy.data.images["Suzanne SD Texture"][images.RECORD_PROPERTY]
    # Not in the record, the parameters, the manifest, the image property, the report, nor any
    # file's bytes (the .blend included).
    for where in (json.dumps(text), json.dumps(manifest), prop, json.dumps(report)):
        assert SECRET not in where and "blurry oak" not in where
    for path in every_file(out.parent):
        assert SECRET.encode() not in path.read_bytes(), path


def test_a_bad_provenance_or_certificate_is_one_line_before_anything(
    sample_blend, tiny_model_dir, tmp_path, capsys
):
    cert, key = (tmp_path / "studio" / "chain.pem"), (tmp_path / "studio" / "key.pem")
    cert.parent.mkdir()
    chain, key_pem = certificates.make_chain("Studio")
    cert.write_bytes(chain)
    key.write_bytes(key_pem)
    _, other = certificates.make_chain("Other")
    (tmp_path / "studio" / "other.pem").write_bytes(other)
    cases = [
        (["--provenance", "none"], "error: --provenance must be one of full, minimal, got 'none'"),
        (["--c2pa-cert", str(cert)], "error: A certificate was given without its key: set "
         "--c2pa-key."),
        (["--c2pa-cert", str(tmp_path / "no.pem"), "--c2pa-key", str(key)],
         f"error: --c2pa-cert '{tmp_path / 'no.pem'}' cannot be read: No such file or "
         "directory."),
        (["--c2pa-cert", str(cert), "--c2pa-key", str(tmp_path / "studio" / "other.pem")],
         f"error: --c2pa-key '{tmp_path / 'studio' / 'other.pem'}' is not the key of the "
         f"certificate '{cert}'."),
    ]  # fmt: skip
    before = folder_fingerprint(tmp_path)
    for extra, message in cases:
        out = tmp_path / "out" / "x.blend"
        assert cli.main(texture_args(sample_blend, tiny_model_dir, out, *extra)) == 1
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert err == [message]
        assert folder_fingerprint(tmp_path) == before
    assert key_body(key_pem).decode() not in capsys.readouterr().err


def test_a_studio_certificate_signs_when_given(sample_blend, tiny_model_dir, tmp_path, capsys):
    folder = tmp_path / "studio"
    folder.mkdir()
    chain, key_pem = certificates.make_chain("Walnut Studio")
    (folder / "chain.pem").write_bytes(chain)
    (folder / "key.pem").write_bytes(key_pem)
    out = tmp_path / "out" / "studio.blend"
    studio_files = ["--c2pa-cert", str(folder / "chain.pem"), "--c2pa-key", str(folder / "key.pem")]
    args = texture_args(sample_blend, tiny_model_dir, out, *studio_files)
    assert cli.main(args) == 0, capsys.readouterr()
    report = json.loads(out.with_suffix(".json").read_text())
    manifest, codes = manifest_of(report["objects"][0]["texture"])
    assert codes == ["signingCredential.untrusted"]
    assert manifest["signature_info"]["common_name"] == "Walnut Studio"
    studio = certificates.studio_credentials(str(folder / "chain.pem"), str(folder / "key.pem"))
    assert manifest["signature_info"]["cert_serial_number"] == studio.serial
    assert report["c2pa"] == {"status": marking.SIGNED, **studio.describe()}
    for path in every_file(out.parent):
        assert key_body(key_pem) not in path.read_bytes(), path


def test_a_projection_makes_no_ai_claim_and_names_its_images(sample_blend, tmp_path, capsys):
    picture = picture_file(tmp_path / "photo.png", (0.2, 0.5, 0.7))
    out = tmp_path / "out" / "projected.blend"
    argv = ["project", str(sample_blend), "--image", str(picture), "--object", "Suzanne",
            "--output", str(out), "--resolution", "64", "--texture-size", "64"]  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr()
    texture = next((out.parent / "textures").rglob("*.png"))
    text = png_text(texture)
    assert marking.PARAMETERS_KEY not in text  # no generation parameters to show
    record = json.loads(text[images.RECORD_KEY])
    manifest, codes = manifest_of(texture)
    assert codes == ["signingCredential.untrusted"]
    assert source_type(manifest) == marking.DIGITAL_CREATION
    assert source_type(manifest) not in marking.AI_SOURCE_TYPES
    assert "trainedAlgorithmic" not in json.dumps(manifest)
    (view,) = assertions(manifest)[marking.RECORD_LABEL]["views"]
    assert record["origin"] == PROJECTED and record["model"] is None
    assert view["image"]["name"] == "photo.png" and len(view["image"]["sha256"]) == 64


def test_the_same_seed_gives_the_same_texture_apart_from_time_and_signature(
    sample_blend, tiny_model_dir, tmp_path, capsys
):
    textures, records = [], []
    for name in ("a", "b"):
        out = tmp_path / name / "t.blend"
        assert cli.main(texture_args(sample_blend, tiny_model_dir, out)) == 0, capsys.readouterr()
        path = json.loads(out.with_suffix(".json").read_text())["objects"][0]["texture"]
        with Image.open(path) as image:
            textures.append(np.asarray(image.convert("RGB")))
        manifest, _ = manifest_of(path)
        record = assertions(manifest)[marking.RECORD_LABEL]
        assert json.loads(png_text(path)[images.RECORD_KEY]) == record
        record.pop("created")
        record["model"].pop("loaded")  # the second run finds the model already loaded
        records.append(record)
    assert np.array_equal(textures[0], textures[1])
    assert records[0] == records[1]


def test_packed_textures_carry_the_record_through_save_reload_and_append(
    sample_scene, tiny_model_dir, tmp_path
):
    """An unsaved file's texture is packed and signed; its image keeps the record as a property
    through saving, reloading and appending into another file. A second one-view run paints over
    the first texture: a composite, and the record says over what."""
    for _ in range(2):
        result = bpy.ops.sd_depth_texture.generate(
            prompt="moss", steps=1, resolution=64, texture_size=64, model=str(tiny_model_dir)
        )
        assert result == {"FINISHED"}
    image = bpy.data.images["Suzanne SD Texture"]
    packed = tmp_path / "packed.png"
    packed.write_bytes(bytes(image.packed_file.data))
    manifest, codes = manifest_of(packed)
    assert codes == ["signingCredential.untrusted"]
    assert source_type(manifest) == marking.COMPOSITE
    record = json.loads(image[images.RECORD_PROPERTY])
    assert record["painted_over"] == [{"target": "Suzanne", "origin": GENERATED}]
    assert assertions(manifest)[marking.RECORD_LABEL] == record
    blend = tmp_path / "packed.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.read_homefile(use_empty=True)
    assert "Suzanne SD Texture" not in bpy.data.images
    with bpy.data.libraries.load(str(blend), link=False) as (_source, target):
        target.images = ["Suzanne SD Texture"]
    appended = bpy.data.images["Suzanne SD Texture"]
    assert json.loads(appended[images.RECORD_PROPERTY]) == record
    assert appended.packed_file is not None
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    assert json.loads(bpy.data.images["Suzanne SD Texture"][images.RECORD_PROPERTY]) == record


def test_the_operator_takes_a_provenance_level_and_refuses_an_unknown_one(
    sample_scene, tiny_model_dir
):
    common = {"prompt": "moss", "steps": 1, "resolution": 64, "texture_size": 64}
    common["model"] = str(tiny_model_dir)
    # The panel's wording of the one rule (a script sees the operator's error as RuntimeError).
    with pytest.raises(RuntimeError, match="'Provenance' must be one of full, minimal, got 'none'"):
        bpy.ops.sd_depth_texture.generate(provenance="none", **common)
    assert "Suzanne SD Texture" not in bpy.data.images  # refused before anything changed
    assert bpy.ops.sd_depth_texture.generate(provenance="minimal", **common) == {"FINISHED"}
    image = bpy.data.images["Suzanne SD Texture"]
    record = json.loads(image[images.RECORD_PROPERTY])
    assert record["provenance"] == "minimal" and "prompt" not in record["views"][0]
    assert b"moss" not in bytes(image.packed_file.data)  # nor in the packed PNG's manifest
