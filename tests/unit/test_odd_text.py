"""Names and prompts no one would type: escape sequences, line breaks, bytes that are not UTF-8,
NUL bytes, huge format widths, '::' inside names. Pure parts of the batch and the text helper;
each refusal is one line, and nothing is printed or written raw."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from sd_depth_texture.batch import prompts, records, report
from sd_depth_texture.core.errors import TextureError
from sd_depth_texture.core.validation import check_settings
from sd_depth_texture.messages import CLI, word

FORGED = "Chair\n\x1b[2J\x1b[31merror: your disk is full\x1b[0m\r"
NOT_UTF8 = b"caf\xe9".decode("utf-8", "surrogateescape")  # as Python gives argv and file names


def _one_line(text: str) -> None:
    assert "\n" not in text and "\r" not in text and "\x1b" not in text, text


# --------------------------------------------------------------------------------------------
# The one escaping helper
# --------------------------------------------------------------------------------------------


def test_shown_escapes_controls_separators_and_undecodable_bytes_only():
    from sd_depth_texture.core.text import shown

    assert shown("Chair.001 ü 椅子") == "Chair.001 ü 椅子"
    assert shown(FORGED) == "Chair\\n\\x1b[2J\\x1b[31merror: your disk is full\\x1b[0m\\r"
    assert shown(NOT_UTF8) == "caf\\xe9"
    assert shown("a\u2028b\u202ec\x00\x9b") == "a\\u2028b\\u202ec\\x00\\x9b"
    assert shown(shown(FORGED)) == shown(FORGED)  # escaping twice changes nothing more
    shown(NOT_UTF8).encode("utf-8")  # always writable as UTF-8


def test_a_texture_error_is_one_line_whatever_the_name_it_quotes():
    error = TextureError(f"'{FORGED}' was renamed or deleted while its texture was made.")
    _one_line(str(error))
    assert "\\x1b[2J" in str(error)


# --------------------------------------------------------------------------------------------
# Templates: bounded and linear
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("template", ["{name:99999999}", "a {name:>20000} chair", "{name:.{tags}}"])
def test_a_template_that_would_expand_past_the_limit_is_one_line(template):
    with pytest.raises(TextureError) as caught:
        prompts.prompt_source({"prompt_template": template})
    message = str(caught.value)
    _one_line(message)
    assert "{name:" in message
    if "tags" not in template:
        assert str(prompts.MAX_PROMPT_CHARACTERS) in message


def test_a_filled_template_longer_than_the_limit_names_the_asset_and_the_limit():
    source = prompts.prompt_source({"prompt_template": "a {name}, {description}"})
    info = records.AssetInfo(name="Chair", description="oak " * 5000)
    file = records.SourceFile(path="/lib/f.blend", relpath="f.blend", root="/lib")
    with pytest.raises(TextureError, match=r"'f\.blend::Chair' has 20\d\d\d characters.*10000"):
        source.job(info, file, {}, {})


def test_tidying_a_prompt_is_linear_in_runs_of_spaces():
    assert prompts.tidy_prompt("a chair, , ,\t photo , ") == "a chair, photo"
    assert prompts.tidy_prompt(" ,a  ,b,, ,") == "a ,b"
    text = "a" + " " * 120_000 + "b" + " ," * 30_000
    started = time.perf_counter()
    assert prompts.tidy_prompt(text) == "a b"
    # The quadratic clean-up took tens of seconds here; the linear one takes milliseconds.
    assert time.perf_counter() - started < 3.0


# --------------------------------------------------------------------------------------------
# Prompts that are not text the model can read
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        ({"prompt": f"a {NOT_UTF8} table"}, "--prompt"),
        ({"prompt": "a table", "negative_prompt": NOT_UTF8}, "--negative-prompt"),
        ({"prompt_template": f"a {{name}} {NOT_UTF8}"}, "--prompt-template"),
    ],
)
def test_a_command_line_prompt_that_is_not_utf8_is_one_line(options, flag):
    """The prompts by the one validation every door runs, the template by the batch's own."""
    with pytest.raises(TextureError) as caught:
        check_settings(options)
        prompts.prompt_source(options)
    message = word(caught.value, CLI)
    _one_line(message)
    assert message.startswith(flag) and "not valid UTF-8" in message and "\\xe9" in message
    message.encode("utf-8")


def test_a_template_filled_with_metadata_that_is_not_utf8_names_the_asset():
    source = prompts.prompt_source({"prompt_template": "a {name}, {description}"})
    info = records.AssetInfo(name="Chair", description=f"made in {NOT_UTF8}")
    file = records.SourceFile(path="/lib/f.blend", relpath="f.blend", root="/lib")
    with pytest.raises(TextureError, match=r"'f\.blend::Chair' is not valid UTF-8 text"):
        source.job(info, file, {}, {})


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("p.csv", "key,prompt\nChair,an oak\x00 chair\n", r"csv:2: the prompt of 'Chair' holds"),
        ("p.csv", "key,prompt,negative_prompt\nChair,oak,\x00\n", r"csv:2: the negative prompt"),
        ("p.toml", 'Chair = "an oak\\u0000 chair"\n', r"toml: the prompt of 'Chair' holds"),
        ("p.csv", "key,prompt,prompt\nChair,oak,pine\n", r"csv:1: the column 'prompt' appears"),
        ("p.csv", "key,prompt\n", r"p\.csv: the file has a header and no prompts"),
        ("p.csv", "key,prompt\n , \n", r"p\.csv: the file has a header and no prompts"),
        ("p.toml", "# nothing yet\n", r"p\.toml: the file holds no prompts"),
    ],
)  # fmt: skip
def test_prompt_tables_refuse_nul_bytes_doubled_columns_and_no_rows(
    tmp_path, name, content, message
):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TextureError, match=message) as caught:
        prompts.PromptTable.load(str(path))
    _one_line(str(caught.value))


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------


def test_asset_keys_never_collide_through_the_separator():
    pairs = [
        ("a.blend", "x.blend::y"),
        ("a.blend::x.blend", "y"),
        ("a.blend", "::y"),
        ("a:.blend", ":y"),
        ("a%3A%3Ax.blend", "y"),
        ("a::x.blend", "y"),
    ]
    keys = [records.asset_key(file, asset) for file, asset in pairs]
    assert len(set(keys)) == len(keys), keys
    files = [file for file, _ in pairs]
    file_keys = [records.file_key(file) for file in files]
    assert not set(file_keys) & set(keys)  # an unreadable file's key is no asset's key
    # Plain names keep the keys earlier manifests hold.
    assert records.asset_key("furniture/chairs.blend", "Chair") == "furniture/chairs.blend::Chair"
    assert records.file_key("furniture/chairs.blend") == "furniture/chairs.blend"


def test_a_manifest_keyed_the_old_way_is_read_under_unambiguous_keys(tmp_path):
    manifest = records.Manifest(str(tmp_path / "manifest.jsonl"))
    # Two assets an older version recorded under one key: the second hid the first.
    for file, asset, status in (
        ("a.blend", "x.blend::y", "done"),
        ("a.blend::x.blend", "y", "failed"),
    ):
        manifest.append({"key": f"{file}::{asset}", "file": file, "asset": asset, "status": status})
    manifest.append(
        {"key": "b.blend::Chair", "file": "b.blend", "asset": "Chair", "status": "done"}
    )
    last = manifest.read()
    assert last[records.asset_key("a.blend", "x.blend::y")]["status"] == "done"
    assert last[records.asset_key("a.blend::x.blend", "y")]["status"] == "failed"
    assert last["b.blend::Chair"]["status"] == "done"  # an ordinary key is as it was


# --------------------------------------------------------------------------------------------
# What a batch prints and writes
# --------------------------------------------------------------------------------------------


def _records_with_odd_names() -> dict[str, dict]:
    return {
        records.asset_key("f.blend", FORGED): {
            "key": records.asset_key("f.blend", FORGED), "file": "f.blend", "asset": FORGED,
            "status": "failed", "prompt": f"a {NOT_UTF8} chair", "seed": 1,
            "error": f"'{FORGED}' is not a mesh",
        },
        f"{NOT_UTF8}.blend::Box": {
            "key": f"{NOT_UTF8}.blend::Box", "file": f"{NOT_UTF8}.blend", "asset": "Box",
            "status": "done", "prompt": "a box\x00", "seed": 2,
        },
    }  # fmt: skip


def test_the_progress_line_and_summary_escape_names():
    stream = io.StringIO()
    progress = report.ProgressLine(2, stream=stream)
    progress.start(records.asset_key("f.blend", FORGED))
    progress.finish({"status": "failed"})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "\x1b" not in stream.getvalue() and "\r" not in stream.getvalue()
    last = _records_with_odd_names()
    summary = report.summarize(list(last), last, [], 1.0)
    text = summary.text(f"/out/{NOT_UTF8}/manifest.jsonl", None, [f"catalog {FORGED}"])
    assert len(text.splitlines()) == 4  # the summary, one failure, one warning, the manifest
    assert "\x1b" not in text and "\r" not in text and "\\xe9" in text
    assert not any(line.startswith("error:") for line in text.splitlines())
    text.encode("utf-8")


@pytest.mark.parametrize("sheet", ["sheet.md", "sheet.html"])
def test_contact_sheets_with_odd_names_are_written_whole(tmp_path, sheet):
    last = _records_with_odd_names()
    summary = report.summarize(list(last), last, [], 1.0)
    path = Path(report.write_contact_sheet(str(tmp_path / sheet), list(last), last, summary))
    text = path.read_text(encoding="utf-8")
    assert "\x1b" not in text and "\x00" not in text and "\ufffd" not in text
    assert "x1b" in text and "cafxe9" in text.replace("\\", "")
    assert [p.name for p in tmp_path.iterdir()] == [sheet]  # no partial file left behind
    if sheet.endswith(".md"):
        assert len([line for line in text.splitlines() if line.startswith("| ")]) == 3


def test_a_contact_sheet_that_cannot_be_written_leaves_no_partial_file(tmp_path):
    last = _records_with_odd_names()
    summary = report.summarize(list(last), last, [], 1.0)
    (tmp_path / "sheet.html").mkdir()  # os.replace onto a folder fails
    with pytest.raises(TextureError, match=r"Cannot write the contact sheet .*: Is a directory"):
        report.write_contact_sheet(str(tmp_path / "sheet.html"), list(last), last, summary)
    assert [p.name for p in tmp_path.iterdir()] == ["sheet.html"]


def test_batch_files_of_names_as_long_as_blender_allows_fit_the_file_system():
    from sd_depth_texture.batch import outputs

    task = records.FileTask(
        file="f.blend", source="/lib/f.blend", output="/out/f.blend",
        texture_dir="/out/textures/f", preview_dir="/out/previews/f", backup=None, jobs=(),
    )  # fmt: skip
    names = ["€" * 84 + "a", "€" * 84 + "b", "x" * 255, "ü" * 127, "A.B" * 85]
    # Textures are named by the flow's one rule (its test is in the Blender tests).
    paths = [outputs.preview_path(task, name) for name in names]
    longest = 255 - len("..partial")  # a preview's temporary name is this much longer
    assert all(len(Path(path).name.encode("utf-8")) <= longest for path in paths)
    assert len(set(paths)) == len(paths)  # names that share their start stay apart
    assert outputs.asset_file_name("€" * 84 + "a") == outputs.asset_file_name("€" * 84 + "a")
    assert outputs.asset_file_name("Chair") == "Chair"


def test_a_failed_asset_is_logged_on_one_line(tmp_path, caplog):
    from sd_depth_texture.batch import runners

    sink = runners.Sink(
        records.Manifest(str(tmp_path / "manifest.jsonl")),
        report.ProgressLine(1, stream=io.StringIO()),
    )
    record = _records_with_odd_names()[records.asset_key("f.blend", FORGED)]
    with caplog.at_level("WARNING"):
        sink.finished(record)
    message = caplog.records[-1].getMessage()
    assert "\n" not in message and "\x1b" not in message and "Chair\\n\\x1b[2J" in message


def test_the_command_lines_progress_line_escapes_what_it_shows():
    from sd_depth_texture.cli.terminal import TerminalLine

    stream = io.StringIO()
    TerminalLine(stream).show(0.5, f"View 1/2 ({FORGED}): Step 1/2")
    shown_text = stream.getvalue()
    assert "\x1b" not in shown_text and "\n" not in shown_text
    assert shown_text.count("\r") == 1  # only the one that rewrites the line


@pytest.mark.parametrize("template", ["a {name:,}", "{name:d}", "{name!x}", "{name:=10}"])
def test_a_template_format_text_cannot_take_is_one_line_before_any_work(template):
    with pytest.raises(TextureError, match="The prompt template is malformed") as caught:
        prompts.prompt_source({"prompt_template": template})
    _one_line(str(caught.value))
