"""The longest functions of the package, measured from the source with ``ast`` (so the number is reproducible).

    python scripts/function_lengths.py [--top 10] [--over 60] [PACKAGE ...]

A function's length is its line count from the ``def`` line (decorators excluded) to its last line, docstring and
comments included; a nested function counts inside its parent and on its own. Packages default to bench, attacks
and tasks, relative to the repository root.
"""

from __future__ import annotations

import argparse
import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "attacks", "tasks")


@dataclass(frozen=True)
class FunctionLength:
    name: str  # qualified within its module, e.g. "Run.write_batch" or "apgd.<locals>.drop"
    path: str  # relative to the repository root
    line: int
    lines: int

    def __str__(self) -> str:
        return f"{self.lines:4d}  {self.path}:{self.line}  {self.name}"


def function_lengths(path: Path, root: Path = ROOT) -> list[FunctionLength]:
    """Every function and method defined in the file at ``path``."""
    out: list[FunctionLength] = []
    rel = str(path.relative_to(root))

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                out.append(FunctionLength(name, rel, child.lineno, child.end_lineno - child.lineno + 1))
                visit(child, f"{name}.<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text(), str(path)), "")
    return out


def longest(packages: tuple[str, ...] = PACKAGES, root: Path = ROOT) -> list[FunctionLength]:
    """All functions of ``packages``, longest first (ties by path and line, so the order is stable)."""
    found = [f for pkg in packages for p in sorted((root / pkg).rglob("*.py")) for f in function_lengths(p, root)]
    return sorted(found, key=lambda f: (-f.lines, f.path, f.line))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", nargs="*", default=list(PACKAGES))
    parser.add_argument("--top", type=int, default=10, help="how many to print (default 10)")
    parser.add_argument("--over", type=int, help="print every function longer than this instead")
    args = parser.parse_args(argv)
    ranked = longest(tuple(args.packages))
    shown = [f for f in ranked if f.lines > args.over] if args.over is not None else ranked[:args.top]
    for f in shown:
        print(f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
