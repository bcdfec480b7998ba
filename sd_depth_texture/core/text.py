"""Text from users and files, shown safely and checked as prompts (no bpy).

Object, asset and file names and prompts are anyone's text: a name may hold a line break, a
terminal escape sequence or bytes that are not UTF-8 (Python carries those as surrogate
escapes). :func:`shown` is the one escaping used wherever such text is printed, logged or put
in a contact sheet, so a name can never forge an ``error:`` line, clear a terminal or stop a
file from being written. :func:`prompt_problem` says why a prompt cannot be used. No imports
from the project: :mod:`.errors` escapes its messages with :func:`shown`.
"""

from __future__ import annotations

import re

# C0 and C1 controls (escape sequences, line breaks, NUL, DEL), Unicode line and paragraph
# separators, bidirectional overrides and isolates (they reorder what a terminal shows) and
# lone surrogates (bytes that were not UTF-8).
_UNSHOWABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SURROGATE = re.compile("[\ud800-\udfff]")


def _escaped(match: re.Match[str]) -> str:
    character = match.group()
    code = ord(character)
    if character in _NAMED:
        return _NAMED[character]
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, carried as a surrogate escape
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def shown(text: object) -> str:
    """``text`` as one printable line: controls, separators, bidi marks and undecodable bytes
    written as Python-style escapes (``\\n``, ``\\x1b``, ``\\xff``); everything else as it is."""
    return _UNSHOWABLE.sub(_escaped, str(text))


def prompt_problem(text: str) -> str | None:
    """Why ``text`` cannot be a prompt (bytes that are not UTF-8, a NUL), or None."""
    undecodable = _SURROGATE.search(text)
    if undecodable:
        byte = shown(undecodable.group())
        return f"is not valid UTF-8 text ({byte} at character {undecodable.start() + 1})"
    if "\x00" in text:
        return f"holds a NUL byte (at character {text.index(chr(0)) + 1})"
    return None
