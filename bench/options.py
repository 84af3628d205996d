"""Command-line option helpers shared by the subcommands."""

from __future__ import annotations


def split_list(values: list[str] | None) -> tuple[str, ...]:
    """``--encoder a,b --encoder c`` → ("a", "b", "c")."""
    out: list[str] = []
    for v in values or []:
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return tuple(out)
