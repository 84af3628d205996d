"""The package's shape, checked from its source. Its layers, lowest first:

    1. core               bench/core (errors, the registry, hashing, ε, checkpoints, data files, provenance), options
    2. definitions        attacks/ (engine, losses, protocols), bench/encoders (bases, sources, names), tasks/
    3. training, suites   bench/train, bench/micro, bench/paper, bench/suites.py
    4. running            the runner, the store, sharding, device, report, check, sweep, listing, the Python API
    5. command line       bench/cli.py, bench/__main__.py, every ``command.py`` / ``*_command.py``, the ``bench``
                          package itself (its lazy ``bench.evaluate``)

Every import goes to the same layer or a lower one, counted at every depth (a function-level import is an import)
and through strings (``importlib.import_module("…")``, ``import_submodules("…")``, a registry's ``discover=``).
A unit is a subpackage or module directly under ``bench``, ``attacks`` or ``tasks`` (``bench.train``, ``tasks.vlm``,
``tasks.captioning``, ``attacks.protocols``), and a command module on its own; no units import each other in a
circle. What climbs instead registers from above: an upper layer registers into a lower layer's registry when it is
imported (the objectives name the robust encoders, the micro suite registers its base), and whoever resolves names
(layers 4-5) imports the upper layers first.

A function-level import is left only where it defers a heavy or optional third-party package (``DEFERRED``), with a
comment saying so on its line or the line above. Besides: attacks import only the core, no module imports another's
private names, and the module-level import graph has no cycle either."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "attacks", "tasks")

# the written order: a module's layer is that of the longest prefix listed here
LAYERS = {
    "bench.core": 1, "bench.options": 1,
    "attacks": 2, "bench.encoders": 2, "tasks": 2, "bench.defences": 2,
    "bench.train": 3, "bench.micro": 3, "bench.paper": 3, "bench.suites": 3,
    "bench.runner": 4, "bench.store": 4, "bench.sharding": 4, "bench.device": 4, "bench.report": 4,
    "bench.check": 4, "bench.check_rebuild": 4, "bench.check_report": 4, "bench.check_tolerance": 4,
    "bench.sweep": 4, "bench.listing": 4, "bench.api": 4,
    "bench": 5, "bench.__main__": 5, "bench.cli": 5, "bench.check_command": 5, "bench.train.command": 5,
    "bench.report.command": 5, "bench.sweep.command": 5,
}
# third-party packages a function may import, and why it defers them
DEFERRED = {
    "transformers": "LLaVA-1.5 for the paper suite's vision-language tasks only",
    "pycocoevalcap": "captioning metrics only (its METEOR starts Java)",
    "submitit": "bench sweep and bench status only",
    "torchattacks": "optional: the torchattacks reference backend, not a declared dependency",
    "matplotlib": "plots and the VLM gallery only; pyplot takes seconds to import",
    "clip_benchmark": "its dataset builder (ImageNet's WordNet ids) takes a second to import; folder sources only",
}
STRING_IMPORTERS = ("import_module", "import_submodules", "__import__")
# the modules that resolve names a user types, and the modules that register names into a lower layer's registry
RESOLVERS = ("bench.runner", "bench.api", "bench.cli", "bench.listing", "bench.report.select", "bench.report.tables",
             "bench.check", "bench.sweep.grid", "bench.sweep.job", "bench.train.command")
REGISTER_FROM_ABOVE = ("bench.train.objectives", "bench.micro.encoders")


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


def string_imports(node: ast.AST) -> list[str]:
    """Module names a call imports by string: ``import_module("x")``, ``import_submodules("x")``, ``discover=``."""
    if not isinstance(node, ast.Call):
        return []
    func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
    out = []
    if func in STRING_IMPORTERS and node.args and isinstance(node.args[0], ast.Constant):
        out.append(node.args[0].value)
    for kw in node.keywords:
        if kw.arg == "discover" and isinstance(kw.value, ast.Tuple):
            out += [e.value for e in kw.value.elts if isinstance(e, ast.Constant)]
    return [name for name in out if isinstance(name, str)]


def imports_of(path: Path, modules: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for every import in the file, at any depth, strings included."""
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
        else:
            out += [(name, "", node.lineno) for name in string_imports(node)]
    return [(resolve(m, modules), n, line) for m, n, line in out if resolve(m, modules)]


def function_imports(path: Path) -> list[tuple[str, int, int]]:
    """(imported module as written, line, first line of its function) of every import statement in a function."""
    out = []
    for fn in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    out += [(a.name, node.lineno, fn.lineno) for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    out.append(("." * node.level + (node.module or ""), node.lineno, fn.lineno))
    return sorted(set(out), key=lambda x: x[1])


def loaded_with(modules: dict[str, Path]) -> dict[str, tuple[set[str], set[str]]]:
    """What importing each project module imports: (third-party packages, project modules), through its own
    module-level imports, its parent packages' and those of the project modules they import."""
    direct: dict[str, tuple[set[str], set[str]]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        in_functions = {n for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                        for n in ast.walk(fn)}
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) and n not in in_functions
                 for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level
                  and n not in in_functions]
        names += [f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level
                  and n not in in_functions for a in n.names]
        parents = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}  # imported first
        direct[module] = ({n.split(".")[0] for n in names if not resolve(n, modules)},
                          {resolve(n, modules) for n in names if resolve(n, modules)} | (parents & set(modules)))
    out = {}
    for module in modules:
        seen, todo, packages = set(), [module], set()
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                packages |= direct[m][0]
                todo += direct[m][1]
        out[module] = (packages, seen)
    return out


def layer(module: str) -> int:
    keys = [k for k in LAYERS if module == k or module.startswith(k + ".")]
    assert keys, f"{module} is in no layer: add it to LAYERS (tests/test_structure.py)"
    return LAYERS[max(keys, key=len)]


def unit(module: str) -> str:
    """What the circle check counts: a subpackage or module directly under a top-level package; a command module
    on its own."""
    parts = module.split(".")
    return module if parts[-1].endswith("command") else ".".join(parts[:2])


@pytest.fixture(scope="module")
def graph():
    modules = project_modules()
    return modules, {m: imports_of(p, modules) for m, p in modules.items()}


def test_every_module_has_a_layer(graph):
    modules, _ = graph
    for m in modules:
        layer(m)


def test_imports_go_down_the_written_order(graph):
    _, edges = graph
    bad = [f"{m} (layer {layer(m)}) imports {dep} (layer {layer(dep)}, line {line})" for m, deps in edges.items()
           for dep, _, line in deps if layer(dep) > layer(m)]
    assert not bad, bad


def test_units_form_no_circle(graph):
    _, edges = graph
    succ: dict[str, set[str]] = {}
    for m, deps in edges.items():
        succ.setdefault(unit(m), set()).update(unit(d) for d, _, _ in deps if unit(d) != unit(m))
    assert not cycles(succ), cycles(succ)


def test_function_level_imports_only_defer_heavy_optional_packages():
    """A function may import a ``DEFERRED`` package, or a project module that imports one when it is imported (the
    sweep's job module subclasses submitit's), with a comment in the function saying it defers it; nothing else."""
    modules = project_modules()
    loads = {m: packages for m, (packages, _) in loaded_with(modules).items()}
    bad = []
    for module, path in modules.items():
        lines = path.read_text().splitlines()
        for name, line, start in function_imports(path):
            said = " ".join(text.partition("#")[2].lower() for text in lines[start - 1:line])
            project = resolve(name, modules)
            deferred = sorted(loads[project] & set(DEFERRED)) if project else [p for p in [name.split(".")[0]]
                                                                                 if p in DEFERRED]
            if not deferred:
                bad.append(f"{module}:{line} imports {name} inside a function, which defers no package of DEFERRED")
            elif "defer" not in said or not any(p in said for p in deferred):
                bad.append(f"{module}:{line} defers {', '.join(deferred)} without a comment in the function saying so")
    assert not bad, bad


def test_name_resolvers_import_what_registers_from_above():
    """The modules that resolve names a user typed import, when they are imported, every module that registers
    names into a registry below it; a name such as ``fare4`` or ``--base micro`` then resolves whatever was imported
    before (one subprocess confirms it for the runner alone)."""
    loads = loaded_with(project_modules())
    missing = [f"{r} does not import {m}" for r in RESOLVERS for m in REGISTER_FROM_ABOVE if m not in loads[r][1]]
    assert not missing, missing
    check = ("import bench.runner\nfrom bench.encoders.bases import parse_base\n"
             "from bench.encoders.registry import ENCODERS\nprint(ENCODERS.get('fare4').method, parse_base('micro'))")
    done = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.stdout.split() == ["fare", "micro"], done.stderr


def test_tests_use_public_names_only():
    """Tests reach the package through public names: no ``from bench… import _private``, no ``obj._private``."""
    modules = project_modules()
    bad = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and resolve(node.module or "", modules):
                bad += [f"{path.name}:{node.lineno} imports {a.name}" for a in node.names if private(a.name)]
            elif isinstance(node, ast.Attribute) and private(node.attr):
                bad.append(f"{path.name}:{node.lineno} reads .{node.attr}")
    assert not bad, bad


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_attacks_import_only_the_core(graph):
    _, edges = graph
    bad = [f"{m} imports {dep} (line {line})" for m, deps in edges.items() if m.startswith("attacks")
           for dep, _, line in deps if not dep.startswith(("attacks", "bench.core"))]
    assert not bad, bad


def test_no_private_names_cross_modules(graph):
    _, edges = graph
    bad = [f"{m} imports {dep}.{name} (line {line})" for m, deps in edges.items() for dep, name, line in deps
           if name.startswith("_") and not name.startswith("__") and dep != m]
    assert not bad, bad


def test_import_graph_has_no_cycle(graph):
    modules, edges = graph
    # a package's __init__ is imported with each of its submodules; an edge to a package is an edge to that file
    succ = {m: {d for d, _, _ in deps if d != m} for m, deps in edges.items()}
    assert not cycles(succ), cycles(succ)


def test_the_checks_see_what_they_check(tmp_path, monkeypatch):
    """The checks above fail on what they forbid: a lazy upward import, a string import, a circle of units."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "low.py").write_text("import importlib\n\ndef f():\n    from pkg import high\n"
                                             "    importlib.import_module('pkg.other')\n")
    modules = {"pkg.low": tmp_path / "pkg" / "low.py", "pkg.high": tmp_path, "pkg.other": tmp_path}
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    found = imports_of(modules["pkg.low"], modules)
    assert [(m, line) for m, _, line in found] == [("pkg.high", 4), ("pkg.other", 5)]
    assert function_imports(modules["pkg.low"]) == [("pkg", 4, 3)]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert unit("bench.train.loop") == "bench.train" and unit("bench.train.command") == "bench.train.command"
    assert layer("bench.train.command") == 5 and layer("bench.train.loop") == 3 and layer("tasks.vlm.llava") == 2


def cycles(succ: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan's algorithm)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(succ.get(v, ())):
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
                found.append(sorted(comp))

    for v in sorted(succ):
        if v not in index:
            visit(v)
    return found
