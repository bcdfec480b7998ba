"""Paths that are not files, and .blend files that are not what their header says.

A FIFO blocks whoever opens it, ``/dev/zero`` never ends, ``/dev/full`` and ``/dev/null``
swallow what is written: every path a run reads or writes is refused up front as what it is,
in one line, and never opened (another process lets a run blocked on a FIFO go, so a regression
fails instead of hanging). A .blend with a valid
header and gigabytes of zeros (a sparse file) is refused after reading its block headers only:
the bytes the process read (``rchar`` in ``/proc/self/io``) show Blender never read it.
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.fingerprints import folder_fingerprint
from support.scenes import save_box
from test_batch_outputs import everything, model, refused
from test_safe_files import SIZE, assert_refused, run_cli, write_picture

from sd_depth_texture.batch import outputs as batch_outputs
from sd_depth_texture.batch import records
from sd_depth_texture.blender import files
from sd_depth_texture.cli import main as cli
from sd_depth_texture.core.errors import TextureError

KINDS = {
    "fifo": "a named pipe (FIFO)",
    "/dev/zero": "a device",
    "/dev/full": "a device",
    "/dev/null": "a device",
    "dangling link": "which does not exist",
}


def make(path: Path, kind: str) -> Path:
    """Put something that is not a file at ``path``: a FIFO, a link to a device or to nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dangling link":
        path.symlink_to(path.parent / "missing.txt")
    else:
        path.symlink_to(kind)
    return path


_RELEASE = """
import os, sys, time
time.sleep(float(sys.argv[2]))
print("blocked", flush=True)
while True:
    reader = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
    try:
        os.close(os.open(sys.argv[1], os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass
    os.close(reader)
    time.sleep(0.2)
"""


@contextlib.contextmanager
def unblocked(path: Path, kind: str, seconds: float = 30.0) -> Iterator[list[str]]:
    """For a FIFO: whoever still blocks opening it after ``seconds`` is let go (another process
    opens and closes its other end, so a reader sees the end of the file) and the hang is
    recorded, so a run that opens it fails instead of waiting forever. A process of its own:
    Blender waits inside C with the GIL held, where no thread or signal handler of this one
    runs."""
    hung: list[str] = []
    if kind != "fifo":
        yield hung
        return
    release = subprocess.Popen(
        [sys.executable, "-c", _RELEASE, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    try:
        yield hung
    finally:
        release.kill()
        if "blocked" in release.communicate()[0]:
            hung.append(f"the run blocked opening '{path}'")


@pytest.fixture
def source(tmp_path, addon) -> Path:
    from support.scenes import save_sample

    return save_sample(tmp_path / "scene" / "scene.blend")


# --- 4. Paths that are not files ------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("option", ["--output", "--report", "depth --output"])
def test_a_command_line_path_that_is_not_a_file_is_refused_unopened(
    option, kind, source, tmp_path, capsys
):
    if option == "depth --output":
        target = make(tmp_path / "maps" / "depth.png", kind)
        arguments = ["depth", source, "--output", target]
    else:
        name = "out.blend" if option == "--output" else "report.json"
        target = make(tmp_path / "maps" / name, kind)
        picture = write_picture(tmp_path / "grey.png", (0.5, 0.5, 0.5))
        arguments = ["project", source, "--image", picture, *SIZE, option, target]
    before = folder_fingerprint(tmp_path)

    with unblocked(target, kind) as hung:
        code, messages, _ = run_cli(arguments, capsys)

    assert hung == []
    assert_refused(code, messages, KINDS[kind])
    assert str(target) in messages[-1] and "read-only" not in messages[-1]
    assert folder_fingerprint(tmp_path) == before
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("what", ["the .blend", "the image"])
def test_an_input_that_is_not_a_file_is_named_as_what_it_is(what, kind, source, tmp_path, capsys):
    if what == "the .blend":
        target = make(tmp_path / "in" / "scene.blend", kind)
        arguments = ["depth", target, "--output", tmp_path / "depth.png"]
    else:
        target = make(tmp_path / "in" / "picture.png", kind)
        arguments = ["project", source, "--image", target, *SIZE]
    before = folder_fingerprint(tmp_path)

    with unblocked(target, kind) as hung:
        code, messages, _ = run_cli(arguments, capsys)

    assert hung == []
    assert_refused(
        code,
        messages,
        f"{what} '{target}' is {KINDS[kind] if kind != 'dangling link' else 'a link'}",
    )
    assert folder_fingerprint(tmp_path) == before


@pytest.fixture
def library(tmp_path, addon) -> Path:
    return save_box(tmp_path / "library" / "box.blend", compress=False).parent


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("where", ["manifest", "contact sheet", "preview", "output", "lock"])
def test_a_batch_path_that_is_not_a_file_is_refused_before_any_work(
    where, kind, library, tiny_model_dir, tmp_path, capsys
):
    out = tmp_path / "out"
    paths = {
        "manifest": tmp_path / "elsewhere" / "manifest.jsonl",
        "contact sheet": out / "contact_sheet.html",
        "preview": out / "previews" / "box" / "Box.png",
        "output": out / "box.blend",
        "lock": out / batch_outputs.LOCK_NAME,
    }
    target = make(paths[where], kind)
    argv = [str(library), "--out", str(out), *model(tiny_model_dir)]
    if where == "manifest":
        argv += ["--manifest", str(target)]
    before = everything(library, tmp_path)

    with unblocked(target, kind) as hung:
        err = refused(capsys, *argv)

    assert hung == []
    assert KINDS[kind] in err and str(target) in err, err
    assert everything(library, tmp_path) == before


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_texture_name_taken_by_what_is_not_a_file_is_left_alone(
    kind, library, tiny_model_dir, tmp_path, capsys
):
    """Texture files are named by the flow's one rule, which never opens a planned name that
    something else holds: the asset's texture takes the next free name, the thing stays."""
    out = tmp_path / "out"
    target = make(out / "textures" / "box" / "Box_SD_Texture.png", kind)
    argv = ["batch", str(library), "--out", str(out), *model(tiny_model_dir)]
    with unblocked(target, kind) as hung:
        assert cli.main(argv) == 0, capsys.readouterr().err
    assert hung == []
    assert os.path.lexists(target) and not target.is_file()  # left as it was
    line = records.Manifest(str(out / records.MANIFEST_NAME)).read()["box.blend::Box"]
    texture = Path(line["textures"]["Box"])
    assert texture.parent == target.parent and texture != target and texture.is_file()


# --- 8. A .blend whose blocks are not blocks ------------------------------------------------


def read_bytes() -> int:
    """The bytes this process has read so far: through ``read`` (``rchar``) and through memory
    maps (each page faulted in; Blender maps the files it links from)."""
    io = Path("/proc/self/io").read_text()
    rchar = int(next(line for line in io.splitlines() if line.startswith("rchar:")).split()[1])
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return rchar + (usage.ru_minflt + usage.ru_majflt) * resource.getpagesize()


def zeros_after_a_header(path: Path, good: Path, size: int = 4 << 30) -> Path:
    """The first 4 KiB of a real .blend, then zeros up to ``size`` (a sparse file)."""
    path.write_bytes(good.read_bytes()[:4096])
    subprocess.run(["truncate", "-s", str(size), str(path)], check=True)
    assert os.stat(path).st_blocks * 512 < 1 << 20  # sparse: costs no disk
    return path


def test_open_blend_refuses_zeros_after_a_header_reading_only_block_headers(tmp_path, addon):
    broken = zeros_after_a_header(
        tmp_path / "zeros.blend", save_box(tmp_path / "box.blend", compress=False)
    )
    start = read_bytes()
    with pytest.raises(TextureError, match="it is damaged"):
        files.open_blend(str(broken))
    assert read_bytes() - start < 16 << 20


@pytest.mark.parametrize("command", ["depth", "texture"])
def test_depth_and_texture_on_zeros_after_a_header_are_one_line(
    command, tiny_model_dir, tmp_path, addon, capsys
):
    broken = zeros_after_a_header(
        tmp_path / "zeros.blend", save_box(tmp_path / "box.blend", compress=False)
    )
    arguments = [command, broken]
    if command == "texture":
        arguments += ["--prompt", "x", "--model", tiny_model_dir, *SIZE]
    start = read_bytes()

    code, messages, _ = run_cli(arguments, capsys)

    assert_refused(code, messages, f"Blender cannot open '{broken}': it is damaged")
    assert read_bytes() - start < 256 << 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["box.blend", "zeros.blend"]


def test_an_output_blend_of_zeros_is_left_alone_without_reading_it(tmp_path, addon, capsys):
    source = save_box(tmp_path / "box.blend", compress=False)
    output = zeros_after_a_header(tmp_path / "out.blend", source)
    start = read_bytes()

    code, messages, _ = run_cli(["texture", source, "--prompt", "x", "--output", output], capsys)

    assert_refused(code, messages, "without textures of this add-on")
    assert read_bytes() - start < 256 << 20


def test_a_batch_records_a_blend_of_zeros_as_failed_and_goes_on(tmp_path, tiny_model_dir, addon):
    library = save_box(tmp_path / "library" / "box.blend", compress=False).parent
    zeros_after_a_header(library / "zeros.blend", library / "box.blend")
    out = tmp_path / "out"
    start = read_bytes()

    code = cli.main(["batch", str(library), "--out", str(out), *model(tiny_model_dir)])

    assert read_bytes() - start < 1 << 30
    assert code == 1  # one file failed
    last = records.Manifest(str(out / records.MANIFEST_NAME)).read()
    assert last["box.blend::Box"]["status"] == records.DONE
    assert last["zeros.blend"]["status"] == records.FAILED
    assert "it is damaged" in last["zeros.blend"]["error"]
