"""No import loop through `workflows/` or `annotator/segmentation/`: the graph of our own modules is built
from their source with `ast`, every import counted (module level, inside functions, and the package
``__init__`` an import runs), except those under ``if TYPE_CHECKING:``, which never run."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = ("annotator", "workflows", "db", "ml_backend")
GUARDED = ("workflows", "annotator.segmentation")  # no cycle may pass through these


def _module_names(root: Path, packages=OURS) -> dict[str, Path]:
    names = {}
    for pkg in packages:
        for path in (root / pkg).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names[".".join(parts)] = path
    return names


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every module name an import statement anywhere in ``tree`` may load."""
    found: set[str] = set()
    todo = list(ast.iter_child_nodes(tree))
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
        todo.extend(ast.iter_child_nodes(node))
    return found


def import_graph(root: Path, packages=OURS) -> dict[str, set[str]]:
    """module -> the modules of ours it imports (with the packages above them, whose __init__ runs)."""
    names = _module_names(root, packages)
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        edges = set()
        for target in _imports(ast.parse(path.read_text(), str(path)), name, path.name == "__init__.py"):
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in names and prefix != name:
                    edges.add(prefix)
        graph[name] = edges
    return graph


def cycles_through(graph: dict[str, set[str]], guarded: tuple[str, ...]) -> list[list[str]]:
    """One cycle per strongly connected component (Tarjan) that holds a guarded module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [c for c in components if any(m == g or m.startswith(g + ".") for m in c for g in guarded)]


def test_no_import_loop_in_workflows_or_segmentation():
    graph = import_graph(ROOT)
    assert {"workflows.decisions", "workflows.stage2", "annotator.segmentation.train"} <= set(graph)
    assert "workflows.stage2" in graph["workflows.decisions"]  # the table is built where it is read
    assert "workflows.retrain" in graph["workflows.stage2"]  # a function-level import is an edge too
    assert cycles_through(graph, GUARDED) == []


def test_the_graph_finds_a_loop_hidden_in_a_function(tmp_path):
    pkg = tmp_path / "workflows"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from workflows import b\n")
    (pkg / "b.py").write_text("def f():\n    from workflows.c import g\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from workflows import d\n"
                              "def g():\n    from . import a\n")
    (pkg / "d.py").write_text("import workflows.c\n")
    graph = import_graph(tmp_path, ("workflows",))
    assert graph["workflows.c"] == {"workflows", "workflows.a"}  # the TYPE_CHECKING import is no edge
    assert cycles_through(graph, ("workflows",)) == [["workflows.a", "workflows.b", "workflows.c"]]
