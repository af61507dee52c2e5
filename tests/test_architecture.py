"""The package's import graph: no cycles, and layers that only look down.

The graph is read statically (``ast``) from every module of ``mtlbench``, function-local imports
included, so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mtlbench"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """The mtlbench modules ``name`` imports (``from a import b`` counts as ``a.b`` where that is a module)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES and t != name}
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read_correctly():
    # known edges, read by hand from the files
    assert "mtlbench.registry" in GRAPH["mtlbench.plugins"]
    assert "mtlbench.engine.build" in GRAPH["mtlbench.engine.trainer"]
    assert "mtlbench.plugins" in GRAPH["mtlbench"]  # the function-local import of the populate hook


def test_no_import_cycle():
    assert cycles() == []


def test_registry_and_options_are_leaves():
    assert GRAPH["mtlbench.registry"] <= {"mtlbench.errors", "mtlbench.options"}
    assert GRAPH["mtlbench.options"] <= {"mtlbench.errors"}


def test_layers_only_look_down():
    def under(prefix: str) -> list[str]:
        return [m for m in GRAPH if m == prefix or m.startswith(prefix + ".")]

    upward = {
        "mtlbench.engine": ("mtlbench.report", "mtlbench.workflows", "mtlbench.cli", "mtlbench.cost"),
        "mtlbench.models": ("mtlbench.engine", "mtlbench.report", "mtlbench.workflows", "mtlbench.data"),
        "mtlbench.data": ("mtlbench.engine", "mtlbench.report", "mtlbench.models", "mtlbench.workflows"),
        "mtlbench.metrics": ("mtlbench.engine", "mtlbench.report", "mtlbench.models", "mtlbench.data"),
        "mtlbench.weighting": ("mtlbench.engine", "mtlbench.report", "mtlbench.workflows"),
        "mtlbench.report": ("mtlbench.workflows", "mtlbench.cli"),
    }
    bad = [(m, t) for layer, above in upward.items() for m in under(layer) for t in GRAPH[m]
           if any(t == a or t.startswith(a + ".") for a in above)]
    assert bad == []
