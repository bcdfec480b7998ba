"""The batch's pure parts, no Blender: prompts, seeds, manifest, plans, outputs, contact sheet.

Real files in temporary folders; the .blend files here are never opened (only their names and
places matter), so nothing needs ``bpy``, and a test checks that none of these modules loads it.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

from sd_depth_texture.batch import outputs, plan, prompts, records, report, sources
from sd_depth_texture.core.errors import TextureError

UUID = "0a0b0c0d-0000-4000-8000-000000000009"


def test_prompt_files_csv_and_toml(tmp_path):
    csv_path = tmp_path / "prompts.csv"
    csv_path.write_text(
        "asset,prompt,negative_prompt,seed\n"
        "furniture/chairs.blend::Chair,an oak chair,blurry,7\n"
        "Table,a marble table,,\n"
        "props/misc.blend,a prop,cartoon,\n",
        encoding="utf-8",
    )
    table = prompts.PromptTable.load(str(csv_path))
    assert table.lookup("furniture/chairs.blend", "Chair") == prompts.PromptEntry(
        "an oak chair", "blurry", 7
    )
    assert table.lookup("furniture/tables.blend", "Table").prompt == "a marble table"
    assert table.lookup("props/misc.blend", "Vase").negative_prompt == "cartoon"
    assert table.lookup("furniture/chairs.blend", "Stool") is None

    toml_path = tmp_path / "prompts.toml"
    toml_path.write_text(
        '"*" = "a generic prop"\nVase = "a blue vase"\n'
        '["furniture/chairs.blend::Chair"]\nprompt = "an oak chair"\nseed = 3\n',
        encoding="utf-8",
    )
    table = prompts.PromptTable.load(str(toml_path))
    assert table.lookup("props/misc.blend", "Vase").prompt == "a blue vase"
    assert table.lookup("furniture/chairs.blend", "Chair").seed == 3
    assert table.lookup("x.blend", "Anything").prompt == "a generic prop"

    (tmp_path / "bad.csv").write_text("name,text\nChair,x\n", encoding="utf-8")
    with pytest.raises(TextureError, match="header"):
        prompts.PromptTable.load(str(tmp_path / "bad.csv"))
    (tmp_path / "bad.toml").write_text('[Chair]\nprompt = "x"\ncolour = "red"\n')
    with pytest.raises(TextureError, match="unknown fields"):
        prompts.PromptTable.load(str(tmp_path / "bad.toml"))
    with pytest.raises(TextureError, match=r"\.csv or \.toml"):
        prompts.PromptTable.load(str(csv_path.rename(tmp_path / "prompts.txt")))


def test_seeds_depend_on_identity_only():
    seed = prompts.derive_seed(0, "furniture/chairs.blend", "Chair")
    # Pinned: the same asset gets the same seed on any machine, in any run, in any order.
    expected = hashlib.sha256(b"0\x00furniture/chairs.blend\x00Chair").digest()[:4]
    assert seed == int.from_bytes(expected, "big") % 2**31  # the seed range Blender can hold
    assert seed != prompts.derive_seed(1, "furniture/chairs.blend", "Chair")
    assert seed != prompts.derive_seed(0, "furniture/chairs.blend", "Stool")
    assert seed != prompts.derive_seed(0, "other/chairs.blend", "Chair")
    assert 0 <= seed < 2**32


def test_manifest_survives_a_cut_line_and_decides_resumes(tmp_path):
    manifest = records.Manifest(str(tmp_path / "m.jsonl"))
    manifest.append({"key": "a", "status": "done", "request": "r1"})
    manifest.append({"key": "b", "status": "failed", "request": "r1"})
    with open(manifest.path, "a", encoding="utf-8") as stream:
        stream.write('{"key": "c", "stat')  # killed mid-write
    manifest.append({"key": "b", "status": "done", "request": "r1"})
    last = manifest.read()
    assert set(last) == {"a", "b"} and last["b"]["status"] == "done"
    assert len(manifest.records()) == 3

    job = records.AssetJob("a", "f", "a", "p", "", 1, "r1")
    assert plan.decide(job, None, False, False) == plan.RUN
    assert plan.decide(job, last["a"], True, False) == plan.SKIP_DONE
    assert plan.decide(job, last["a"], False, False) == plan.RUN  # output gone: redo
    failed = {"status": "failed", "request": "r1"}
    assert plan.decide(job, failed, True, False) == plan.SKIP_FAILED
    assert plan.decide(job, failed, True, True) == plan.RUN
    assert plan.decide(job, {**failed, "request": "r0"}, True, False) == plan.RUN
    assert plan.decide(job, {"status": "done", "request": "r0"}, True, False) == plan.CHANGED


def test_progress_line_has_an_eta():
    now = [100.0]
    stream = io.StringIO()
    progress = report.ProgressLine(10, done=2, failed=1, stream=stream, clock=lambda: now[0])
    assert "3/10 assets, 1 failed, ETA --" in progress.line()
    now[0] += 20.0
    progress.finish({"status": "done"})
    now[0] += 20.0
    progress.finish({"status": "failed"})
    # 2 assets in 40 s this run, 5 left: 100 s.
    assert "5/10 assets, 2 failed, ETA 1m40s" in progress.line()
    assert stream.getvalue().count("\n") == 2  # not a terminal: one line per update


# --------------------------------------------------------------------------------------------
# The package's boundary
# --------------------------------------------------------------------------------------------

PURE_MODULES = ("records", "sources", "prompts", "outputs", "plan", "report", "runners")


def test_only_the_worker_loads_blender_and_nothing_imports_the_command_line():
    """The decisions of a batch load without Blender; no batch module reaches for ``cli``."""
    modules = ", ".join(f"sd_depth_texture.batch.{name}" for name in PURE_MODULES)
    check = f"import sys, {modules}; print('bpy' in sys.modules, 'torch' in sys.modules)"
    loaded = subprocess.run(
        [sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.split() == ["False", "False"]

    package = REPO / "sd_depth_texture" / "batch"
    users_of_bpy = set()
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
                names += [f"{names[0]}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            assert not any(n.startswith(("..cli", "sd_depth_texture.cli")) for n in names), path
            if any(n.split(".")[0] == "bpy" for n in names):
                users_of_bpy.add(path.name)
    assert users_of_bpy == {"worker.py"}
    assert (package / "README.md").read_text().strip().endswith("only worker.py uses bpy.")


# --------------------------------------------------------------------------------------------
# Prompt tables refuse what they cannot read as meant
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # An unclosed quote would swallow every row after it into one prompt.
        (
            'key,prompt\nChair,"an oak chair\nTable,a marble table\nVase,a vase\n',
            r"prompts.csv:2: a quoted field is never closed",
        ),
        ("key,prompt,seed\nChair,an oak chair,1.5\n", r"prompts.csv:2: the seed of 'Chair'"),
        ("key,prompt,seed\nChair,an oak chair,7\nTable,x,seven\n", r"csv:3: the seed of 'Table'"),
        ("key,prompt,seed\nChair,x,-1\n", r"seed of 'Chair' must be an integer from 0 to"),
        ("key,prompt,seed\nChair,x,2147483648\n", r"got '2147483648'"),
        ("key,prompt\nChair,an oak, chair\n", r"prompts.csv:2: 3 fields for 2 columns"),
    ],
)
def test_a_malformed_csv_row_is_one_line_naming_it(tmp_path, text, message):
    path = tmp_path / "prompts.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TextureError, match=message) as caught:
        prompts.PromptTable.load(str(path))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[Chair]\nprompt = "x"\nseed = 1.5\n', r"the seed of 'Chair' must be an integer .* 1\.5"),
        ('[Chair]\nprompt = "x"\nseed = true\n', r"the seed of 'Chair' .* got True"),
        ('[Chair]\nprompt = "x"\nseed = -3\n', r"the seed of 'Chair' .* got -3"),
        ('[Chair]\nprompt = "x"\nseed = 4294967295\n', r"the seed of 'Chair'"),
        ('[Chair.prompt]\ncolour = "red"\n', r"the prompt of 'Chair' must be text, not a table"),
        ("[Chair]\nprompt = 3\n", r"the prompt of 'Chair' must be text, not int 3"),
        ('[Chair]\nprompt = "x"\nnegative_prompt = ["a"]\n', r"negative prompt of 'Chair'"),
        ('Chair = "x"\nChair = "y"\n', r"not valid TOML"),
    ],
)
def test_a_toml_value_of_the_wrong_kind_is_one_line_naming_its_key(tmp_path, text, message):
    path = tmp_path / "prompts.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TextureError, match=message) as caught:
        prompts.PromptTable.load(str(path))
    assert "\n" not in str(caught.value)


def test_pinned_seeds_in_range_and_quoted_newlines_are_kept(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text(
        'key,prompt,seed\nChair,"an oak chair,\nwaxed", 2147483647 \nTable,a table,0\n',
        encoding="utf-8",
    )
    table = prompts.PromptTable.load(str(path))
    assert table.lookup("f.blend", "Chair") == prompts.PromptEntry(
        "an oak chair,\nwaxed", None, 2147483647
    )
    assert table.lookup("f.blend", "Table").seed == 0
    toml = tmp_path / "prompts.toml"
    toml.write_text('[Chair]\nprompt = "x"\nseed = 2147483647\n', encoding="utf-8")
    assert prompts.PromptTable.load(str(toml)).lookup("f.blend", "Chair").seed == 2147483647
    (tmp_path / "latin1.csv").write_bytes("key,prompt\nChair,caf\xe9\n".encode("latin-1"))
    with pytest.raises(TextureError, match=r"latin1.csv' is not UTF-8 text"):
        prompts.PromptTable.load(str(tmp_path / "latin1.csv"))


# --------------------------------------------------------------------------------------------
# Sources: links and catalogs
# --------------------------------------------------------------------------------------------


def test_a_linked_blend_is_named_after_the_link_unless_its_target_is_there_too(tmp_path):
    library, elsewhere = tmp_path / "library", tmp_path / "elsewhere"
    (library / "props").mkdir(parents=True)
    (library / "aliases").mkdir()
    elsewhere.mkdir()
    (library / "props" / "misc.blend").write_bytes(b"")
    (elsewhere / "crates_v3.blend").write_bytes(b"")
    (library / "aliases" / "crates.blend").symlink_to(elsewhere / "crates_v3.blend")
    (library / "aliases" / "misc_again.blend").symlink_to(library / "props" / "misc.blend")
    (library / "aliases" / "gone.blend").symlink_to(elsewhere / "deleted.blend")
    (library / "aliases" / sources.CATALOG_FILE).write_text(f"VERSION 1\n{UUID}:Props/Crates:x\n")

    found = sources.resolve_sources([str(library)], {})
    # The link's path is what the library shows; a link to a file the library already holds
    # adds nothing; a dangling link is skipped.
    assert [(f.relpath, f.path) for f in found] == [
        ("aliases/crates.blend", str((elsewhere / "crates_v3.blend").resolve())),
        ("props/misc.blend", str((library / "props" / "misc.blend").resolve())),
    ]
    linked = found[0]
    assert linked.location == str((library / "aliases").resolve() / "crates.blend")
    # Catalogs and outputs follow the link's place, not the target's.
    assert sources.find_catalogs(linked) == {UUID: "Props/Crates"}
    paths = outputs.output_paths(linked, str(tmp_path / "out"), in_place=False)
    assert paths["output"] == str(tmp_path / "out" / "aliases" / "crates.blend")
    assert outputs.output_paths(linked, "x", in_place=True)["output"] == linked.path
    # Given directly, a link is named after itself too.
    direct = sources.resolve_sources([str(library / "aliases" / "crates.blend")], {})
    assert [f.relpath for f in direct] == ["crates.blend"]


def test_a_catalog_file_that_is_not_text_is_a_texture_error(tmp_path):
    binary = tmp_path / "binary.cats.txt"
    binary.write_bytes(b"VERSION 1\n" + bytes(range(256)))
    with pytest.raises(TextureError, match=r"binary.cats.txt' are not UTF-8 text"):
        sources.read_catalogs(str(binary))
    nul = tmp_path / "nul.cats.txt"
    nul.write_bytes(b"VERSION 1\x00\x00\x00")
    with pytest.raises(TextureError, match=r"nul.cats.txt' are not a text file"):
        sources.read_catalogs(str(nul))
    bom = tmp_path / "bom.cats.txt"
    bom.write_bytes(f"\ufeffVERSION 1\n{UUID}:A/B:A-B\n".encode())
    assert sources.read_catalogs(str(bom)) == {UUID: "A/B"}


# --------------------------------------------------------------------------------------------
# Manifest and destinations
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "accepted"),
    [
        (b"", True),
        (b'{"key": "a", "status": "done"}\n{"key": "b", "stat', True),  # killed mid-line
        (b'{"asset": "Cha', True),  # killed during the very first line
        (b"Notes for Monday:\n- texture the chairs\n", False),
        (b'{"name": "settings", "value": 1}\n', False),  # JSON, but no manifest record
        (b'{"key": "a", "status": "done"}\nwritten by hand\n', False),
        (b"\xff\xfe\x00n\x00o\x00t\x00e\x00s", False),
    ],
)
def test_a_manifest_that_is_not_one_is_refused_and_left_alone(tmp_path, content, accepted):
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(content)
    manifest = records.Manifest(str(path))
    if accepted:
        manifest.verify()
    else:
        with pytest.raises(TextureError, match="is not a batch manifest") as caught:
            manifest.verify()
        assert "\n" not in str(caught.value)
    assert path.read_bytes() == content
    with pytest.raises(TextureError, match="is a folder"):
        records.Manifest(str(tmp_path)).verify()


def _options(sources_: list, out, **extra) -> plan.BatchOptions:
    settings = {"sources": [str(s) for s in sources_], "out": str(out), "contact_sheet": "none"}
    return plan.BatchOptions.from_settings({**settings, **extra})


def test_destinations_refuse_outputs_on_sources(tmp_path):
    library = tmp_path / "library"
    (library / "sub").mkdir(parents=True)
    (library / "a.blend").write_bytes(b"")
    (library / "sub" / "a.blend").write_bytes(b"")
    before = sorted(tmp_path.rglob("*"))

    refusals = [
        (_options([library], library / "sub"), "--out would overwrite the source folder"),
        (_options([library], library), "--out would overwrite the source folder"),
        (_options([library / "sub"], library), "lies inside '"),
        # A file given alone, with its own folder as --out: written over itself.
        (_options([library / "a.blend"], library), "--out would overwrite the source '"),
        (
            _options([library / "sub"], tmp_path / "out", manifest=str(library / "sub" / "m")),
            "--manifest '",
        ),
        (_options([library], library / "a.blend"), "is a file, not a folder"),
        (_options([library], library / "a.blend" / "out"), "is a file, not a folder"),
    ]
    for options, message in refusals:
        with pytest.raises(TextureError, match=re.escape(message)):
            plan.check_destinations(options, {})
    assert sorted(tmp_path.rglob("*")) == before  # nothing was written

    # --in-place writes into the sources by design: --out may then lie among them.
    inside = plan.check_destinations(_options([library], library / "sub", in_place=True), {})
    assert inside.in_place and [s.relpath for s in inside.sources] == ["a.blend"]
    fine = plan.check_destinations(_options([library], tmp_path / "out"), {})
    assert fine.manifest.path == str(tmp_path / "out" / records.MANIFEST_NAME)
    assert fine.sheet is None  # no --contact-sheet in these options


# --------------------------------------------------------------------------------------------
# The lock on --out
# --------------------------------------------------------------------------------------------


def _lock_file(folder, host: str, pid: int) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / outputs.LOCK_NAME
    path.write_text(json.dumps({"host": host, "pid": pid, "started": "2026-01-01T00:00:00"}))
    return path.read_text()


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    out = tmp_path / "out"
    held = _lock_file(out, socket.gethostname(), os.getpid())  # this very process: alive
    with pytest.raises(TextureError, match=rf"{socket.gethostname()} pid {os.getpid()} since"):
        outputs.OutLock(str(out)).acquire()
    assert (out / outputs.LOCK_NAME).read_text() == held

    _lock_file(out, "render-node-7", 12)  # another machine: cannot be judged from here
    with pytest.raises(TextureError, match="render-node-7 pid 12"):
        outputs.OutLock(str(out)).acquire()

    (out / outputs.LOCK_NAME).write_text("")  # not a lock anyone can read
    with pytest.raises(TextureError, match="is not a batch lock"):
        outputs.OutLock(str(out)).acquire()

    dead = _dead_pid()
    _lock_file(out, socket.gethostname(), dead)
    with outputs.OutLock(str(out)) as lock:
        holder = json.loads((out / outputs.LOCK_NAME).read_text())
        assert (holder["host"], holder["pid"]) == (socket.gethostname(), os.getpid())
        with pytest.raises(TextureError, match="Another batch is writing to"):
            outputs.OutLock(str(out)).acquire()  # a second batch while this one holds it
        assert lock.content is not None
    assert sorted(p.name for p in out.iterdir()) == []  # released, nothing left beside it


def test_the_lock_removes_the_folders_it_made_when_nothing_was_written(tmp_path):
    out = tmp_path / "new" / "out"
    with outputs.OutLock(str(out)):
        assert (out / outputs.LOCK_NAME).is_file()
    assert not (tmp_path / "new").exists()
    with outputs.OutLock(str(out)):
        (out / "manifest.jsonl").write_text("")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.jsonl"]


# --------------------------------------------------------------------------------------------
# Files no batch wrote
# --------------------------------------------------------------------------------------------


def _task(out) -> records.FileTask:
    source = records.SourceFile(path="/library/a.blend", relpath="a.blend", root="/library")
    job = records.AssetJob("a.blend::Crate", "a.blend", "Crate", "p", "", 1, "r")
    return records.FileTask(
        file="a.blend", source=source.path, jobs=(job,),
        **outputs.output_paths(source, str(out), in_place=False),
    )  # fmt: skip


def test_existing_files_are_written_over_only_when_a_batch_record_names_them(tmp_path):
    task = _task(tmp_path)
    assert task.texture_dir == str(tmp_path / "textures" / "a")  # the flow names files there
    texture = outputs.preview_path(task, "Crate")  # a file the batch itself names
    preview = texture
    assert preview == str(tmp_path / "previews" / "a" / "Crate.png")
    os.makedirs(os.path.dirname(texture))
    Path(texture).write_bytes(b"someone's preview")

    def refuse(manifest_lines, in_file=None, sheet=None):
        outputs.refuse_foreign_files(
            [task], manifest_lines, lambda _path: in_file, False, sheet, report.is_contact_sheet
        )

    with pytest.raises(TextureError, match=re.escape(f"'{texture}' exists and was not written")):
        refuse([])
    refuse([{"key": "a.blend::Crate", "textures": {"Crate": texture}}])  # a batch's own
    Path(task.output).write_bytes(b"a user's .blend")
    with pytest.raises(TextureError, match="it has no batch record"):
        refuse([{"textures": {"Crate": texture}}])
    refuse([], in_file={"a.blend::Crate": {"textures": {"Crate": texture}, "preview": preview}})
    sheet = tmp_path / "contact_sheet.html"
    sheet.write_text("<html>my page</html>")
    with pytest.raises(TextureError, match=r"contact_sheet\.html' exists"):
        refuse([{"textures": {"Crate": texture}}], in_file={}, sheet=str(sheet))
    summary = report.summarize([], {}, [], 0.0)
    report.write_contact_sheet(str(sheet), [], {}, summary)
    refuse([{"textures": {"Crate": texture}}], in_file={}, sheet=str(sheet))


# --------------------------------------------------------------------------------------------
# Contact sheet
# --------------------------------------------------------------------------------------------


def test_contact_sheets_show_asset_text_and_never_run_it(tmp_path):
    hostile = "<img src=x onerror=alert(1)> [click](javascript:alert(2)) | *bold*"
    last = {
        "f.blend::Crate": {
            "key": "f.blend::Crate", "file": "f.blend", "asset": "Crate", "status": "done",
            "prompt": f"a crate, {hostile}", "seed": 3,
            "preview": str(tmp_path / "previews" / "my props" / "Crate.png"),
        },
        "f.blend::Box": {
            "key": "f.blend::Box", "file": "f.blend", "asset": "Box", "status": "failed",
            "prompt": "a box", "seed": 4, "error": "<script>alert(3)</script>",
        },
    }  # fmt: skip
    keys = list(last)
    summary = report.summarize(keys, last, [], 1.0)
    markdown = Path(report.write_contact_sheet(str(tmp_path / "sheet.md"), keys, last, summary))
    text = markdown.read_text(encoding="utf-8")
    assert "<img" not in text and "<script>" not in text
    assert not re.search(r"(?<!\\)\]\(javascript", text)  # no link, only its text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "\\[click\\](javascript:alert(2))" in text and "\\*bold\\*" in text
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in text
    # Each record is one row of seven cells: an escaped '|' splits nothing.
    rows = [line for line in text.splitlines() if line.startswith("| ![") or "Box" in line]
    assert [row.replace("\\|", "").count("|") for row in rows] == [8, 8]
    assert "![Crate](previews/my%20props/Crate.png)" in text
    assert report.is_contact_sheet(str(markdown))

    page = Path(report.write_contact_sheet(str(tmp_path / "sheet.html"), keys, last, summary))
    text = page.read_text(encoding="utf-8")
    assert "<img src=x" not in text and "<script>" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    assert 'src="previews/my%20props/Crate.png"' in text
    assert report.is_contact_sheet(str(page))
    assert not list(tmp_path.glob(".*partial"))


def test_assets_whose_names_clean_alike_get_files_of_their_own():
    from sd_depth_texture.batch.outputs import asset_file_name

    assert asset_file_name("Chair") == "Chair"  # a plain name stays as it is
    dotted, underscored = asset_file_name("A.B"), asset_file_name("A_B")
    assert underscored == "A_B" and dotted.startswith("A_B-") and dotted != underscored
    assert asset_file_name("A.B") == dotted  # stable across runs


def test_the_file_names_of_one_files_assets_are_unique_and_stable():
    from sd_depth_texture.batch.outputs import asset_file_name, asset_file_names

    tagged = asset_file_name("A.B")
    assets = ["Chair", "A.B", tagged, "A_B", "a_b"]
    names = asset_file_names(assets)
    assert len({name.lower() for name in names.values()}) == len(assets)
    assert names["Chair"] == "Chair" and names["A.B"] == tagged  # the usual names stay
    assert names[tagged] != tagged  # the literal one is tagged with its own hash
    assert asset_file_names(reversed(assets)) == names  # the same on every run
