"""The batch's pure parts, no Blender: prompts, seeds, manifest, plans, outputs, contact sheet.

Real files in temporary folders; the .blend files here are never opened (only their names and
places matter), so nothing needs ``bpy``, and a test checks that none of these modules loads it.
"""

from __future__ import annotations

import hashlib
import io

import pytest

from sd_depth_texture.batch import plan, prompts, records, report
from sd_depth_texture.core.errors import TextureError


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
