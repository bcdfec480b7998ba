"""``batch`` never writes over sources or over files no batch wrote, and says why in one line.

Every refusal runs through ``cli.main`` on real .blend files, and each test checks that every
source file (and the user's file in the way) still has its sha256, and that nothing was added.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import bpy
import pytest
from support.fingerprints import folder_fingerprint
from test_batch import FAST, _add, _mark, _save

from sd_depth_texture.batch import outputs, records, worker
from sd_depth_texture.cli import main as cli

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def library(tmp_path_factory, addon) -> Path:
    """``a.blend`` (a crate whose description is HTML) and ``sub/a.blend`` (a vase): two files
    with one name, one folder apart."""
    root = tmp_path_factory.mktemp("outputs") / "library"
    bpy.ops.wm.read_homefile(use_empty=True)
    _mark(_add("cube", "Crate", size=0.8, calc_uvs=True), f"a crate {HOSTILE}", ("wood",))
    _save(root / "a.blend")
    bpy.ops.wm.read_homefile(use_empty=True)
    _mark(_add("uv_sphere", "Vase", radius=0.5, segments=12, ring_count=6, calc_uvs=True))
    _save(root / "sub" / "a.blend")
    return root


def everything(*folders: Path) -> dict[str, str]:
    """Every path below the folders (files with their sha256, folders as such)."""
    found = {}
    for folder in folders:
        if not folder.exists():
            continue
        found.update(
            {f"{folder}/{name}": digest for name, digest in folder_fingerprint(folder).items()}
        )
        found.update({str(p): "folder" for p in folder.rglob("*") if p.is_dir()})
    return found


def run(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(["batch", *argv])
    return code, capsys.readouterr().err.strip()


def refused(capsys, *argv: str) -> str:
    """Run a batch that must be refused: exit 1 and one ``error:`` line, returned."""
    code, err = run(capsys, *argv)
    assert code == 1 and err.startswith("error: ") and "\n" not in err, err
    return err


def model(tiny_model_dir: Path) -> list[str]:
    return ["--model", str(tiny_model_dir), "--prompt-template", "{name}, {description}", *FAST]


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


def test_an_out_among_the_sources_is_refused(library, tiny_model_dir, tmp_path, capsys):
    before = everything(library, tmp_path)
    # LIB/a.blend's output would be written onto the source LIB/sub/a.blend.
    err = refused(capsys, str(library), "--out", str(library / "sub"), *model(tiny_model_dir))
    assert "--out would overwrite the source folder" in err and str(library) in err
    # An --out holding a source folder mirrors it onto itself.
    err = refused(capsys, str(library / "sub"), "--out", str(library), *model(tiny_model_dir))
    assert "--out would overwrite the source folder" in err
    # A file given alone with its own folder as --out would be written over itself...
    argv = [str(library / "sub" / "a.blend"), "--out", str(library / "sub")]
    err = refused(capsys, *argv, *model(tiny_model_dir))
    assert f"--out would overwrite the source '{(library / 'sub' / 'a.blend').resolve()}'" in err
    # ... and with its parent as --out, over LIB/a.blend, which no batch wrote.
    argv = [str(library / "sub" / "a.blend"), "--out", str(library)]
    err = refused(capsys, *argv, *model(tiny_model_dir))
    assert f"'{library.resolve() / 'a.blend'}' exists and was not written by a batch" in err
    assert everything(library, tmp_path) == before


def test_a_manifest_that_is_someone_elses_file_is_refused(
    library, tiny_model_dir, tmp_path, capsys
):
    notes = tmp_path / "notes.txt"
    notes.write_text("Monday: texture the chairs\nTuesday: the tables\n", encoding="utf-8")
    before = everything(library, tmp_path)
    out = tmp_path / "out"
    argv = [str(library / "a.blend"), "--out", str(out), "--manifest", str(notes)]
    err = refused(capsys, *argv, *model(tiny_model_dir))
    assert f"'{notes}' is not a batch manifest (line 1" in err
    err = refused(capsys, str(library / "sub"), "--out", str(out), "--manifest",
                  str(library / "sub" / "manifest.jsonl"), *model(tiny_model_dir))  # fmt: skip
    assert "lies inside the source folder" in err
    assert everything(library, tmp_path) == before


# --------------------------------------------------------------------------------------------
# Files in --out that no batch wrote
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "in_the_way",
    [
        "a.blend",  # an unrelated .blend (a copy of the source: no in-file batch record)
        "previews/a/Crate.png",
        records.MANIFEST_NAME,
        "contact_sheet.html",
    ],
)
def test_a_file_no_batch_wrote_is_never_overwritten(
    in_the_way, library, tiny_model_dir, tmp_path, capsys
):
    out = tmp_path / "out"
    path = out / in_the_way
    path.parent.mkdir(parents=True)
    if in_the_way.endswith(".blend"):
        shutil.copy(library / "a.blend", path)
    else:
        path.write_bytes(b"a file of the user's own\n")
    before = everything(library, tmp_path)
    err = refused(capsys, str(library / "a.blend"), "--out", str(out), *model(tiny_model_dir))
    assert f"'{path}'" in err and "was left as it is" in err
    assert everything(library, tmp_path) == before  # not even the lock is left behind


def test_a_texture_file_no_batch_wrote_is_left_alone_and_the_asset_takes_another_name(
    library, tiny_model_dir, tmp_path, capsys
):
    """Texture files are named by the flow's one rule, as for every door: a file there that
    the output does not own is never written over; the texture takes the next free name."""
    out = tmp_path / "out"
    theirs = out / "textures" / "a" / "Crate_SD_Texture.png"
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(b"a file of the user's own\n")
    code, _ = run(capsys, str(library / "a.blend"), "--out", str(out), *model(tiny_model_dir))
    assert code == 0
    assert theirs.read_bytes() == b"a file of the user's own\n"
    record = records.Manifest(str(out / records.MANIFEST_NAME)).read()["a.blend::Crate"]
    texture = record["textures"]["Crate"]
    assert os.path.dirname(texture) == str(theirs.parent) and texture != str(theirs)
    assert os.path.isfile(texture)
    assert any("was left alone" in note for note in record["notes"])


def test_a_rerun_over_its_own_files_is_not_refused(library, tiny_model_dir, tmp_path, capsys):
    """The refusals above are about other people's files: a batch's own are known to it, and a
    deleted output is redone over the textures and previews the manifest names."""
    out = tmp_path / "out"
    argv = [str(library / "a.blend"), "--out", str(out), *model(tiny_model_dir)]
    assert run(capsys, *argv)[0] == 0
    (out / "a.blend").unlink()
    code, err = run(capsys, *argv)
    assert code == 0, err
    assert [r["status"] for r in records.Manifest(str(out / records.MANIFEST_NAME)).records()] == [
        "done", "done"
    ]  # fmt: skip
    assert not (out / outputs.LOCK_NAME).exists()
    # The texture files are named the way Blender cleans image names.
    for name in ("Crate", "a b.c/d:é", "x\u00ff\u0100"):
        assert outputs.file_safe_name(name) == bpy.path.clean_name(name)


# --------------------------------------------------------------------------------------------
# One batch at a time
# --------------------------------------------------------------------------------------------


def test_a_second_batch_on_the_same_out_is_refused(library, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [str(library / "a.blend"), "--out", str(out), *model(tiny_model_dir)]
    out.mkdir()
    with outputs.OutLock(str(out)):  # held by this process, as a running batch holds it
        before = everything(library, tmp_path)
        err = refused(capsys, *argv)
        assert (
            f"Another batch is writing to '{out}': {socket.gethostname()} pid {os.getpid()}" in err
        )
        assert everything(library, tmp_path) == before

    # A batch that was killed left its lock; its process is gone, so the next one takes over.
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()
    lock = out / outputs.LOCK_NAME
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": killed.pid, "started": "x"}))
    sources_before = folder_fingerprint(library)
    code, err = run(capsys, *argv)
    assert code == 0, err
    assert not lock.exists()
    assert folder_fingerprint(library) == sources_before
    assert records.Manifest(str(out / records.MANIFEST_NAME)).read()["a.blend::Crate"]["status"]


# --------------------------------------------------------------------------------------------
# An --out that cannot be written
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def unwritable(folder: Path):
    """Make ``folder`` unwritable for this process: permission bits for a user, the immutable
    attribute for root (whom permission bits do not stop); skip where neither works."""
    folder.mkdir(parents=True, exist_ok=True)
    immutable = os.geteuid() == 0
    if immutable:
        result = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
        if result.returncode != 0:
            pytest.skip("running as root without chattr: a read-only folder cannot be made")
    else:
        folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("this file system lets the folder be written anyway")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        else:
            folder.chmod(0o755)


def test_an_out_that_is_a_file_or_read_only_is_one_line(library, tiny_model_dir, tmp_path, capsys):
    a_file = tmp_path / "renders.txt"
    a_file.write_text("not a folder")
    source = str(library / "a.blend")
    before = everything(library, tmp_path)
    err = refused(capsys, source, "--out", str(a_file), *model(tiny_model_dir))
    assert err == f"error: --out '{a_file}' is a file, not a folder."
    err = refused(capsys, source, "--out", str(a_file / "out"), *model(tiny_model_dir))
    assert f"'{a_file}' is a file, not a folder" in err
    assert everything(library, tmp_path) == before

    read_only = tmp_path / "read_only"
    with unwritable(read_only):
        err = refused(capsys, source, "--out", str(read_only), *model(tiny_model_dir))
        assert f"--out '{read_only}' is not writable" in err
        err = refused(capsys, source, "--out", str(read_only / "new"), *model(tiny_model_dir))
        assert f"'{read_only}' is read-only" in err
    assert list(read_only.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Problems that stop no asset
# --------------------------------------------------------------------------------------------


def test_an_unreadable_catalog_costs_only_the_catalog(library, tiny_model_dir, tmp_path, capsys):
    shelf = tmp_path / "shelf"
    shutil.copytree(library, shelf)
    (shelf / "blender_assets.cats.txt").write_bytes(b"VERSION 1\n\xff\xfe\x00\x00binary")
    before = folder_fingerprint(shelf)
    out = tmp_path / "out"
    argv = [str(shelf), "--out", str(out), "--prompt-template", "{name} from {catalog}"]
    code, err = run(capsys, *argv, "--model", str(tiny_model_dir), *FAST)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "blender_assets.cats.txt' are not UTF-8 text" in warnings[0]
    last = records.Manifest(str(out / records.MANIFEST_NAME)).read()
    assert sorted(last) == ["a.blend::Crate", "sub/a.blend::Vase"]
    for record in last.values():
        assert record["status"] == "done"
        assert any("are not UTF-8 text" in note for note in record["notes"])
    assert last["a.blend::Crate"]["prompt"] == "Crate from"
    assert folder_fingerprint(shelf) == before


def test_a_linked_file_is_textured_under_the_links_name(library, tiny_model_dir, tmp_path, capsys):
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    (shelf / "crate_link.blend").symlink_to(library / "a.blend")
    before = folder_fingerprint(library)
    out = tmp_path / "out"
    code, err = run(capsys, str(shelf), "--out", str(out), *model(tiny_model_dir),
                    "--contact-sheet", "md")  # fmt: skip
    assert code == 0, err
    last = records.Manifest(str(out / records.MANIFEST_NAME)).read()
    assert list(last) == ["crate_link.blend::Crate"]
    assert (out / "crate_link.blend").is_file() and not (out / "a.blend").exists()
    assert (out / "textures" / "crate_link" / "Crate_SD_Texture.png").is_file()
    assert (shelf / "crate_link.blend").is_symlink()
    assert folder_fingerprint(library) == before
    # The asset's description is HTML; the Markdown sheet shows it as text.
    sheet = (out / "contact_sheet.md").read_text(encoding="utf-8")
    assert HOSTILE not in sheet and "Crate, a crate &lt;img src=x onerror=alert(1)&gt;" in sheet


def test_a_bad_prompts_file_is_one_line_before_any_work(library, tmp_path, capsys):
    table = tmp_path / "prompts.toml"
    table.write_text('[Crate]\nprompt = "a crate"\nseed = 1.5\n', encoding="utf-8")
    out = tmp_path / "out"
    err = refused(capsys, str(library / "a.blend"), "--out", str(out), "--prompts", str(table))
    assert "the seed of 'Crate' must be an integer from 0 to 2147483647, got 1.5" in err
    assert not out.exists()


def test_ctrl_c_is_one_line_exit_130_and_frees_the_lock(
    library, tiny_model_dir, tmp_path, capsys, monkeypatch
):
    def interrupted(self, task, job):
        raise KeyboardInterrupt

    monkeypatch.setattr(worker.FileWorker, "texture", interrupted)
    before = folder_fingerprint(library)
    out = tmp_path / "out"
    code, err = run(capsys, str(library / "a.blend"), "--out", str(out), *model(tiny_model_dir))
    assert code == 130
    assert err.splitlines()[-1] == "error: interrupted; run the same command again to resume."
    assert not (out / outputs.LOCK_NAME).exists()
    assert folder_fingerprint(library) == before
