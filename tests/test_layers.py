"""The import graph: no cycle, and no lower layer reaching up into the code that uses it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vptbench"
LOWER = ("registry", "results", "data", "models", "clip", "protocol", "contract", "errors", "plugins")
HIGHER = ("harness", "reporting", "cli")


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every module's imports of vptbench modules, at the top or inside functions alike."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vptbench"):
                found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("vptbench")}
        graph[name] = {m for m in found | {p for m in found for p in _packages_entered(name, m)} if m in modules and m != name}
    return graph


def _packages_entered(importer: str, imported: str) -> list[str]:
    """Importing `a.b.c` runs `a.b`'s __init__ first, unless the importer already sits inside `a.b`."""
    parts = imported.split(".")
    parents = [".".join(parts[:i]) for i in range(2, len(parts))]
    return [p for p in parents if not importer.startswith(p + ".")]


def _layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def test_no_lower_layer_imports_a_higher_one():
    wrong = [f"{m} imports {i}" for m, imports in _imports().items() if _layer(m) in LOWER for i in imports if _layer(i) in HIGHER]
    assert wrong == []


@pytest.mark.parametrize(("layer", "above"), [("harness", ("reporting", "cli")), ("reporting", ("harness", "cli"))])
def test_the_harness_and_reporting_stay_apart_and_below_the_cli(layer, above):
    """The harness hands records to a sink the CLI chooses; reporting reads results alone."""
    wrong = [f"{m} imports {i}" for m, imports in _imports().items() if _layer(m) == layer for i in imports if _layer(i) in above]
    assert wrong == []


def test_the_import_graph_has_no_cycle():
    graph = _imports()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str]:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return []
        for imported in sorted(graph[module]):
            if cycle := visit(imported, [*path, module]):
                return cycle
        done.add(module)
        return []

    cycles = [cycle for module in sorted(graph) if (cycle := visit(module, []))]
    assert cycles == []
