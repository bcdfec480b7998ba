"""What a batch shows: the progress line, the summary and the contact sheet. No bpy.

Everything shown comes from manifest lines, so a resumed run reports the whole batch, not
only this run. Text from the assets (names, descriptions in prompts, error messages) is
escaped on the terminal and in both sheets (:func:`..core.text.shown` first: no control
character or undecodable byte gets through): a description is data, never markup.
"""

from __future__ import annotations

import html
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from ..core.disk import not_a_file, reason, write_bytes_whole
from ..core.errors import TextureError
from ..core.text import shown
from .records import DONE, FAILED

SHEET_TITLE = "SD Depth Texture batch"
# Markdown's own punctuation, escaped so a description cannot become a link, an image or a cell.
_MARKDOWN_PUNCTUATION = str.maketrans({c: "\\" + c for c in "\\`*_[]|"})


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressLine:
    """One progress line across all assets, with an ETA from this run's throughput.

    On a terminal the line rewrites itself; in a log (not a TTY) each update is its own line.
    """

    width = 30

    def __init__(
        self,
        total: int,
        done: int = 0,
        failed: int = 0,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.done, self.failed = total, done, failed
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.started = clock()
        self.finished_now = 0
        self.current = ""

    @property
    def eta(self) -> float:
        remaining = self.total - self.done - self.failed
        if remaining <= 0:
            return 0.0
        if self.finished_now == 0:
            return math.inf
        return (self.clock() - self.started) / self.finished_now * remaining

    def line(self) -> str:
        finished = self.done + self.failed
        filled = int(self.width * finished / max(self.total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        text = f"[{bar}] {finished}/{self.total} assets"
        if self.failed:
            text += f", {self.failed} failed"
        text += f", ETA {format_duration(self.eta)}"
        return text + (f"  {shown(self.current)}" if self.current else "")

    def start(self, label: str) -> None:
        self.current = label
        self._write()

    def finish(self, record: Mapping[str, Any]) -> None:
        self.finished_now += 1
        if record.get("status") == DONE:
            self.done += 1
        else:
            self.failed += 1
        self.current = ""
        self._write()

    def _write(self) -> None:
        if getattr(self.stream, "isatty", lambda: False)():
            self.stream.write("\r" + self.line().ljust(100)[:160])
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if getattr(self.stream, "isatty", lambda: False)():
            self.stream.write("\n")
            self.stream.flush()


@dataclass
class Summary:
    total: int
    done: int
    failed: int
    done_now: int
    recovered: int
    unreadable: int
    failures: list[tuple[str, str]]
    seconds: float

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def text(self, manifest: str, sheet: str | None, warnings: Sequence[str] = ()) -> str:
        lines = [
            f"Batch: {self.done} of {self.total} done ({self.done_now} this run"
            + (f", {self.recovered} recovered from outputs" if self.recovered else "")
            + f"), {self.failed} failed"
            + (f" ({self.unreadable} unreadable file(s))" if self.unreadable else "")
            + f" in {format_duration(self.seconds)}."
        ]
        lines += [f"  failed {shown(key)}: {shown(error)}" for key, error in self.failures]
        lines += [f"  warning: {shown(warning)}" for warning in warnings]
        lines.append(f"Manifest: {shown(manifest)}")
        if sheet:
            lines.append(f"Contact sheet: {shown(sheet)}")
        return "\n".join(lines)


def summarize(
    keys: Sequence[str],
    last: Mapping[str, Mapping[str, Any]],
    this_run: Iterable[Mapping],
    seconds: float,
) -> Summary:
    this_run = list(this_run)
    done = sum(1 for key in keys if last.get(key, {}).get("status") == DONE)
    failures = [
        (key, str(last[key].get("error", "")))
        for key in keys
        if key in last and last[key].get("status") == FAILED
    ]
    return Summary(
        total=len(keys),
        done=done,
        failed=len(failures),
        done_now=sum(1 for r in this_run if r.get("status") == DONE and not r.get("recovered")),
        recovered=sum(1 for r in this_run if r.get("recovered")),
        unreadable=sum(
            1
            for key in keys
            if key in last and last[key].get("asset") is None and last[key].get("status") == FAILED
        ),
        failures=failures,
        seconds=seconds,
    )


# --------------------------------------------------------------------------------------------
# Contact sheet
# --------------------------------------------------------------------------------------------


def is_contact_sheet(path: str) -> bool:
    """Whether ``path`` is a sheet a batch wrote (so a rerun may replace it); a FIFO or a
    device is not, and is never opened."""
    if not_a_file(path) is not None:
        return False
    try:
        with open(path, "rb") as stream:
            head = stream.read(512).decode("utf-8", errors="replace")
    except OSError:
        return False
    return head.startswith(f"# {SHEET_TITLE}\n") or (
        head.startswith("<!doctype html>") and f"<title>{SHEET_TITLE}</title>" in head
    )


def _relative_link(path: str | None, folder: str) -> str:
    """A link from the sheet to ``path``: relative, '/'-separated, percent-encoded."""
    if not path:
        return ""
    try:
        return quote(Path(os.path.relpath(path, folder)).as_posix())
    except ValueError:
        return Path(path).as_uri()


def model_line(record: Mapping[str, Any]) -> str:
    """What made an asset's texture, from its run record: model, revision and licence."""
    model = (record.get("record") or {}).get("model") or {}
    if not model:
        return ""
    source = str(model.get("source", ""))
    revision = model.get("revision") or model.get("weights_sha256")
    revision = f" @ {str(revision)[:12]}" if revision else ""
    licence = model.get("licence") or "licence not stated"
    return f"{source}{revision} ({licence})"


def _markdown_cell(value: Any) -> str:
    """Text as one Markdown table cell: HTML and Markdown punctuation shown, never run."""
    text = html.escape(shown(value if value is not None else ""), quote=False)
    return " ".join(text.translate(_MARKDOWN_PUNCTUATION).split())


def _markdown_sheet(records: Sequence[Mapping[str, Any]], folder: str, summary: Summary) -> str:
    lines = [
        f"# {SHEET_TITLE}",
        "",
        f"{summary.done} of {summary.total} done, {summary.failed} failed.",
        "",
        "| Preview | Asset | File | Prompt | Seed | Model | Status |",
        "|---|---|---|---|---|---|---|",
    ]
    for record in records:
        preview = _relative_link(record.get("preview"), folder)
        image = f"![{_markdown_cell(record.get('asset'))}]({preview})" if preview else ""
        status = record.get("status", "")
        if status == FAILED:
            status = f"failed: {record.get('error', '')}"
        cells = (
            record.get("asset") or "(file)",
            record.get("file"),
            record.get("prompt", ""),
            record.get("seed", ""),
            model_line(record),
            status,
        )
        lines.append(f"| {image} | " + " | ".join(_markdown_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _html_sheet(records: Sequence[Mapping[str, Any]], folder: str, summary: Summary) -> str:
    def escape(text: str) -> str:
        return html.escape(shown(text))

    cards = []
    for record in records:
        preview = _relative_link(record.get("preview"), folder)
        status = record.get("status", "")
        picture = (
            f'<img src="{escape(preview)}" alt="{escape(str(record.get("asset")))}" loading="lazy">'
            if preview and status == DONE
            else '<div class="missing">no preview</div>'
        )
        seconds = record.get("seconds", {}).get("total")
        details = [f"seed {record.get('seed')}"] if record.get("seed") is not None else []
        if seconds is not None:
            details.append(f"{seconds:.1f} s")
        if record.get("coverage") is not None:
            details.append(f"{record['coverage']:.0%} of texels")
        model = model_line(record)
        error = (
            f'<p class="error">{escape(str(record.get("error", "")))}</p>'
            if status == FAILED
            else ""
        )
        cards.append(
            f'<figure class="{escape(status)}">{picture}<figcaption>'
            f"<b>{escape(str(record.get('asset') or '(whole file)'))}</b>"
            f'<span class="file">{escape(str(record.get("file", "")))}</span>'
            f"<q>{escape(str(record.get('prompt', '')))}</q>"
            f'<span class="details">{escape(" · ".join(details))}</span>'
            f'<span class="model">{escape(model)}</span>{error}'
            "</figcaption></figure>"
        )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{SHEET_TITLE}</title><style>"
        "body{font:14px system-ui,sans-serif;margin:1.5em;background:#fafafa}"
        ".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:12px}"
        "figure{margin:0;background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px}"
        "figure.failed{border-color:#d33;background:#fff4f4}"
        "img,.missing{width:100%;aspect-ratio:1;object-fit:contain;background:#eee}"
        ".missing{display:flex;align-items:center;justify-content:center;color:#999}"
        "figcaption span,figcaption q{display:block;margin-top:3px}"
        ".file,.details,.model{color:#666;font-size:12px}.error{color:#b00;margin:4px 0 0}"
        "</style></head><body>"
        f"<h1>{SHEET_TITLE}</h1><p>{summary.done} of {summary.total} done, "
        f"{summary.failed} failed.</p>"
        '<div class="grid">' + "\n".join(cards) + "</div></body></html>\n"
    )


def write_contact_sheet(
    path: str, keys: Sequence[str], last: Mapping[str, Mapping[str, Any]], summary: Summary
) -> str:
    """An HTML or Markdown page of every asset's preview, prompt, seed and status (for a lead)."""
    folder = os.path.dirname(path)
    records = [last[key] for key in keys if key in last]
    render = _markdown_sheet if path.endswith(".md") else _html_sheet
    text = render(records, folder, summary)
    data = text.encode("utf-8", errors="backslashreplace")  # before any file is opened
    try:
        return write_bytes_whole(path, data)
    except OSError as error:
        raise TextureError(f"Cannot write the contact sheet '{path}': {reason(error)}.") from error
