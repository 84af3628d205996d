"""The package's shape, checked from its source: the core layer imports nothing above it, attacks import only the
core, no module imports another's private names, and the import graph (lazy imports included) has no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "attacks", "tasks")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an import refers to (``from pkg import mod`` names a module, else its package)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(path: Path, modules: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for every import in the file, at any depth."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}".strip(".")
            for a in node.names:
                full = f"{base}.{a.name}"
                out.append((full if full in modules else base, a.name, node.lineno))
    return [(resolve(m, modules), n, line) for m, n, line in out if resolve(m, modules)]


@pytest.fixture(scope="module")
def graph():
    modules = project_modules()
    return modules, {m: imports_of(p, modules) for m, p in modules.items()}


def test_core_layer_imports_only_itself(graph):
    _, edges = graph
    bad = [f"{m} imports {dep} (line {line})" for m, deps in edges.items() if m.startswith("bench.core")
           for dep, _, line in deps if not dep.startswith("bench.core")]
    assert not bad, bad


def test_attacks_import_only_the_core(graph):
    _, edges = graph
    bad = [f"{m} imports {dep} (line {line})" for m, deps in edges.items() if m.startswith("attacks")
           for dep, _, line in deps if not dep.startswith(("attacks", "bench.core"))]
    assert not bad, bad


def test_tasks_do_not_import_the_application_layer(graph):
    """Tasks may use the core, the attacks and the micro world's generator (their data); not the runner, the
    report, the CLI, training or a suite."""
    _, edges = graph
    allowed = ("tasks", "attacks", "bench.core", "bench.micro.data", "bench.micro.world", "bench.micro.language",
               "bench.encoders.base")
    bad = [f"{m} imports {dep} (line {line})" for m, deps in edges.items() if m.startswith("tasks")
           for dep, _, line in deps if not dep.startswith(allowed)]
    assert not bad, bad


def test_no_private_names_cross_modules(graph):
    _, edges = graph
    bad = [f"{m} imports {dep}.{name} (line {line})" for m, deps in edges.items() for dep, name, line in deps
           if name.startswith("_") and not name.startswith("__") and dep != m]
    assert not bad, bad


def test_import_graph_has_no_cycle(graph):
    modules, edges = graph
    succ = {m: sorted({d for d, _, _ in deps if d != m}) for m, deps in edges.items()}
    # a package's __init__ is imported with each of its submodules; an edge to a package is an edge to that file
    index, low, on_stack, stack, cycles, counter = {}, {}, set(), [], [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in succ.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in sorted(modules):
        if m not in index:
            visit(m)
    assert not cycles, cycles
