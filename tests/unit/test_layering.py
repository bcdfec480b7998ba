"""The package's layering, checked by the suite: no import circle, no Blender in the pure
folders (``core/`` and any folder whose README says "no bpy"), and ``defaults.py`` as plain
data that imports nothing of the package (every import read from the source, function-local
ones included, as ``../shared/tools/import_graph.py`` reads them)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "sd_depth_texture"
BLENDER = ("bpy", "bmesh", "mathutils", "gpu", "bpy_extras")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_graph() -> tuple[dict[str, set[str]], set[str]]:
    """Module -> package modules it imports, and the modules that import Blender."""
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    blender: set[str] = set()
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - (node.level - 1)]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                subs = [f"{base}.{alias.name}" for alias in node.names]
                targets = [sub for sub in subs if sub in paths] or [base]
            else:
                continue
            for target in targets:
                if target.split(".")[0] in BLENDER:
                    blender.add(name)
                while target and target not in paths:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.add(target)
        graph[name] = found
    return graph, blender


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                other = stack.pop()
                group.append(other)
                if other == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def pure_folders() -> list[str]:
    folders = [module_name(PACKAGE / "core" / "__init__.py")]
    for readme in PACKAGE.rglob("README.md"):
        if "no bpy" in readme.read_text(encoding="utf-8").lower():
            folders.append(module_name(readme.parent / "__init__.py"))
    return folders


def test_no_module_imports_itself_through_others():
    graph, _ = read_graph()
    assert circles(graph) == []


def test_no_pure_module_imports_blender():
    _, blender = read_graph()
    pure = pure_folders()
    assert "sd_depth_texture.core" in pure
    impure = [m for m in blender if any(m == p or m.startswith(p + ".") for p in pure)]
    assert impure == []


def test_defaults_are_plain_data_importing_nothing_of_the_package():
    graph, blender = read_graph()
    assert graph["sd_depth_texture.defaults"] == set()
    assert "sd_depth_texture.defaults" not in blender


def test_the_checks_see_what_they_look_for():
    """The reader finds real edges and real Blender imports, and the circle finder finds one."""
    graph, blender = read_graph()
    assert "sd_depth_texture.core.errors" in graph["sd_depth_texture.core.validation"]
    assert "sd_depth_texture.blender.flow" in blender
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
