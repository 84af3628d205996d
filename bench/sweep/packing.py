"""Units packed into jobs so that the jobs finish together: greedy longest-processing-time first (each unit, the
most expensive first, goes to the job with the least work so far). The work of a unit is its remaining cost in
FLOPs (``grid.GridCell.cost``: samples still to compute × forward+backward passes per sample × FLOPs of one pass of
that encoder, plus the scoring forwards and the gradient-masking checks) — the same model ``bench run --plan``
prints — so a ViT-L cell under AutoAttack weighs what it costs, not what a clean cell of a small model does.
LPT is within 4/3 of the best possible makespan; with many more units than jobs it is close to even."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.core.errors import BenchError


@dataclass
class Pack:
    units: list = field(default_factory=list)
    cost: float = 0.0


def pack(units, jobs: int) -> list[Pack]:
    """``units`` (each with ``.cost``) spread over at most ``jobs`` packs; empty packs are dropped. Ties keep the
    input order, so the packing is deterministic."""
    if jobs < 1:
        raise BenchError(f"--jobs must be at least 1, got {jobs}")
    packs = [Pack() for _ in range(min(jobs, len(units)))]
    for unit in sorted(units, key=lambda u: -u.cost):
        lightest = min(packs, key=lambda p: p.cost)
        lightest.units.append(unit)
        lightest.cost += unit.cost
    return [p for p in packs if p.units]


def describe_packing(packs: list[Pack]) -> str:
    """One line per job: its units and its share of the total cost (what ``bench sweep --plan`` prints)."""
    total = sum(p.cost for p in packs) or 1.0
    lines = []
    for i, p in enumerate(packs):
        names = ", ".join(f"{u.encoder}:{u.dataset}" for u in p.units)
        cells = sum(1 for u in p.units for c in u.cells if not c.complete)
        lines.append(f"job {i}: {cells} cell(s), {p.cost / 1e12:.3g} TFLOP ({100 * p.cost / total:.0f} %): {names}")
    return "\n".join(lines)
