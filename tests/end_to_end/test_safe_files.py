"""Files are never lost: every path a run writes is checked before it runs, and written whole.

Each test builds its scene, saves it, runs the command line (``cli.main``) or an operator, and
checks that a refused run changed no file (the source's sha256 included) and that a run that
succeeds wrote only where the guide says. Read-only paths are made with ``chattr +i`` (root
writes through permission bits, not through the immutable flag); where that is not available,
``os.access`` is patched to report the path read-only, which is what the checks consult.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
from pathlib import Path

import bpy
import numpy as np
import pytest
from support.fingerprints import folder_fingerprint, scene_fingerprint
from support.scenes import save_sample

from sd_depth_texture.blender import files, flow, images, outputs, sample
from sd_depth_texture.blender.targets import texture_name
from sd_depth_texture.cli import main as cli
from sd_depth_texture.core.errors import TextureError
from sd_depth_texture.request import OutputOptions, TextureRequest, ViewSource

SIZE = ["--texture-size", "64"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_picture(path: Path, colour: tuple[float, float, float]) -> Path:
    """A 384x256 PNG (the sample camera's 3:2) of one colour, written through Blender."""
    image = images.array_to_image("picture", np.tile(np.float32(colour), (256, 384, 1)))
    image.filepath_raw, image.file_format = str(path), "PNG"
    image.save()
    bpy.data.images.remove(image)
    return path


@pytest.fixture
def source(tmp_path, addon) -> Path:
    """The sample scene saved as ``scene/scene.blend``."""
    return save_sample(tmp_path / "scene" / "scene.blend")


@pytest.fixture
def picture(tmp_path) -> Path:
    return write_picture(tmp_path / "grey.png", (0.5, 0.5, 0.5))


def run_cli(arguments: list[str], capsys) -> tuple[int, list[str], str]:
    """The exit code, the stderr lines that are messages (not the progress line), stdout."""
    capsys.readouterr()
    code = cli.main([str(argument) for argument in arguments])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.replace("\r", "\n").splitlines() if line.strip()]
    messages = [line for line in lines if not line.lstrip().startswith("[")]
    return code, messages, captured.out


def assert_refused(code: int, messages: list[str], expected: str, exit_code: int = 1) -> None:
    """One ``error:`` line, the last message, saying ``expected``; no traceback."""
    assert code == exit_code, messages
    errors = [line for line in messages if line.startswith("error: ")]
    assert len(errors) == 1 and messages[-1] == errors[0], messages
    assert expected.lower() in errors[0].lower(), errors[0]
    assert not any("Traceback" in line for line in messages)


@pytest.fixture
def read_only(monkeypatch):
    """Make a file or folder read-only: ``chattr +i``, else a patched ``os.access``."""
    marked: list[Path] = []
    patched: set[str] = set()

    def mark(path: Path) -> None:
        result = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
        if result.returncode == 0:
            marked.append(path)
            return
        if not patched:
            real_access = os.access
            monkeypatch.setattr(
                os,
                "access",
                lambda p, mode, **kw: (
                    False
                    if os.path.abspath(p) in patched and mode & os.W_OK
                    else real_access(p, mode, **kw)
                ),
            )
        patched.add(os.path.abspath(path))

    yield mark
    for path in reversed(marked):
        subprocess.run(["chattr", "-i", str(path)], check=False)


# --- 1. One plan of every path, checked before anything runs --------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["project", "{src}", "--image", "{pic}", "--output", "{src}"], "is the file being read"),
        (["texture", "{src}", "--prompt", "x", "--output", "{src}"], "--in-place"),
        (["depth", "{src}", "--output", "{src}"], "is the file being read"),
        (["depth", "{src}", "--output", "{other_blend}"], "is a .blend file"),
        (["depth", "{src}", "--output", "{notes}"], "not a depth map"),
        (["texture", "{src}", "--prompt", "x", "--views", "3", "--report", "{src}"], "run reads"),
        (["project", "{src}", "--image", "{pic}", "--report", "{pic}"], "run reads"),
        (
            ["project", "{src}", "--image", "{pic}", "--output", "{out}", "--report", "{out}"],
            "also a file the run writes",
        ),
        (["project", "{src}", "--image", "{pic}", "--report", "{folder}"], "is a folder"),
        (["project", "{src}", "--image", "{pic}", "--report", "{other_blend}"], ".blend file"),
        (["project", "{src}", "--image", "{pic}", "--report", "{new_blend}"], ".blend file"),
        (["project", "{src}", "--image", "{pic}", "--report", "{notes}"], "not a report"),
        (["project", "{src}", "--image", "{pic}", "--output", "{other_blend}"], "left as it is"),
        (["project", "{src}", "--image", "{pic}", "--output", "{folder}"], "is a folder"),
        (["project", "{src}", "--image", "{pic}", "--output", "{png}"], "not a .blend file name"),
        (["project", "{src}", "--image", "{pic}", "--output", "{under_file}"], "is a file, not"),
        (["project", "{src}", "--image", "{pic}", "--output", "{textures_file}"], "is a file, not"),
        (["depth", "{src}", "--output", "{folder}"], "is a folder"),
        (
            ["project", "{src}", "--image", "{pic}", "--in-place", "--output", "{out}"],
            "leave out --output",
        ),
    ],
)
def test_bad_paths_are_one_line_and_change_no_file(
    arguments, message, source, picture, tmp_path, capsys
):
    other_blend = tmp_path / "other.blend"
    other_blend.write_bytes(source.read_bytes())
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    (tmp_path / "folder").mkdir()
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "textures").write_text("a file where the texture folder would go\n")
    values = {
        "src": source,
        "pic": picture,
        "out": tmp_path / "out.blend",
        "other_blend": other_blend,
        "new_blend": tmp_path / "report.blend",
        "notes": notes,
        "folder": tmp_path / "folder",
        "png": tmp_path / "out.png",
        "under_file": notes / "out.blend",
        "textures_file": blocked / "out.blend",
    }
    before, source_hash = folder_fingerprint(tmp_path), sha256(source)

    code, messages, _ = run_cli([a.format(**values) for a in arguments], capsys)

    assert_refused(code, messages, message)
    assert sha256(source) == source_hash
    assert folder_fingerprint(tmp_path) == before
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == []


@pytest.mark.parametrize("what", ["output folder", "output file", "texture", "report", "depth"])
def test_read_only_paths_are_refused_before_the_run(
    what, source, picture, tmp_path, read_only, capsys
):
    out = tmp_path / "out"
    out.mkdir()
    arguments = ["project", source, "--image", picture, "--object", "Cube", *SIZE]
    arguments += ["--output", out / "out.blend"]
    if what == "output folder":
        read_only(out)
    elif what == "output file":
        assert run_cli(arguments, capsys)[0] == 0
        read_only(out / "out.blend")
    elif what == "texture":
        assert run_cli(arguments, capsys)[0] == 0
        read_only(out / "textures" / "out" / "Cube_SD_Texture.png")
    elif what == "report":
        (tmp_path / "reports").mkdir()
        read_only(tmp_path / "reports")
        arguments += ["--report", tmp_path / "reports" / "report.json"]
    else:
        arguments = ["depth", source, "--output", out / "depth.png"]
        read_only(out)
    before, source_hash = folder_fingerprint(tmp_path), sha256(source)

    code, messages, _ = run_cli(arguments, capsys)

    assert_refused(code, messages, "read-only")
    assert sha256(source) == source_hash
    assert folder_fingerprint(tmp_path) == before


def test_in_place_keeps_every_earlier_version_as_a_backup(source, picture, capsys):
    original = sha256(source)
    arguments = ["project", source, "--image", picture, "--object", "Cube", *SIZE, "--in-place"]

    code, _, out = run_cli(arguments, capsys)

    assert code == 0
    backup = source.with_name("scene.backup.blend")
    assert f"kept as {backup}" in out
    assert sha256(backup) == original
    first = sha256(source)
    assert first != original
    assert (source.parent / "textures" / "scene" / "Cube_SD_Texture.png").is_file()

    assert run_cli(arguments, capsys)[0] == 0
    assert sha256(backup) == original  # an earlier backup is never replaced
    assert sha256(source.with_name("scene.backup-2.blend")) == first
    bpy.ops.wm.open_mainfile(filepath=str(source))
    assert bpy.data.objects["Cube"].material_slots[0].material.name == "Cube SD Texture"
    assert not list(source.parent.glob("*.blend1")) and not list(source.parent.glob(".*"))


def test_depth_force_replaces_another_png_only_after_backing_it_up(source, capsys):
    picture = write_picture(source.with_name("picture.png"), (0.2, 0.4, 0.6))
    original = sha256(picture)
    code, _, out = run_cli(["depth", source, "--output", picture, "--force"], capsys)
    assert code == 0
    backup = source.with_name("picture.backup.png")
    assert str(backup) in out
    assert sha256(backup) == original
    assert outputs.is_depth_png(str(picture))
    # Not even --force writes the depth map's PNG bytes under a .blend name.
    code, messages, _ = run_cli(["depth", source, "--output", source, "--force"], capsys)
    assert_refused(code, messages, "not a .png file name")

    # An earlier depth map is simply replaced: it is this add-on's own file.
    depth = source.with_name("depth.png")
    assert run_cli(["depth", source, "--output", depth], capsys)[0] == 0
    assert run_cli(["depth", source, "--output", depth], capsys)[0] == 0
    assert sorted(p.name for p in source.parent.iterdir()) == [
        "depth.png", "picture.backup.png", "picture.png", "scene.blend"
    ]  # fmt: skip


def test_capture_depth_refuses_the_open_blend(source):
    original = sha256(source)
    before = scene_fingerprint()
    with pytest.raises(RuntimeError, match="is the file being read"):
        bpy.ops.sd_depth_texture.capture_depth(filepath=str(source), resolution=256)
    with pytest.raises(RuntimeError, match="is a folder"):
        bpy.ops.sd_depth_texture.capture_depth(filepath=str(source.parent), resolution=256)
    assert sha256(source) == original
    assert scene_fingerprint() == before
    assert sorted(p.name for p in source.parent.iterdir()) == ["scene.blend"]


def test_missing_output_folders_are_created(source, picture, tmp_path, capsys):
    output = tmp_path / "new" / "deep" / "out.blend"
    report = tmp_path / "reports" / "run" / "report.json"
    depth = tmp_path / "maps" / "depth.png"
    arguments = ["project", source, "--image", picture, "--object", "Cube", *SIZE]
    assert run_cli([*arguments, "--output", output, "--report", report], capsys)[0] == 0
    assert run_cli(["depth", source, "--output", depth], capsys)[0] == 0
    assert output.is_file() and report.is_file() and depth.is_file()
    assert (output.parent / "textures" / "out" / "Cube_SD_Texture.png").is_file()
    assert json.loads(report.read_text())["objects"][0]["texture"] == str(
        output.parent / "textures" / "out" / "Cube_SD_Texture.png"
    )


# --- 2. Texture file names ----------------------------------------------------------------


def test_two_outputs_in_one_folder_keep_their_own_textures(source, tmp_path, capsys):
    red = write_picture(tmp_path / "red.png", (1.0, 0.0, 0.0))
    blue = write_picture(tmp_path / "blue.png", (0.0, 0.0, 1.0))
    out = tmp_path / "out"
    project = ["project", source, "--object", "Cube", *SIZE]
    assert run_cli([*project, "--image", red, "--output", out / "v1.blend"], capsys)[0] == 0
    first = folder_fingerprint(out)
    assert run_cli([*project, "--image", blue, "--output", out / "v2.blend"], capsys)[0] == 0

    after = folder_fingerprint(out)
    assert {k: v for k, v in after.items() if k in first} == first  # v1's files untouched
    assert sorted(after) == [
        "textures/v1/Cube_SD_Texture.png", "textures/v2/Cube_SD_Texture.png", "v1.blend",
        "v2.blend",
    ]  # fmt: skip
    for name, colour in (("v1", (1, 0, 0)), ("v2", (0, 0, 1))):
        bpy.ops.wm.open_mainfile(filepath=str(out / f"{name}.blend"))
        image = bpy.data.images[texture_name("Cube")]
        assert image.filepath == f"//textures/{name}/Cube_SD_Texture.png"
        texture = images.image_to_array(image)
        assert (texture[..., :3] == colour).all(-1).any()


def test_a_panel_run_never_writes_another_blends_texture(source, picture, tmp_path):
    a_file = source.with_name("a.blend")
    bpy.ops.wm.save_as_mainfile(filepath=str(a_file))
    for obj in bpy.data.objects:
        obj.select_set(obj.name == "Cube")
    options = {"filepath": str(picture), "camera": "Camera", "texture_size": 64}
    assert bpy.ops.sd_depth_texture.project_image(**options) == {"FINISHED"}
    a_texture = source.parent / "textures" / "a" / "Cube_SD_Texture.png"
    a_hash = sha256(a_texture)

    # Saved as b.blend beside it, the image still points at a's file: the next run must not.
    bpy.ops.wm.save_as_mainfile(filepath=str(source.with_name("b.blend")))
    assert bpy.data.images[texture_name("Cube")].filepath == "//textures/a/Cube_SD_Texture.png"
    write_picture(picture, (0.0, 1.0, 0.0))
    assert bpy.ops.sd_depth_texture.project_image(**options) == {"FINISHED"}

    assert sha256(a_texture) == a_hash
    assert bpy.data.images[texture_name("Cube")].filepath == "//textures/b/Cube_SD_Texture.png"
    assert (source.parent / "textures" / "b" / "Cube_SD_Texture.png").is_file()


def test_names_that_clean_alike_get_distinct_stable_files(tmp_path, picture, addon, capsys):
    sample.build_sample_scene()
    bpy.data.objects["Suzanne"].name = "A.B"
    bpy.data.objects["Cube"].name = "A_B"
    scene_file = tmp_path / "names.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(scene_file))
    output = tmp_path / "out" / "out.blend"
    arguments = ["project", scene_file, "--image", picture, "--object", "A.B", "--object", "A_B"]
    arguments += [*SIZE, "--output", output]

    assert run_cli(arguments, capsys)[0] == 0
    folder = output.parent / "textures" / "out"
    tag = hashlib.sha1(b"A_B").hexdigest()[:8]
    first = sorted(p.name for p in folder.iterdir())
    assert first == sorted(["A_B_SD_Texture.png", f"A_B-{tag}_SD_Texture.png"])

    # Reruns, in either order, keep each object's file: the output's .blend says whose it is.
    assert run_cli(arguments, capsys)[0] == 0
    reversed_order = [*arguments[:4], "--object", "A_B", "--object", "A.B", *arguments[8:]]
    assert run_cli(reversed_order, capsys)[0] == 0
    assert sorted(p.name for p in folder.iterdir()) == first
    bpy.ops.wm.open_mainfile(filepath=str(output))
    assert bpy.data.images[texture_name("A.B")].filepath == "//textures/out/A_B_SD_Texture.png"
    assert bpy.data.images[texture_name("A_B")].filepath == (
        f"//textures/out/A_B-{tag}_SD_Texture.png"
    )


def test_a_file_the_output_does_not_own_is_left_alone(source, picture, tmp_path, capsys):
    folder = tmp_path / "out" / "textures" / "out"
    folder.mkdir(parents=True)
    theirs = folder / "Cube_SD_Texture.png"
    write_picture(theirs, (1.0, 1.0, 0.0))
    theirs_hash = sha256(theirs)
    report = tmp_path / "report.json"
    arguments = ["project", source, "--image", picture, "--object", "Cube", *SIZE]
    arguments += ["--output", tmp_path / "out" / "out.blend", "--report", report]

    assert run_cli(arguments, capsys)[0] == 0
    assert run_cli(arguments, capsys)[0] == 0  # a rerun writes the same file again

    tag = hashlib.sha1(b"Cube").hexdigest()[:8]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["Cube_SD_Texture.png", f"Cube-{tag}_SD_Texture.png"]
    )
    assert sha256(theirs) == theirs_hash
    entry = json.loads(report.read_text())["objects"][0]
    assert entry["texture"] == str(folder / f"Cube-{tag}_SD_Texture.png")
    assert any("was left alone" in note for note in entry["notes"])


def test_texture_path_is_the_one_naming_rule():
    blend = os.path.abspath("/projects/shots/shot.blend")
    folder = os.path.join(os.path.dirname(blend), "textures", "shot")
    assert outputs.texture_path(blend, "Chair.001") == os.path.join(
        folder, "Chair_001_SD_Texture.png"
    )
    tag = hashlib.sha1(b"Chair.001").hexdigest()[:8]
    taken = {"chair_001_sd_texture.png"}
    assert outputs.texture_path(blend, "Chair.001", taken).endswith(
        f"Chair_001-{tag}_SD_Texture.png"
    )
    taken.add(f"chair_001-{tag}_sd_texture.png")
    assert outputs.texture_path(blend, "Chair.001", taken).endswith(f"-{tag}-2_SD_Texture.png")
    # The name the .blend already uses is kept while it is free, whatever else is free.
    kept = f"Chair_001-{tag}_SD_Texture.png"
    assert outputs.texture_path(blend, "Chair.001", (), current=kept).endswith(kept)
    # A name that is not one of the object's is not taken over.
    assert outputs.texture_path(blend, "Chair.001", (), current="Table_SD_Texture.png").endswith(
        "Chair_001_SD_Texture.png"
    )


# --- 3. An error changes nothing, in the panel too -------------------------------------------


def test_a_report_folder_is_refused_before_the_run(sample_scene, tiny_model_dir, tmp_path):
    before, files_before = scene_fingerprint(), folder_fingerprint(tmp_path)
    with pytest.raises(RuntimeError, match="is a folder"):
        bpy.ops.sd_depth_texture.generate(
            prompt="bronze", model=str(tiny_model_dir), steps=1, views=3, texture_size=64,
            resolution=128, report_path=str(tmp_path),
        )  # fmt: skip
    assert scene_fingerprint() == before
    assert folder_fingerprint(tmp_path) == files_before


@pytest.mark.parametrize("failure", [TextureError, KeyboardInterrupt])
def test_a_failure_while_writing_leaves_files_and_scene_as_they_were(
    failure, source, picture, tmp_path, monkeypatch
):
    """The first run writes a texture; the second fails at its report, after its texture was
    written under a temporary name: the first texture, the scene and the folder are unchanged."""
    for obj in bpy.data.objects:
        obj.select_set(obj.name == "Cube")
    request = TextureRequest(
        views=ViewSource(resolution=256, cameras=("Camera",)),
        targets=("Cube",),
        pictures=(np.full((256, 384, 3), 0.25, np.float32),),
        output=OutputOptions(texture_size=64, report_path=str(tmp_path / "report.json")),
    )
    flow.prepare(request).run()
    images.image_to_array(bpy.data.images[texture_name("Cube")])  # loaded, so its pixels count
    before, files_before = scene_fingerprint(), folder_fingerprint(tmp_path)

    def fail(path, *_args, **_kwargs):
        Path(path).write_text("{")  # half a report, as a full disk would leave it
        raise failure("No space left on device")

    monkeypatch.setattr(flow, "write_report", fail)
    brighter = dataclasses.replace(request, pictures=(np.ones((256, 384, 3), np.float32),))
    with pytest.raises(failure):
        flow.prepare(brighter).run()

    assert scene_fingerprint() == before
    assert folder_fingerprint(tmp_path) == files_before


def test_a_file_that_appears_at_a_planned_path_during_the_run_is_not_written_over(source):
    request = TextureRequest(
        views=ViewSource(resolution=128, cameras=("Camera",)),
        targets=("Cube",),
        pictures=(np.full((128, 192, 3), 0.5, np.float32),),
        output=OutputOptions(texture_size=64),
    )
    run = flow.prepare(request)
    planned = Path(run.plan.textures["Cube"])
    assert planned == source.parent / "textures" / "scene" / "Cube_SD_Texture.png"
    before = scene_fingerprint()
    planned.parent.mkdir(parents=True)
    planned.write_bytes(b"someone else's file")  # while the model runs

    with pytest.raises(TextureError, match="appeared while the texture of 'Cube' was made"):
        run.run()

    assert planned.read_bytes() == b"someone else's file"
    assert sorted(p.name for p in planned.parent.iterdir()) == ["Cube_SD_Texture.png"]
    assert scene_fingerprint() == before


def test_stale_partials_of_a_killed_save_are_cleaned_and_no_blend1_is_left(
    source, picture, tmp_path, capsys
):
    out = tmp_path / "out"
    out.mkdir()
    arguments = ["project", source, "--image", picture, "--object", "Cube", *SIZE]
    arguments += ["--output", out / "out.blend"]
    assert run_cli(arguments, capsys)[0] == 0
    (out / ".out.partial.blend").write_bytes(b"BLENDER half a file")
    (out / ".out.partial.blend1").write_bytes(b"BLENDER the backup Blender made of it")

    assert run_cli(arguments, capsys)[0] == 0  # saves over an existing output

    assert sorted(p.name for p in out.iterdir()) == ["out.blend", "textures"]
    assert [p.name for p in (out / "textures" / "out").iterdir()] == ["Cube_SD_Texture.png"]


def test_an_interrupted_save_leaves_no_partial_and_takes_back_its_textures(
    source, picture, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "out"
    source_hash = sha256(source)
    real_fsync = files.fsync

    def interrupted(path):
        if path.endswith(".partial.blend"):
            raise KeyboardInterrupt
        real_fsync(path)

    monkeypatch.setattr(files, "fsync", interrupted)
    arguments = ["project", source, "--image", picture, "--object", "Cube", *SIZE]
    code, messages, _ = run_cli([*arguments, "--output", out / "out.blend"], capsys)

    assert_refused(code, messages, "interrupted; nothing was written", exit_code=130)
    assert not out.exists()  # no .blend, no partial, no texture, not even the folders
    assert sha256(source) == source_hash


def test_ctrl_c_during_texture_exits_130_with_one_line_and_writes_nothing(
    source, tiny_model_dir, tmp_path, monkeypatch, capsys
):
    """A real SIGINT in the middle of the run, while Blender's own handler (here: ignore) is
    installed: the command line's handler turns it into a clean stop."""
    painting = flow.paint_group

    def paint_then_interrupt(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return painting(*args, **kwargs)

    monkeypatch.setattr(flow, "paint_group", paint_then_interrupt)
    before, source_hash = folder_fingerprint(tmp_path), sha256(source)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code, messages, _ = run_cli(
            ["texture", source, "--prompt", "moss", "--model", tiny_model_dir, "--steps", "1",
             *SIZE, "--resolution", "128", "--object", "Suzanne"],
            capsys,
        )  # fmt: skip
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # put back afterwards
    finally:
        signal.signal(signal.SIGINT, previous)

    assert_refused(code, messages, "interrupted; nothing was written", exit_code=130)
    assert sha256(source) == source_hash
    assert folder_fingerprint(tmp_path) == before


def test_ctrl_c_inside_the_flow_undoes_the_uv_map_prepare_made(addon, monkeypatch):
    sample.build_sample_scene()
    cube = bpy.data.objects["Cube"]
    while cube.data.uv_layers:
        cube.data.uv_layers.remove(cube.data.uv_layers[0])
    before = scene_fingerprint()

    def interrupt(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(flow, "paint_group", interrupt)
    request = TextureRequest(
        views=ViewSource(resolution=128, cameras=("Camera",)),
        targets=("Cube",),
        pictures=(np.full((128, 192, 3), 0.5, np.float32),),
        output=OutputOptions(texture_size=64),
    )
    with pytest.raises(KeyboardInterrupt):
        flow.prepare(request).run()
    assert scene_fingerprint() == before


# --- 4. The saved base colour is opaque -------------------------------------------------------


def test_the_texture_png_is_opaque(source, tiny_model_dir, tmp_path, capsys):
    output = tmp_path / "out" / "out.blend"
    code, messages, _ = run_cli(
        ["texture", source, "--prompt", "moss", "--model", tiny_model_dir, "--steps", "1",
         *SIZE, "--resolution", "128", "--object", "Suzanne", "--output", output],
        capsys,
    )  # fmt: skip
    assert code == 0, messages
    png = output.parent / "textures" / "out" / "Suzanne_SD_Texture.png"

    loaded = bpy.data.images.load(str(png), check_existing=False)
    try:
        pixels = images.image_to_array(loaded)
        assert loaded.channels == 3 or np.all(pixels[..., 3] == 1.0)
        assert pixels[..., :3].std() > 0  # a texture, not a blank image
    finally:
        bpy.data.images.remove(loaded)

    pil = pytest.importorskip("PIL.Image")
    with pil.open(png) as picture:
        assert picture.mode in ("RGB", "RGBA"), picture.mode
        if picture.mode == "RGBA":
            assert picture.getchannel("A").getextrema() == (255, 255)
