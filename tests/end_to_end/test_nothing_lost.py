"""Nothing lost: backups keep their pixels, one run at a time rewrites a file, a full disk is
one line that leaves the old files and no temporary ones, and ``//`` never means "wherever
Blender was started".

The full disk is a real one: a small tmpfs mounted for the test and filled (root with the
right to mount, as in this project's CI); where mounting is not allowed those tests skip, and
the error path is still checked with the kernel's own ENOSPC from ``/dev/full``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import bpy
import numpy as np
import pytest
from support.fingerprints import folder_fingerprint
from support.scenes import save_box
from test_batch_outputs import everything, model, refused
from test_safe_files import SIZE, assert_refused, run_cli, sha256, write_picture

from sd_depth_texture.batch import outputs as batch_outputs
from sd_depth_texture.batch import records, report, worker
from sd_depth_texture.blender import files, sample
from sd_depth_texture.blender.targets import texture_name
from sd_depth_texture.cli import main as cli
from sd_depth_texture.core.errors import TextureError


@pytest.fixture
def source(tmp_path, addon) -> Path:
    from support.scenes import save_sample

    return save_sample(tmp_path / "scene" / "scene.blend")


def texture_file_of(blend: Path, obj: str = "Cube") -> Path:
    """The texture file the .blend at ``blend`` references for ``obj`` (opens it)."""
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    image = bpy.data.images[texture_name(obj)]
    return Path(bpy.path.abspath(image.filepath))


# --- 1. A backup keeps the textures it references -------------------------------------------


def test_in_place_twice_every_backup_keeps_the_pixels_it_references(source, tmp_path, capsys):
    grey = write_picture(tmp_path / "grey.png", (0.5, 0.5, 0.5))
    white = write_picture(tmp_path / "white.png", (1.0, 1.0, 1.0))
    run = ["project", source, "--object", "Cube", *SIZE, "--in-place", "--image"]

    assert run_cli([*run, grey], capsys)[0] == 0
    first = texture_file_of(source)
    first_pixels = sha256(first)
    assert run_cli([*run, white], capsys)[0] == 0

    second_backup = source.with_name("scene.backup-2.blend")  # the file as the first run left it
    assert texture_file_of(second_backup) == first
    assert sha256(first) == first_pixels  # the first run's pixels are still there
    latest = texture_file_of(source)
    assert latest != first and sha256(latest) != first_pixels


# --- 2. One run at a time rewrites a file in place ------------------------------------------


def test_an_in_place_run_is_refused_while_another_holds_the_file(source, tmp_path, capsys):
    picture = write_picture(tmp_path / "grey.png", (0.5, 0.5, 0.5))
    with batch_outputs.SourceLock(str(source)) as lock:  # as a running `texture --in-place`
        before, original = folder_fingerprint(tmp_path), sha256(source)
        code, messages, _ = run_cli(
            ["project", source, "--image", picture, *SIZE, "--in-place"], capsys
        )
        assert_refused(code, messages, f"Another run is writing into '{source}'")
        holder = f"{socket.gethostname()} pid {os.getpid()} since "
        assert holder in messages[-1] and lock.path in messages[-1]
        assert sha256(source) == original
        assert folder_fingerprint(tmp_path) == before  # no backup, no texture
    assert not Path(lock.path).exists()

    # Free again: the run goes through and leaves no lock behind.
    assert run_cli(["project", source, "--image", picture, *SIZE, "--in-place"], capsys)[0] == 0
    assert not list(source.parent.glob(".*lock"))


def test_the_lock_is_the_files_whatever_name_the_run_is_given(source, tmp_path, capsys):
    link = tmp_path / "link.blend"
    link.symlink_to(source)
    picture = write_picture(tmp_path / "grey.png", (0.5, 0.5, 0.5))
    with batch_outputs.SourceLock(str(source)):
        original = sha256(source)
        code, messages, _ = run_cli(
            ["project", link, "--image", picture, *SIZE, "--in-place"], capsys
        )
        assert_refused(code, messages, f"Another run is writing into '{source}'")
        assert sha256(source) == original


def test_a_batch_in_place_is_refused_while_another_rewrites_a_source(
    source, tiny_model_dir, tmp_path, capsys
):
    """Two ``batch --in-place`` runs with different ``--out``: each --out lock is free, the
    source's is not."""
    with batch_outputs.SourceLock(str(source)):
        before = everything(source.parent, tmp_path)
        err = refused(
            capsys, str(source), "--out", str(tmp_path / "second"), "--in-place",
            *model(tiny_model_dir),
        )  # fmt: skip
        assert f"Another run is writing into '{source}'" in err
        assert f"pid {os.getpid()}" in err
        assert everything(source.parent, tmp_path) == before


# --- 3, 5. A full disk ----------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path) -> Iterator[tuple[Path, Callable[[], None]]]:
    """A 4 MiB tmpfs mounted at ``tmp_path/disk`` and a function that fills it up."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {mounted.stderr.decode().strip()}")

    def fill() -> None:
        filler = disk / f"filler-{uuid.uuid4().hex}"
        with open(filler, "wb", buffering=0) as stream, contextlib.suppress(OSError):
            while True:
                stream.write(b"\xff" * 4096)

    try:
        yield disk, fill
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def listing(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_depth_over_an_existing_map_on_a_full_disk_keeps_the_map(source, small_disk, capsys):
    disk, fill = small_disk
    depth = disk / "depth.png"
    assert run_cli(["depth", source, "--output", depth], capsys)[0] == 0
    old = sha256(depth)
    fill()
    before = listing(disk)

    code, messages, _ = run_cli(["depth", source, "--output", depth], capsys)

    assert_refused(code, messages, f"Cannot write '{depth}': the disk is full.")
    assert sha256(depth) == old
    assert listing(disk) == before  # no .partial left


def test_a_texture_run_on_a_full_disk_writes_nothing_and_leaves_nothing(
    source, small_disk, tmp_path, capsys
):
    disk, fill = small_disk
    picture = write_picture(tmp_path / "grey.png", (0.5, 0.5, 0.5))
    fill()
    before = listing(disk)
    arguments = ["project", source, "--image", picture, "--object", "Cube", *SIZE]
    arguments += ["--output", disk / "out.blend", "--report", disk / "report.json"]

    code, messages, _ = run_cli(arguments, capsys)

    assert_refused(code, messages, "the disk is full")
    assert listing(disk) == before


def test_the_batch_files_on_a_full_disk_are_one_line_and_keep_the_old_ones(small_disk):
    disk, fill = small_disk
    sheet, manifest = disk / "contact_sheet.html", records.Manifest(str(disk / "manifest.jsonl"))
    summary = report.summarize([], {}, [], 0.0)
    report.write_contact_sheet(str(sheet), [], {}, summary)
    manifest.append({"key": "a.blend::A", "status": "done"})
    old_sheet, old_manifest = sha256(sheet), sha256(Path(manifest.path))
    fill()
    before = listing(disk)

    with pytest.raises(TextureError, match=f"'{sheet}': the disk is full"):
        report.write_contact_sheet(str(sheet), [], {}, summary)
    with pytest.raises(TextureError, match="the disk is full"):
        manifest.append({"key": "a.blend::B", "status": "done", "notes": ["x" * 65536]})
    with pytest.raises(OSError, match="No space left"):
        worker.save_png(np.random.default_rng(0).random((512, 512, 3)), str(disk / "p.png"))

    assert sha256(sheet) == old_sheet and sha256(Path(manifest.path)) == old_manifest
    assert listing(disk) == before


def test_saving_the_blend_and_taking_a_lock_on_a_full_disk_are_one_line(small_disk, addon):
    disk, fill = small_disk
    sample.build_sample_scene()
    fill()
    before = listing(disk)

    with pytest.raises(TextureError, match=f"^Cannot write '{disk}/out.blend': the disk is full"):
        files.save_blend_copy(str(disk / "out.blend"))
    with pytest.raises(TextureError, match="the disk is full"):
        batch_outputs.OutLock(str(disk)).acquire()

    assert listing(disk) == before  # no partial .blend, no .blend1, no empty lock


def test_a_batch_on_a_full_disk_leaves_no_partial_or_staging_file(
    small_disk, tiny_model_dir, tmp_path, addon
):
    """Room for the lock and the manifest, none for a texture: the asset fails on the full disk
    and nothing half-written is left in ``--out``."""
    disk, fill = small_disk
    library = tmp_path / "library"
    save_box(library / "box.blend")
    spare = disk / "spare"
    spare.write_bytes(bytes(32 << 10))
    fill()
    spare.unlink()  # 32 KiB free
    out = disk / "out"

    code = cli.main(["batch", str(library), "--out", str(out), "--contact-sheet", "none",
                     *model(tiny_model_dir), "--texture-size", "512"])  # fmt: skip

    assert code == 1
    record = records.Manifest(str(out / records.MANIFEST_NAME)).read()["box.blend::Box"]
    assert record["status"] == records.FAILED and "the disk is full" in record["error"]
    leftovers = [p for p in out.rglob("*") if p.name == ".staging" or ".partial" in p.name]
    assert leftovers == []


def test_a_full_disk_is_named_and_the_old_file_kept_without_a_mount(tmp_path):
    """The kernel's ENOSPC (``/dev/full``) in the middle of a write: one line naming the file
    and saying the disk is full; the old file as it was, no temporary file left."""
    old = tmp_path / "depth.png"
    old.write_bytes(b"the old map")

    def write_until_full(partial: str) -> None:
        Path(partial).write_bytes(b"half a new map")
        with open("/dev/full", "wb", buffering=0) as full:
            full.write(b"the rest")

    with pytest.raises(TextureError, match=f"^Cannot write '{old}': the disk is full.$"):
        files.write_whole(str(old), write_until_full)
    assert old.read_bytes() == b"the old map"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["depth.png"]


def test_a_preview_that_fails_leaves_no_staging_behind(tiny_model_dir, tmp_path, monkeypatch):
    """An asset whose preview does not fit in memory fails alone, and neither its staged
    texture nor the staging folders outlive the batch."""
    library = tmp_path / "library"
    save_box(library / "box.blend")

    def too_large(*_args, **_kwargs):
        raise MemoryError

    monkeypatch.setattr(worker, "render_preview", too_large)
    out = tmp_path / "out"
    argv = ["batch", str(library), "--out", str(out), *model(tiny_model_dir)]
    assert cli.main(argv) == 1
    manifest = records.Manifest(str(out / records.MANIFEST_NAME)).read()
    assert manifest["box.blend::Box"]["error"] == "out of memory"
    leftovers = [p for p in out.rglob("*") if p.name in {".staging"} or ".partial" in p.name]
    assert leftovers == []


# --- 6. ``//`` in a file never saved --------------------------------------------------------


@pytest.fixture
def unsaved(addon, tmp_path, monkeypatch) -> Path:
    """The sample scene in a file never saved, Blender started in ``tmp_path/cwd``."""
    bpy.ops.wm.read_homefile(use_empty=True)
    sample.build_sample_scene()
    assert not bpy.data.filepath
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def test_capture_depth_refuses_a_relative_path_in_an_unsaved_file(unsaved):
    with pytest.raises(RuntimeError, match=r"relative to the \.blend file .* not saved yet"):
        bpy.ops.sd_depth_texture.capture_depth(filepath="//depth.png", resolution=128)
    assert list(unsaved.iterdir()) == []
    assert "SD Depth" not in bpy.data.images


def test_a_report_relative_to_an_unsaved_file_is_refused(unsaved, tiny_model_dir):
    with pytest.raises(RuntimeError, match=r"The report '//report\.json' is relative"):
        bpy.ops.sd_depth_texture.generate(
            prompt="x", model=str(tiny_model_dir), steps=1, texture_size=64, resolution=128,
            report_path="//report.json",
        )  # fmt: skip
    assert list(unsaved.iterdir()) == []


# --- 7. The depth map's name says PNG -------------------------------------------------------


@pytest.mark.parametrize("name", ["d.jpg", "d.exr", "d"])
def test_depth_refuses_a_name_that_is_not_png(name, source, tmp_path, capsys):
    before = folder_fingerprint(tmp_path)
    code, messages, _ = run_cli(["depth", source, "--output", tmp_path / name, "--force"], capsys)
    assert_refused(code, messages, "is not a .png file name")
    assert folder_fingerprint(tmp_path) == before and not (tmp_path / name).exists()
