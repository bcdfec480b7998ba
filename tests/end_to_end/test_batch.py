"""The ``batch`` command on a small asset library the tests build.

The library: three .blend files with mesh assets carrying descriptions, tags and catalogs (two
assets stacked at the origin, one hidden, one without UVs, one with no faces, a non-mesh asset,
a plain mesh that is not an asset), a camera in one file, and one broken file. Blender-side
tests share one reference run; the crash tests kill real processes with SIGKILL.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import bpy
import c2pa
import numpy as np
import pytest
from support import REPO
from support.fingerprints import folder_fingerprint

from sd_depth_texture.batch import plan, prompts, records, report, run, runners, sources, worker
from sd_depth_texture.batch.sources import CATALOG_FILE
from sd_depth_texture.cli import main as cli
from sd_depth_texture.cli import options as cli_options
from sd_depth_texture.core.errors import TextureError

CHAIRS = "0a0b0c0d-0000-4000-8000-000000000001"
TABLES = "0a0b0c0d-0000-4000-8000-000000000002"
TEMPLATE = "a {name}, {description}, {tags}, {catalog}, photorealistic"
FAST = ["--steps", "2", "--resolution", "64", "--texture-size", "64", "--preview-size", "64"]
DONE_ASSETS = [
    "furniture/chairs.blend::Chair",
    "furniture/chairs.blend::Stool",
    "furniture/tables.blend::Table",
    "props/misc.blend::Crate",
    "props/misc.blend::Vase",
]


# --------------------------------------------------------------------------------------------
# The library
# --------------------------------------------------------------------------------------------


def _mark(obj, description: str = "", tags: tuple[str, ...] = (), catalog: str = "") -> None:
    obj.asset_mark()
    obj.asset_data.description = description
    for tag in tags:
        obj.asset_data.tags.new(tag)
    if catalog:
        obj.asset_data.catalog_id = catalog


def _save(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(path))


def _add(kind: str, name: str, **kwargs):
    getattr(bpy.ops.mesh, f"primitive_{kind}_add")(**kwargs)
    obj = bpy.context.active_object
    obj.name = obj.data.name = name
    return obj


def build_library(root: Path, boxes: int = 0) -> Path:
    """Write the test library under ``root``; ``boxes`` adds a file with that many cube assets."""
    root.mkdir(parents=True, exist_ok=True)
    (root / CATALOG_FILE).write_text(
        "# This is an Asset Catalog Definition file for Blender.\nVERSION 1\n\n"
        f"{CHAIRS}:Furniture/Chairs:Furniture-Chairs\n{TABLES}:Furniture/Tables:Furniture-Tables\n"
    )
    from sd_depth_texture.blender import images, sample

    bpy.ops.wm.read_homefile(use_empty=True)
    chair = _add("cube", "Chair", size=1.0, calc_uvs=True)
    chair.scale = (0.6, 0.6, 1.0)
    _mark(chair, "a wooden dining chair", ("wood", "chair"), CHAIRS)
    stool = _add("cylinder", "Stool", radius=0.4, depth=0.7, calc_uvs=True)  # inside the chair
    _mark(stool, "a bar stool", ("metal",), CHAIRS)
    stool.hide_set(True)
    _add("plane", "Floor", size=4.0, location=(0, 0, -0.6), calc_uvs=True)
    bpy.context.scene.camera = sample.add_camera("Cam", (0.5, -4.0, 1.5), (0, 0, 0), lens=35.0)
    # An image of the file's own, by a path relative to the file: the output must still find it.
    wood = images.array_to_image("wood", np.full((4, 4, 3), 0.4, dtype=np.float32))
    (root / "furniture" / "maps").mkdir(parents=True)
    wood.filepath_raw, wood.file_format = str(root / "furniture" / "maps" / "wood.png"), "PNG"
    wood.save()
    wood.filepath_raw, wood.use_fake_user = "//maps/wood.png", True
    _save(root / "furniture" / "chairs.blend")

    bpy.ops.wm.read_homefile(use_empty=True)
    table = _add("cube", "Table", size=1.0, calc_uvs=True)
    table.scale = (1.2, 0.8, 0.4)
    _mark(table, "a low coffee table", ("wood",), TABLES)
    mesh = bpy.data.meshes.new("Flat")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [(0, 1), (1, 2)], [])
    flat = bpy.data.objects.new("Flat", mesh)
    bpy.context.scene.collection.objects.link(flat)
    _mark(flat, "an asset with no faces")
    _save(root / "furniture" / "tables.blend")

    bpy.ops.wm.read_homefile(use_empty=True)
    vase = _add("uv_sphere", "Vase", radius=0.5, segments=16, ring_count=8, calc_uvs=True)
    _mark(vase, "a ceramic vase", ("ceramic", "decor"))
    crate = _add("cube", "Crate", size=0.8, location=(2, 0, 0), calc_uvs=False)
    while crate.data.uv_layers:
        crate.data.uv_layers.remove(crate.data.uv_layers[0])
    _mark(crate, "a shipping crate")
    marker = bpy.data.objects.new("Marker", None)
    bpy.context.scene.collection.objects.link(marker)
    marker.asset_mark()
    _save(root / "props" / "misc.blend")

    if boxes:
        bpy.ops.wm.read_homefile(use_empty=True)
        for index in range(boxes):
            box = _add("cube", f"Box{index:02d}", size=0.5 + 0.1 * index, calc_uvs=True)
            _mark(box, f"box number {index}", ("box",))
        _save(root / "boxes" / "boxes.blend")

    (root / "broken.blend").write_bytes(b"BLENDER-v500" + b"\x00 not a blend file " * 40)
    return root


def batch_argv(sources, out: Path, model: Path, *extra: str) -> list[str]:
    sources = [sources] if isinstance(sources, (str, Path)) else sources
    return [
        "batch", *map(str, sources), "--out", str(out), "--model", str(model),
        "--prompt-template", TEMPLATE, *FAST, *extra,
    ]  # fmt: skip


def pixels(path: str | Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path))


def texture_pixels(out: Path) -> dict[str, bytes]:
    """Every texture and preview PNG below ``out``, as a hash of its decoded pixels."""
    return {
        str(path.relative_to(out)): hashlib.sha256(pixels(path).tobytes()).hexdigest()
        for path in sorted(out.rglob("*.png"))
    }


def manifest_lines(out: Path) -> list[dict]:
    return records.Manifest(str(out / records.MANIFEST_NAME)).records()


def done_lines(out: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in manifest_lines(out):
        if record["status"] == records.DONE:
            counts[record["key"]] = counts.get(record["key"], 0) + 1
    return counts


@pytest.fixture(scope="module")
def library(tmp_path_factory, addon) -> Path:
    return build_library(tmp_path_factory.mktemp("batch") / "library")


@pytest.fixture(scope="module")
def reference(library, tiny_model_dir, tmp_path_factory):
    """One batch over the whole library: its output, exit code, printed text and pixels."""
    from sd_depth_texture.core.diffusion import cache

    cache.free_pipeline()  # so this run has to load the model itself
    before = folder_fingerprint(library)
    out = tmp_path_factory.mktemp("reference") / "out"
    stdout = io.StringIO()
    saved, sys.stdout = sys.stdout, stdout
    ray_module = sys.modules.get("ray", "absent")
    sys.modules["ray"] = None  # any `import ray` now fails: a run without --ray never needs it
    try:
        code = cli.main(batch_argv(library, out, tiny_model_dir))
    finally:
        sys.stdout = saved
        if ray_module == "absent":
            del sys.modules["ray"]
        else:
            sys.modules["ray"] = ray_module
    return {
        "out": out,
        "code": code,
        "text": stdout.getvalue(),
        "pixels": texture_pixels(out),
        "manifest": manifest_lines(out),
        "sources_before": before,
    }


# --------------------------------------------------------------------------------------------
# Pure parts: no Blender data involved
# --------------------------------------------------------------------------------------------


def test_sources_are_folders_files_or_library_names(library, tmp_path):
    files = sources.resolve_sources([str(library)], {})
    assert [f.relpath for f in files] == [
        "broken.blend", "furniture/chairs.blend", "furniture/tables.blend", "props/misc.blend"
    ]  # fmt: skip
    # A file also reachable through a folder keeps the folder's identity, whatever the order.
    chairs = str(library / "furniture" / "chairs.blend")
    for order in ([chairs, str(library)], [str(library), chairs]):
        relpaths = [f.relpath for f in sources.resolve_sources(order, {})]
        assert "furniture/chairs.blend" in relpaths and "chairs.blend" not in relpaths
    assert [f.relpath for f in sources.resolve_sources([chairs], {})] == ["chairs.blend"]
    by_name = sources.resolve_sources(["Props"], {"Props": str(library / "props")})
    assert [f.relpath for f in by_name] == ["misc.blend"]
    # The output folder inside a source is never taken for sources.
    inside = library / "furniture" / "out_inside"
    (inside / "x").mkdir(parents=True)
    (inside / "x" / "copy.blend").write_bytes(b"")
    try:
        found = sources.resolve_sources([str(library)], {}, exclude=[str(inside)])
        assert all("out_inside" not in f.relpath for f in found)
    finally:
        (inside / "x" / "copy.blend").unlink()
        (inside / "x").rmdir()
        inside.rmdir()
    with pytest.raises(TextureError, match="asset library"):
        sources.resolve_sources(["No Such Library"], {})
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "same.blend").write_bytes(b"")
    (tmp_path / "b" / "same.blend").write_bytes(b"")
    with pytest.raises(TextureError, match="both be written"):
        sources.resolve_sources([str(tmp_path / "a"), str(tmp_path / "b")], {})


def test_catalogs_and_prompt_templates(library):
    source = next(f for f in sources.resolve_sources([str(library)], {}) if "chairs" in f.relpath)
    catalogs = sources.find_catalogs(source)  # found in the library root, above the file
    assert catalogs[CHAIRS] == "Furniture/Chairs"
    info = records.AssetInfo("Chair", "a wooden dining chair", ("wood", "chair"), CHAIRS, "")
    fields = prompts.template_fields(info, source, catalogs)
    assert fields["catalog"] == "Furniture/Chairs" and fields["catalog_name"] == "Chairs"
    assert prompts.fill_template(TEMPLATE, fields) == (
        "a Chair, a wooden dining chair, wood, chair, Furniture/Chairs, photorealistic"
    )
    bare = prompts.template_fields(records.AssetInfo("Crate"), source, {})
    assert prompts.fill_template(TEMPLATE, bare) == "a Crate, photorealistic"
    assert prompts.fill_template("{description}, {name}", bare) == "Crate"
    with pytest.raises(TextureError, match=r"\{colour\}"):
        prompts.check_template("a {colour} thing")
    with pytest.raises(TextureError, match="malformed"):
        prompts.check_template("a {name")


# --------------------------------------------------------------------------------------------
# Blender side
# --------------------------------------------------------------------------------------------


def test_batch_textures_every_asset_and_records_the_bad_ones(reference, library):
    out, text = reference["out"], reference["text"]
    assert reference["code"] == 1  # two failures
    assert "5 of 7 done (5 this run), 2 failed (1 unreadable file(s))" in text
    assert "failed furniture/tables.blend::Flat: 'Flat' has no faces to texture." in text
    assert "failed broken.blend: Blender cannot open" in text
    assert folder_fingerprint(library) == reference["sources_before"]  # sources untouched

    last = records.Manifest(str(out / records.MANIFEST_NAME)).read()
    assert sorted(k for k, r in last.items() if r["status"] == "done") == DONE_ASSETS
    assert {k for k, r in last.items() if r["status"] == "failed"} == {
        "broken.blend", "furniture/tables.blend::Flat"
    }  # fmt: skip
    assert "props/misc.blend::Marker" not in last  # a non-mesh asset is not textured
    chair = last["furniture/chairs.blend::Chair"]
    assert chair["prompt"] == (
        "a Chair, a wooden dining chair, wood, chair, Furniture/Chairs, photorealistic"
    )
    assert chair["seed"] == prompts.derive_seed(0, "furniture/chairs.blend", "Chair")
    assert {"open", "prepare", "load", "paint", "write", "preview", "save", "total"} <= set(
        chair["seconds"]
    )
    assert sum(r.get("model_loaded", False) for r in last.values()) == 1  # loaded once
    assert "had no UV map" in " ".join(last["props/misc.blend::Crate"]["notes"])

    # Outputs mirror the sources; each file's textures in a folder of its own; nothing partial.
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        "contact_sheet.html",
        "furniture/chairs.blend",
        "furniture/tables.blend",
        "furniture/textures/chairs/Chair_SD_Texture.png",
        "furniture/textures/chairs/Stool_SD_Texture.png",
        "furniture/textures/tables/Table_SD_Texture.png",
        "manifest.jsonl",
        "previews/furniture/chairs/Chair.png",
        "previews/furniture/chairs/Stool.png",
        "previews/furniture/tables/Table.png",
        "previews/props/misc/Crate.png",
        "previews/props/misc/Vase.png",
        "props/misc.blend",
        "props/textures/misc/Crate_SD_Texture.png",
        "props/textures/misc/Vase_SD_Texture.png",
    ]
    sheet = (out / "contact_sheet.html").read_text(encoding="utf-8")
    for key in DONE_ASSETS:
        assert f'src="previews/{key.replace(".blend::", "/")}.png"' in sheet
    assert "has no faces to texture" in sheet and "Blender cannot open" in sheet


def test_output_file_holds_the_textures_and_nothing_of_the_set_up(reference, library):
    out = reference["out"]
    bpy.ops.wm.open_mainfile(filepath=str(library / "furniture" / "chairs.blend"))
    source_hidden = {obj.name: obj.hide_get() for obj in bpy.data.objects}
    bpy.ops.wm.open_mainfile(filepath=str(out / "furniture" / "chairs.blend"))
    objects = bpy.data.objects
    assert sorted(objects.keys()) == ["Cam", "Chair", "Floor", "Stool"]  # no helper camera
    assert {obj.name: obj.hide_get() for obj in objects} == source_hidden  # Stool still hidden
    for name in ("Chair", "Stool"):
        material = objects[name].material_slots[0].material
        assert material.name == f"{name} SD Texture"
        image = material.node_tree.nodes["SD Texture"].image
        assert image.filepath == f"//textures/chairs/{name}_SD_Texture.png"
        assert Path(bpy.path.abspath(image.filepath)).is_file()
    assert not objects["Floor"].material_slots  # not an asset: untouched
    wood = Path(bpy.path.abspath(bpy.data.images["wood"].filepath)).resolve()
    assert wood == (library / "furniture" / "maps" / "wood.png").resolve()  # remapped
    record = json.loads(bpy.data.texts["SD Batch Record"].as_string())["assets"]
    assert sorted(record) == DONE_ASSETS[:2]


def test_rerun_skips_finished_assets_and_retry_failed_retries(reference, library, tiny_model_dir):
    out = reference["out"]
    outputs = {p: p.stat().st_mtime_ns for p in out.rglob("*.blend")}
    lines = len(manifest_lines(out))
    assert cli.main(batch_argv(library, out, tiny_model_dir)) == 1
    assert len(manifest_lines(out)) == lines  # nothing redone, nothing re-recorded
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.blend")} == outputs

    assert cli.main(batch_argv(library, out, tiny_model_dir, "--retry-failed")) == 1
    new = manifest_lines(out)[lines:]
    assert sorted(r["key"] for r in new) == ["broken.blend", "furniture/tables.blend::Flat"]
    assert all(r["status"] == "failed" for r in new)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.blend")} == outputs
    assert texture_pixels(out) == reference["pixels"]


def test_other_settings_are_refused_on_an_existing_output(
    reference, library, tiny_model_dir, capsys
):
    out = reference["out"]
    lines = len(manifest_lines(out))
    argv = batch_argv(library, out, tiny_model_dir)
    argv[argv.index("--steps") + 1] = "3"
    assert cli.main(argv) == 1
    assert "textured with another prompt, seed or settings" in capsys.readouterr().err
    assert len(manifest_lines(out)) == lines


def test_order_of_processing_changes_nothing(reference, library, tiny_model_dir, tmp_path):
    """Files and the assets within them done in reverse order give the same pixels."""
    args = cli.build_parser().parse_args(batch_argv(library, tmp_path / "out", tiny_model_dir))
    settings = vars(args)
    options = plan.BatchOptions.from_settings(settings)
    template = run.template_request(settings, cli_options.model_spec(settings))
    destinations = plan.check_destinations(options, {})
    the_plan = plan.make_plan(
        template.pixel_record(), False, destinations, prompts.prompt_source(settings),
        worker.scan_file,
    )  # fmt: skip
    tasks = [
        records.FileTask(**{**vars(task), "jobs": tuple(reversed(task.jobs))})
        for task in reversed(the_plan.tasks)
    ]
    sink = runners.Sink(
        the_plan.manifest, report.ProgressLine(the_plan.to_run, stream=io.StringIO())
    )
    runners.run_sequential(tasks, worker.FileWorker(template, options.preview_size), sink)
    assert [r["key"] for r in sink.records][:2] == [
        "props/misc.blend::Vase", "props/misc.blend::Crate"
    ]  # fmt: skip
    assert texture_pixels(tmp_path / "out") == reference["pixels"]


def _run_killed(argv: list[str], kill_point: str, count: int, tmp_path: Path) -> int:
    """Run a batch in a fresh process that SIGKILLs itself at ``kill_point`` the ``count``th
    time: 'generate' (mid-diffusion, before anything is written) or 'commit' (right after an
    output .blend is renamed into place, before its manifest line)."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from sd_depth_texture.cli import main as cli
        from sd_depth_texture.batch import worker
        from sd_depth_texture.core.diffusion import generate

        calls = [0]

        def dying(original):
            def wrapper(*args, **kwargs):
                result = original(*args, **kwargs) if {kill_point!r} == "commit" else None
                calls[0] += 1
                if calls[0] == {count}:
                    os.kill(os.getpid(), signal.SIGKILL)
                return result if {kill_point!r} == "commit" else original(*args, **kwargs)
            return wrapper

        if {kill_point!r} == "commit":
            worker.FileWorker._commit = dying(worker.FileWorker._commit)
        else:
            generate.generate = dying(generate.generate)
        sys.exit(cli.main({argv!r}))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    process = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, timeout=300
    )
    return process.returncode


@pytest.mark.parametrize("kill_point", ["generate", "commit"])
def test_a_killed_batch_resumes_losing_at_most_the_asset_in_flight(
    kill_point, reference, library, tiny_model_dir, tmp_path
):
    out = tmp_path / "out"
    argv = batch_argv(library, out, tiny_model_dir)
    assert _run_killed(argv, kill_point, 3, tmp_path) == -signal.SIGKILL
    before = done_lines(out)
    assert len(before) == 2  # the first two assets are recorded; the third was in flight
    assert not list(out.rglob(".*partial*"))  # no half-written file under its real name

    assert cli.main(argv) == 1
    records = manifest_lines(out)
    done = done_lines(out)
    assert sorted(done) == DONE_ASSETS and set(done.values()) == {1}  # nothing done twice
    recovered = [r["key"] for r in records if r.get("recovered")]
    # Killed after the rename: the third asset is in the output and is reported, not redone.
    assert recovered == (["furniture/tables.blend::Table"] if kill_point == "commit" else [])
    assert texture_pixels(out) == reference["pixels"]


def test_prompts_file_and_in_place_with_backups(library, tiny_model_dir, tmp_path):
    import shutil

    sources = tmp_path / "library"
    shutil.copytree(library / "furniture", sources / "furniture")
    shutil.copy(library / CATALOG_FILE, sources)
    originals = folder_fingerprint(sources)
    prompts = tmp_path / "prompts.toml"
    prompts.write_text(
        '"furniture/tables.blend" = "a marble table"\n'
        '["furniture/chairs.blend::Chair"]\nprompt = "an oak chair"\nnegative_prompt = "blur"\n',
        encoding="utf-8",
    )
    out = tmp_path / "out"
    argv = ["batch", str(sources), "--out", str(out), "--model", str(tiny_model_dir),
            "--prompts", str(prompts), "--prompt", "a thing", "--in-place", *FAST]  # fmt: skip
    assert cli.main(argv) == 1  # Flat has no faces
    last = records.Manifest(str(out / records.MANIFEST_NAME)).read()
    assert last["furniture/chairs.blend::Chair"]["prompt"] == "an oak chair"
    assert last["furniture/chairs.blend::Chair"]["negative_prompt"] == "blur"
    assert last["furniture/chairs.blend::Stool"]["prompt"] == "a thing"
    assert last["furniture/tables.blend::Table"]["prompt"] == "a marble table"
    # The sources were written, each after a backup of its untouched self.
    backups = folder_fingerprint(out / "backups")
    for name in ("furniture/chairs.blend", "furniture/tables.blend"):
        assert backups[name] == originals[name]
        assert folder_fingerprint(sources)[name] != originals[name]
    assert (sources / "furniture" / "textures" / "chairs" / "Chair_SD_Texture.png").is_file()
    bpy.ops.wm.open_mainfile(filepath=str(sources / "furniture" / "chairs.blend"))
    image = bpy.data.objects["Chair"].material_slots[0].material.node_tree.nodes["SD Texture"]
    assert image.image.filepath == "//textures/chairs/Chair_SD_Texture.png"
    # A rerun finds everything done in the sources themselves.
    written = folder_fingerprint(sources)
    assert cli.main(argv) == 1
    assert folder_fingerprint(sources) == written


def test_all_meshes_from_the_files_camera(library, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    chairs = library / "furniture" / "chairs.blend"
    argv = batch_argv(chairs, out, tiny_model_dir, "--all-meshes", "--camera", "Cam", "--seed", "5")
    assert cli.main([*argv, "--contact-sheet", "md"]) == 0
    sheet = (out / "contact_sheet.md").read_text(encoding="utf-8")
    assert "| ![Floor](previews/chairs/Floor.png) | Floor | chairs.blend | a Floor, photo" in sheet
    last = records.Manifest(str(out / records.MANIFEST_NAME)).read()
    assert sorted(last) == ["chairs.blend::Chair", "chairs.blend::Floor", "chairs.blend::Stool"]
    assert last["chairs.blend::Floor"]["prompt"] == "a Floor, photorealistic"
    assert last["chairs.blend::Chair"]["seed"] == prompts.derive_seed(5, "chairs.blend", "Chair")
    assert (out / "textures" / "chairs" / "Floor_SD_Texture.png").is_file()

    assert cli.main(batch_argv(library, tmp_path / "out2", tiny_model_dir, "--camera", "Cam")) == 1
    last = records.Manifest(str(tmp_path / "out2" / records.MANIFEST_NAME)).read()
    assert last["props/misc.blend::Vase"]["error"] == "There is no camera named 'Cam' in the file."
    assert last["furniture/chairs.blend::Chair"]["status"] == "done"


def test_texture_options_apply_per_asset_whole_object_views(
    reference, library, tiny_model_dir, tmp_path
):
    """--views N paints each asset all around (its own orbit), like ``texture --views N``."""
    out = tmp_path / "out"
    argv = batch_argv(library / "props" / "misc.blend", out, tiny_model_dir, "--views", "4")
    assert cli.main(argv) == 0
    last = records.Manifest(str(out / records.MANIFEST_NAME)).read()
    single = {r["key"]: r for r in reference["manifest"]}
    for asset in ("Crate", "Vase"):
        record = last[f"misc.blend::{asset}"]
        labels = [view["label"] for view in record["report"][0]["views"]]
        assert labels[:3] == ["front", "back", "top"]  # a ring of 2, then top (and bottom)
        assert record["coverage"] > single[f"props/misc.blend::{asset}"]["coverage"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "Say what to paint"),
        (["--prompt", "x", "--prompt-template", "{name}"], "not both"),
        (["--prompt-template", "a {colour} thing"], "{colour}"),
        (["--prompt", "x", "--steps", "0"], "--steps must be an integer from 1 to 150"),
        (["--prompt", "x", "--resolution", "60"], "--resolution must be an integer from 64"),
        # What ``texture`` refuses, the batch refuses with the same line (one builder).
        (["--prompt", "x", "--texture-size", "9000"], "--texture-size must be an integer from"),
        (["--prompt", "x", "--views", "30"], "--views must be an integer from 1 to 26, got 30"),
        (["--prompt", "x", "--margin", "500"], "--margin must be an integer from 0 to 64"),
        (["--prompt", "x", "--preview-size", "0"], "--preview-size must be an integer from 16"),
        (["--prompt", "x", "--cpu-threads", "100000"], "--cpu-threads must be an integer from"),
        (["--prompts", "missing.csv"], "no prompts file"),
        (["--prompt", "x", "--provenance", "off"], "--provenance must be one of full, minimal"),
        (["--prompt", "x", "--c2pa-key", "k.pem"], "A key was given without its certificate"),
        (["--prompt", "x", "--c2pa-cert", "c.pem", "--c2pa-key", "k.pem"], "cannot be read"),
    ],
)
def test_bad_options_stop_before_any_work(extra, message, library, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["batch", str(library), "--out", str(out), "--model", "random", *extra])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (out / records.MANIFEST_NAME).exists()


def test_sources_that_are_not_there_or_would_be_overwritten(library, tmp_path, capsys):
    assert cli.main(["batch", str(tmp_path / "nope"), "--out", str(tmp_path), "--prompt", "x"]) == 1
    assert "is not a folder, a .blend file or an asset library" in capsys.readouterr().err
    folder = library / "props"
    assert cli.main(["batch", str(folder), "--out", str(folder), "--prompt", "x"]) == 1
    assert "--out would overwrite the source" in capsys.readouterr().err


def test_every_manifest_line_carries_the_run_record_and_the_sheet_names_the_model(
    reference, tiny_model_dir
):
    """The record the flow built reaches the batch: each done line holds it (what its prompt
    and seed really were per view, the model as loaded), and ``model_loaded`` is read from it."""
    done = [r for r in reference["manifest"] if r["status"] == "done"]
    assert done
    for line in done:
        record = line["record"]
        assert record["origin"] == "generated" and record["model"]["source"] == str(tiny_model_dir)
        assert line["model_loaded"] is record["model"]["loaded"]
        (view,) = record["views"]  # one view, framed on the asset
        assert view["prompt"] == f"{line['prompt']}, front view"  # as sent: the view's words
        assert view["seed"] == line["seed"]
        assert view["targets"] == [line["asset"]]
    assert sum(line["model_loaded"] for line in done) == 1
    # Each texture is signed the same way as a single run's, and its line says by what.
    for line in done:
        assert line["c2pa"]["status"] == "signed" and line["c2pa"]["certificate"] == "installation"
        for texture in line["textures"].values():
            with c2pa.Reader(texture) as reader:
                store = json.loads(reader.json())
            codes = [status["code"] for status in store["validation_status"]]
            assert codes == ["signingCredential.untrusted"]
            manifest = store["manifests"][store["active_manifest"]]
            assert manifest["signature_info"]["cert_serial_number"] == line["c2pa"]["serial"]
            labels = {a["label"]: a["data"] for a in manifest["assertions"]}
            assert labels["org.sd_depth_texture.record"] == line["record"]
    sheet = (reference["out"] / "contact_sheet.html").read_text(encoding="utf-8")
    assert f"{tiny_model_dir} (licence not stated)" in sheet
