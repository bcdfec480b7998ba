"""No message the panel can show names a command-line flag (a scan of the package's strings).

Every string literal outside docstrings in the code the operators reach (``blender/``,
``core/``, ``ui/``, ``request.py``, ``defaults.py``) that mentions ``--option`` must be either
an option's bare name (looked up per door, as :meth:`defaults.Limit.name` does) or one of the
command-line-only messages below, each of which the UI door replaces with its own words.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "sd_depth_texture"
FLAG = re.compile(r"(?<![\w-])--[a-z]")
OPTION_NAME = re.compile(r"--[a-z][a-z0-9-]*")  # --c2pa-cert: digits too
COMMAND_LINE_ONLY = {
    # messages.word: the command line's advice for NoCameraError and ModelUnavailableError;
    # the same table holds the panel's.
    "name one with --camera",
    "or pass --model PATH to a local diffusers folder, or --model random",
    "Download it once with --online (texture, batch)",  # the maps model's and upscalers'
    # outputs.check_blend_output: only runs that write another .blend (command line, batch).
    "choose another --output",
    "give another --output, or --in-place",
    # outputs.plan_depth: the panel's branch has its own words.
    "give --output another .png name, or --force",
    # dependencies.install_command: pip's own option in the command the panel shows to copy.
    " --extra-index-url ",
}
NOT_REACHED_BY_THE_PANEL = ("cli", "batch/")


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def flag_strings() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(NOT_REACHED_BY_THE_PANEL):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and FLAG.search(node.value)
            ):
                found.append((relative, node.lineno, node.value))
    return found


def test_strings_the_panel_can_show_name_no_flags():
    unexpected = [
        (path, line, text)
        for path, line, text in flag_strings()
        if not OPTION_NAME.fullmatch(text)
        and not any(allowed in text for allowed in COMMAND_LINE_ONLY)
    ]
    assert unexpected == []


def test_the_scan_finds_the_known_command_line_messages():
    """The scan itself works: it sees the messages the UI door replaces."""
    texts = " ".join(text for _, _, text in flag_strings())
    for allowed in COMMAND_LINE_ONLY:
        assert allowed in texts


def test_the_core_names_no_door_option_at_all():
    """Door wording is out of the core: it raises structured errors and the doors word them."""
    pip = " --extra-index-url "  # pip's own option, in the install command a user copies
    found = [item for item in flag_strings() if item[0].startswith("core/") and pip not in item[2]]
    assert found == []


def test_each_door_words_a_refused_certificate_with_its_own_name():
    from sd_depth_texture.core.certificates import studio_credentials
    from sd_depth_texture.core.errors import SettingError
    from sd_depth_texture.messages import CLI, UI, word

    try:
        studio_credentials("/no/such/chain.pem", "/no/such/key.pem")
    except SettingError as error:
        refused = error
    assert word(refused, CLI).startswith("--c2pa-cert '/no/such/chain.pem' cannot be read: ")
    assert word(refused, UI).startswith("'C2PA Certificate' '/no/such/chain.pem' cannot be ")
