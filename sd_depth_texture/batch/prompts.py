"""Each asset's prompt and seed: prompt tables (CSV, TOML), templates from asset metadata, seeds.

No bpy. A prompts file is checked whole when it is loaded: a malformed row, a seed that is not
an integer in the seed range or a prompt that is not text stops the batch before any work with
one line naming the row or key, rather than being quietly turned into something else.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import TextureError
from ..core.text import prompt_problem
from ..core.validation import MAX_PROMPT_CHARACTERS
from ..defaults import SEED
from .records import AssetInfo, AssetJob, SourceFile, asset_key, request_id

TEMPLATE_FIELDS = ("name", "description", "tags", "catalog", "catalog_name", "author", "file")
TABLE_FIELDS = ("prompt", "negative_prompt", "seed")
KEY_COLUMNS = ("key", "asset", "file")
INTEGER = re.compile(r"[+-]?\d+")
_NUMBERS = re.compile(r"\d+")
_COMMA_RUNS = re.compile(r" ?,(?: ?,)+")


# --------------------------------------------------------------------------------------------
# Templates and seeds
# --------------------------------------------------------------------------------------------


def template_fields(
    info: AssetInfo, source: SourceFile, catalogs: Mapping[str, str]
) -> dict[str, str]:
    catalog = catalogs.get(info.catalog_id.lower(), "") if info.catalog_id else ""
    return {
        "name": info.name,
        "description": info.description,
        "tags": ", ".join(info.tags),
        "catalog": catalog or info.catalog_name,
        "catalog_name": info.catalog_name or catalog.rpartition("/")[2],
        "author": info.author,
        "file": Path(source.relpath).stem,
    }


def check_prompt(text: str | None, what: str) -> None:
    """Refuse, in one line, a prompt the tokenizer and the records cannot take (bytes that are
    not UTF-8, a NUL); ``what`` names where it was written ("--prompt", a file's row)."""
    problem = prompt_problem(text or "")
    if problem:
        raise TextureError(f"{what} {problem}.")


def check_template(template: str) -> None:
    """Refuse a template with an unknown or malformed field, or a format width that would fill
    it past :data:`MAX_PROMPT_CHARACTERS`, before any work starts."""
    check_prompt(template, "--prompt-template")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as error:
        raise TextureError(f"The prompt template is malformed: {error}.") from error
    names = [name for _, name, _, _ in parts if name is not None]
    for _, name, spec, _ in parts:
        if spec and "{" in spec:
            raise TextureError(
                f"The prompt template's '{{{name}:{spec}}}' has a field inside its format: "
                "give plain widths only."
            )
        widths = [int(number) for number in _NUMBERS.findall(spec or "")]
        if widths and max(widths) > MAX_PROMPT_CHARACTERS:
            raise TextureError(
                f"The prompt template's '{{{name}:{spec}}}' asks for {max(widths)} characters; "
                f"a prompt holds at most {MAX_PROMPT_CHARACTERS}."
            )
    unknown = [name for name in names if name not in TEMPLATE_FIELDS]
    if unknown:
        raise TextureError(
            f"The prompt template uses '{{{unknown[0]}}}'; the fields are "
            + ", ".join("{" + name + "}" for name in TEMPLATE_FIELDS)
            + "."
        )
    try:  # a format or conversion text cannot take ('{name:d}', '{name!x}') fails every asset
        template.format_map(dict.fromkeys(TEMPLATE_FIELDS, ""))
    except ValueError as error:
        raise TextureError(f"The prompt template is malformed: {error}.") from error


def tidy_prompt(text: str) -> str:
    """Drop the empty items unfilled fields leave: 'a chair, , , photo' -> 'a chair, photo'.

    Linear in the text: whitespace is collapsed first, so no pattern scans a run of spaces
    again from each of its positions.
    """
    text = " ".join(text.split())
    return _COMMA_RUNS.sub(",", text).strip(" ,")


def fill_template(template: str, fields: Mapping[str, str], asset: str = "") -> str:
    """The template filled from an asset's fields and tidied; refused in one line when the
    metadata makes it unusable (bytes that are not UTF-8, a NUL) or longer than the limit."""
    check_template(template)
    prompt = tidy_prompt(template.format_map(dict(fields)))
    what = f"The prompt the template makes for '{asset}'" if asset else "The filled template"
    check_prompt(prompt, what)
    if len(prompt) > MAX_PROMPT_CHARACTERS:
        raise TextureError(
            f"{what} has {len(prompt)} characters; a prompt holds at most "
            f"{MAX_PROMPT_CHARACTERS} (shorten the template or the asset's description)."
        )
    return prompt


def derive_seed(base_seed: int, file: str, asset: str) -> int:
    """A seed in the seed range from the base seed and the asset's identity, never its position."""
    digest = hashlib.sha256(f"{base_seed}\x00{file}\x00{asset}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (int(SEED.high) + 1)


# --------------------------------------------------------------------------------------------
# Prompt tables
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptEntry:
    prompt: str = ""
    negative_prompt: str | None = None
    seed: int | None = None


class PromptTable:
    """Prompts from a CSV or TOML file, keyed by asset or file.

    Keys, most specific first: ``FILE::ASSET``, ``ASSET``, ``FILE`` (the file's path relative to
    its source folder) and ``*``. CSV: a header with ``key`` (or ``asset`` / ``file``), ``prompt``
    and optionally ``negative_prompt`` and ``seed``. TOML: ``KEY = "prompt"`` or a table
    ``[KEY]`` with ``prompt``, ``negative_prompt``, ``seed``.
    """

    def __init__(self, entries: Mapping[str, PromptEntry]) -> None:
        self.entries = dict(entries)

    @classmethod
    def load(cls, path: str) -> PromptTable:
        if not os.path.isfile(path):
            raise TextureError(f"There is no prompts file at '{path}'.")
        suffix = Path(path).suffix.lower()
        try:
            if suffix == ".csv":
                return cls(_csv_entries(path))
            if suffix == ".toml":
                return cls(_toml_entries(path))
        except OSError as error:
            raise TextureError(
                f"Cannot read the prompts file '{path}': {error.strerror}."
            ) from error
        except UnicodeDecodeError as error:
            raise TextureError(
                f"The prompts file '{path}' is not UTF-8 text (byte {error.start})."
            ) from error
        except tomllib.TOMLDecodeError as error:
            raise TextureError(f"The prompts file '{path}' is not valid TOML: {error}.") from error
        raise TextureError(f"The prompts file must be .csv or .toml, not '{path}'.")

    def lookup(self, file: str, asset: str) -> PromptEntry | None:
        for key in (asset_key(file, asset), asset, file, "*"):
            if key in self.entries:
                return self.entries[key]
        return None


def _text(value: Any, what: str, where: str, key: str) -> str | None:
    """A prompt or negative prompt: text, or nothing; a number or a table is a mistake."""
    if value is None:
        return None
    if not isinstance(value, str):
        kind = "a table" if isinstance(value, dict) else f"{type(value).__name__} {value!r}"
        raise TextureError(f"{where}: the {what} of '{key}' must be text, not {kind}.")
    return value


def _seed(value: Any, where: str, key: str) -> int | None:
    """A pinned seed: an integer (a TOML integer, or digits in CSV) in the seed range."""
    if value is None or value == "":
        return None
    problem = f"{where}: the seed of '{key}' must be {SEED.allowed()}, got {value!r}."
    if isinstance(value, str):
        if not INTEGER.fullmatch(value.strip()):
            raise TextureError(problem)
        value = int(value.strip())
    elif isinstance(value, bool) or not isinstance(value, int):
        raise TextureError(problem)  # 1.5 is no seed, and neither is true
    if SEED.accepted(value) is None:
        raise TextureError(problem)
    return int(value)


def _entry(key: str, prompt: Any, negative: Any, seed: Any, where: str) -> PromptEntry:
    if not key:
        raise TextureError(f"{where}: an entry has no key (asset or file).")
    negative_text = _text(negative, "negative prompt", where, key)
    check_prompt(_text(prompt, "prompt", where, key), f"{where}: the prompt of '{key}'")
    check_prompt(negative_text, f"{where}: the negative prompt of '{key}'")
    return PromptEntry(
        prompt=(_text(prompt, "prompt", where, key) or "").strip(),
        negative_prompt=negative_text or None,
        seed=_seed(seed, where, key),
    )


def _csv_entries(path: str) -> dict[str, PromptEntry]:
    with open(path, encoding="utf-8-sig", newline="") as stream:
        reader = csv.reader(stream, strict=True)
        rows: list[tuple[int, list[str]]] = []
        while True:
            start = reader.line_num + 1  # a quoted field may span lines: name the row's first
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as error:
                detail = (
                    "a quoted field is never closed (a missing '\"')"
                    if "end of data" in str(error)
                    else str(error)
                )
                raise TextureError(f"{path}:{start}: {detail}.") from error
            rows.append((start, row))
    if not rows:
        raise TextureError(f"{path}: the file is empty; it needs a header and a row per prompt.")
    columns = [name.strip().lower() for name in rows[0][1]]
    twice = next((name for name in columns if name and columns.count(name) > 1), None)
    if twice is not None:
        raise TextureError(f"{path}:{rows[0][0]}: the column '{twice}' appears twice.")
    key_column = next((c for c in KEY_COLUMNS if c in columns), None)
    if key_column is None or "prompt" not in columns:
        raise TextureError(
            f"{path}: the header needs a 'key' (or 'asset' / 'file') and a 'prompt' column."
        )
    if not any(any(cell.strip() for cell in row) for _, row in rows[1:]):
        raise TextureError(f"{path}: the file has a header and no prompts; add a row per prompt.")
    entries: dict[str, PromptEntry] = {}
    for line, row in rows[1:]:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(columns):
            raise TextureError(
                f"{path}:{line}: {len(row)} fields for {len(columns)} columns "
                "(an unquoted comma in a prompt?)."
            )
        cells = dict(zip(columns, row, strict=False))
        key = cells.get(key_column, "").strip()
        if key in entries:
            raise TextureError(f"{path}:{line}: '{key}' appears twice.")
        entries[key] = _entry(
            key,
            cells.get("prompt"),
            cells.get("negative_prompt"),
            cells.get("seed"),
            f"{path}:{line}",
        )
    return entries


def _toml_entries(path: str) -> dict[str, PromptEntry]:
    with open(path, "rb") as stream:
        data = tomllib.load(stream)
    entries = {}
    for key, value in data.items():
        if isinstance(value, str):
            entries[key] = _entry(key, value, None, None, path)
        elif isinstance(value, dict):
            unknown = set(value) - set(TABLE_FIELDS)
            if unknown:
                raise TextureError(f"{path}: '{key}' has unknown fields {sorted(unknown)}.")
            entries[key] = _entry(
                key, value.get("prompt"), value.get("negative_prompt"), value.get("seed"), path
            )
        else:
            raise TextureError(f"{path}: '{key}' must be a prompt string or a table.")
    if not entries:
        raise TextureError(f"{path}: the file holds no prompts.")
    return entries


# --------------------------------------------------------------------------------------------
# Each asset's prompt
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptSource:
    """Where each asset's prompt comes from: the prompts file, then the template, then --prompt."""

    prompt: str = ""
    template: str = ""
    negative_prompt: str = ""
    table: PromptTable | None = None
    base_seed: int = 0

    def job(
        self,
        info: AssetInfo,
        source: SourceFile,
        catalogs: Mapping[str, str],
        settings: Mapping[str, Any],
        notes: tuple[str, ...] = (),
    ) -> AssetJob:
        entry = self.table.lookup(source.relpath, info.name) if self.table else None
        if entry is not None and entry.prompt:
            prompt = entry.prompt
        elif self.template:
            fields = template_fields(info, source, catalogs)
            prompt = fill_template(self.template, fields, asset_key(source.relpath, info.name))
        else:
            prompt = self.prompt
        negative = self.negative_prompt
        if entry is not None and entry.negative_prompt is not None:
            negative = entry.negative_prompt
        seed = derive_seed(self.base_seed, source.relpath, info.name)
        if entry is not None and entry.seed is not None:
            seed = entry.seed
        return AssetJob(
            key=asset_key(source.relpath, info.name),
            file=source.relpath,
            asset=info.name,
            prompt=prompt,
            negative_prompt=negative,
            seed=seed,
            request=request_id(prompt, negative, seed, settings),
            notes=notes,
        )


def prompt_source(options: Mapping[str, Any]) -> PromptSource:
    """The run's prompt source from its options; refuses a run that says nothing to paint."""
    prompt = str(options.get("prompt") or "").strip()
    template = str(options.get("prompt_template") or "").strip()
    table_path = options.get("prompts")
    if prompt and template:
        raise TextureError("Give either --prompt or --prompt-template, not both.")
    if not (prompt or template or table_path):
        raise TextureError(
            'Say what to paint: --prompt-template "a {name}, {description}", --prompts FILE '
            "or one --prompt for every asset."
        )
    if template:
        check_template(template)
    return PromptSource(
        prompt=prompt,
        template=template,
        negative_prompt=str(options.get("negative_prompt") or ""),
        table=PromptTable.load(table_path) if table_path else None,
        base_seed=int(options.get("seed") or 0),
    )
