"""The package's layers as a Mermaid diagram, drawn from its imports (read with ``ast``, so it is the code's picture).

    python scripts/layers_diagram.py                          # print the diagram
    python scripts/layers_diagram.py --write docs/design.md   # replace the diagram between the markers there

A unit of the diagram is a subpackage or top-level module of ``bench`` (``bench.core``, ``bench.runner``, …), the
``attacks`` and ``tasks`` packages as a whole, and each command module (``*command.py``: the command line's
layer wherever it lives). An edge A → B means some module of A imports some module of B, at module level or inside
a function (``import``, ``from … import``, ``importlib.import_module("literal")``). Units are grouped by the
layer order of ``LAYERS``; an edge that climbs to a higher layer is drawn dotted, so what breaks the order shows.
``tests/test_docs.py`` fails when ``docs/design.md`` holds another diagram than this script prints.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "attacks", "tasks")
BEGIN, END = "<!-- layers-diagram -->", "<!-- /layers-diagram -->"

# the layer order (imports go down it): number, title, units; a command module is always in the last layer
LAYERS = (
    (1, "core", ("bench.core", "bench.options")),
    (2, "attacks, encoders, task definitions", ("attacks", "bench.encoders", "bench.defences", "tasks")),
    (3, "training, suites", ("bench.train", "bench.micro", "bench.paper", "bench.suites")),
    (4, "runner, report, check, sweep", ("bench.runner", "bench.store", "bench.report", "bench.check",
                                         "bench.check_rebuild", "bench.check_report", "bench.check_tolerance",
                                         "bench.sweep",
                                         "bench.sharding", "bench.device", "bench.listing", "bench.api", "bench")),
    (5, "cli", ("bench.cli", "bench.__main__")),
)
COMMAND_LAYER = 5
UNPLACED = 0  # a unit LAYERS does not name yet (a new subpackage): drawn apart, so it gets placed


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_command(module: str) -> bool:
    last = module.rpartition(".")[2]
    return last == "command" or last.endswith("_command")


def unit_of(module: str) -> str:
    """The diagram node a module belongs to."""
    if is_command(module):
        return module
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "bench" else parts[0]


def layer_of(unit: str) -> int:
    if is_command(unit):
        return COMMAND_LAYER
    return next((number for number, _, units in LAYERS if unit in units), UNPLACED)


def imported_names(tree: ast.AST, module: str, is_package: bool) -> list[str]:
    """Every module name an import anywhere in ``tree`` refers to (relative imports resolved against ``module``)."""
    package = module if is_package else module.rpartition(".")[0]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}".strip(".")
            names += [f"{base}.{alias.name}" for alias in node.names]  # `from pkg import mod` names a module
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.append(node.args[0].value)
    return names


def resolve(name: str, modules: set[str]) -> str | None:
    """The project module an imported name refers to (its longest prefix that is one), or None (not ours)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def unit_edges(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> tuple[set[str], set[tuple[str, str]]]:
    """The units of ``packages`` under ``root`` and the edges between them."""
    files = {module_name(p, root): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}
    units, edges = {unit_of(m) for m in files}, set()
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        for name in imported_names(tree, module, path.name == "__init__.py"):
            target = resolve(name, set(files))
            if target is not None and unit_of(target) != unit_of(module):
                edges.add((unit_of(module), unit_of(target)))
    return units, edges


def node_id(unit: str) -> str:
    return unit.replace(".", "_")


def mermaid(units: set[str], edges: set[tuple[str, str]]) -> str:
    """The diagram: one subgraph per layer, the highest first, so edges that keep the order point down."""
    titles = {number: title for number, title, _ in LAYERS} | {UNPLACED: "not in the layer order"}
    lines = ["flowchart TB"]
    for number in sorted(titles, reverse=True):  # the unplaced (0) last
        members = sorted(u for u in units if layer_of(u) == number)
        if not members:
            continue
        label = titles[number] if number == UNPLACED else f"{number} · {titles[number]}"
        lines.append(f'    subgraph layer{number}["{label}"]')
        lines += [f'        {node_id(u)}["{u}"]' for u in members]
        lines.append("    end")
    for source, target in sorted(edges):
        climbs = layer_of(target) > layer_of(source) or UNPLACED in (layer_of(source), layer_of(target))
        lines.append(f"    {node_id(source)} {'-.->' if climbs else '-->'} {node_id(target)}")
    return "\n".join(lines)


def block(root: Path = ROOT) -> str:
    """What goes between the markers: the fenced diagram."""
    return f"```mermaid\n{mermaid(*unit_edges(root))}\n```"


def block_in(text: str) -> str:
    """The text between the markers of a page (the diagram it holds)."""
    if BEGIN not in text or END not in text:
        raise SystemExit(f"error: the page lacks the markers {BEGIN} … {END}")
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")


def with_block(text: str, new: str) -> str:
    block_in(text)  # the markers must be there
    head, rest = text.split(BEGIN, 1)
    return f"{head}{BEGIN}\n{new}\n{END}{rest.split(END, 1)[1]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", type=Path, metavar="PAGE", help="replace the diagram between the markers in PAGE")
    args = parser.parse_args(argv)
    new = block()
    if args.write is None:
        print(new)
        return 0
    text = args.write.read_text()
    args.write.write_text(with_block(text, new))
    print(f"{args.write}: diagram {'unchanged' if block_in(text) == new else 'updated'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
