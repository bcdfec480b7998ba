"""No tracked doc or source file holds a merge-conflict marker (a merge left half-resolved)."""

from __future__ import annotations

import re
import subprocess

import pytest
from support import REPO

TEXT_SUFFIXES = (".md", ".py", ".toml", ".txt", ".sh", ".cfg", ".yml", ".yaml", ".json")
# The three marker lines git writes; each starts a line and is followed by a space or nothing.
OPENING_OR_CLOSING = re.compile(r"^(<<<<<<<|>>>>>>>)( |$)", re.MULTILINE)
DIVIDER = re.compile(r"^=======( |$)", re.MULTILINE)


def tracked_text_files() -> list[str]:
    """The repository's tracked docs and sources (git's own list: build outputs left out)."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: no list of tracked files")
    names = [name for name in listing.decode("utf-8").split("\0") if name]
    return [name for name in names if name.endswith(TEXT_SUFFIXES) or "/" not in name]


def conflict_lines(text: str, markdown: bool) -> list[int]:
    """Line numbers of conflict markers. In Markdown a line of seven '=' may underline a
    heading, so there it counts only beside an opening or closing marker in the same file."""
    found = [match.start() for match in OPENING_OR_CLOSING.finditer(text)]
    if found or not markdown:
        found += [match.start() for match in DIVIDER.finditer(text)]
    return sorted(text.count("\n", 0, start) + 1 for start in found)


def test_markers_are_found_where_git_writes_them() -> None:
    conflict = "a\n<<<<<<< HEAD\nours\n=======\ntheirs\n>>>>>>> branch\nb\n"
    assert conflict_lines(conflict, markdown=True) == [2, 4, 6]
    assert conflict_lines("x = 1\n=======\n", markdown=False) == [2]
    heading = "Title\n=======\n\ntext with <<<<<<< inside a line\n"
    assert conflict_lines(heading, markdown=True) == []


def test_no_tracked_file_holds_conflict_markers() -> None:
    files = tracked_text_files()
    assert any(name.endswith("guide.md") for name in files)
    found = []
    for name in files:
        path = REPO / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [f"{name}:{line}" for line in conflict_lines(text, name.endswith(".md"))]
    assert not found, "merge-conflict markers left in: " + ", ".join(found)
