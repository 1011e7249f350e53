"""The package's import graph: no cycle, and no private name imported from another module.

Every import counts, also the ones inside functions (they defer the cost, not the dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# source folder -> package name (the design card's top-level folders ship inside the wheel)
FOLDERS = {
    "dualexpert": "dualexpert",
    "signatures": "dualexpert.signatures",
    "optimizers": "dualexpert.optimizers",
    "indexes": "dualexpert.indexes",
}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, pkg in FOLDERS.items():
        for f in (ROOT / folder).rglob("*.py"):
            parts = list(f.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([pkg, *parts])] = f
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _imports(name: str) -> list[tuple[str, str | None, int]]:
    """``(module, imported name or None, line)`` for every import of module ``name``."""
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    base = name if _is_package(name) else name.rpartition(".")[0]
    out: list[tuple[str, str | None, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                mod = ".".join(anchor + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out += [(mod, a.name, node.lineno) for a in node.names]
    return out


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for m in MODULES:
        for mod, name, _ in _imports(m):
            target = f"{mod}.{name}" if name and f"{mod}.{name}" in MODULES else mod
            if target in MODULES and target != m:
                graph[m].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_walk_sees_the_package():
    graph = _graph()
    assert "dualexpert.cli.categorise" in graph and "dualexpert.optimizers.runs" in graph
    assert "dualexpert.journal" in graph["dualexpert.batch"]
    assert "dualexpert.cli.common" in graph["dualexpert.cli.relevance"]


def test_no_import_cycle():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_private_name_is_imported_from_another_module():
    bad = []
    for m in MODULES:
        for mod, name, line in _imports(m):
            if not mod.startswith("dualexpert"):
                continue  # third-party internals are the third party's business
            if name and name.startswith("_") and not name.startswith("__"):
                bad.append(f"{MODULES[m].relative_to(ROOT)}:{line}: {name} from {mod}")
            if any(p.startswith("_") and not p.startswith("__") for p in mod.split(".")):
                bad.append(f"{MODULES[m].relative_to(ROOT)}:{line}: private module {mod}")
    assert bad == []


def test_nothing_imports_the_cli():
    users = [
        m
        for m, deps in _graph().items()
        if not m.startswith("dualexpert.cli") and any(d.startswith("dualexpert.cli") for d in deps)
    ]
    assert users == []
