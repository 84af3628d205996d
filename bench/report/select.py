"""From all stored rows to the ones a report shows: filters, the latest run per cell, and the refusal to compare
numbers that came from different protocols."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from bench.core.errors import BenchError

CLEAN_LABEL = "clean"
# one result cell; a later run of the same cell replaces an earlier one
CELL_KEY = ["suite", "encoder", "task", "dataset", "attack", "eps_str", "metric"]
# what makes two robust numbers comparable (DESIGN §2: never mix protocols in one column)
PROTOCOL_KEY = ["attack", "protocol", "steps", "restarts", "precision"]


@dataclass(frozen=True)
class Filters:
    suites: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    encoders: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    protocols: tuple[str, ...] = ()  # attack names; clean rows always pass
    n_samples: tuple[int, ...] = ()
    seeds: tuple[int, ...] = ()
    metric_overrides: dict[str, str] = field(default_factory=dict)


def eps_label(eps_str) -> str:
    return CLEAN_LABEL if str(eps_str) in ("0", "0.0", "") else str(eps_str)


def _canonical(names: Iterable[str], registry) -> set[str]:
    """Registered names through their aliases (``apgd-ce`` → ``apgd``); unknown names pass as typed, so rows written
    by other versions stay selectable."""
    out = set()
    for name in names:
        try:
            out.add(registry.canonical(name))
        except BenchError:
            out.add(name)
    return out


def apply_filters(rows: pd.DataFrame, f: Filters) -> pd.DataFrame:
    from attacks.registry import ATTACKS
    from bench.encoders.registry import ENCODERS
    from tasks.registry import TASKS

    if f.suites:
        rows = rows[rows["suite"].isin(f.suites)]
    if f.tasks:
        rows = rows[rows["task"].isin(_canonical(f.tasks, TASKS))]
    if f.encoders:
        rows = rows[rows["encoder"].isin(_canonical(f.encoders, ENCODERS))]
    if f.datasets:
        rows = rows[rows["dataset"].isin(f.datasets)]
    if f.protocols:
        rows = rows[(rows["eps"] == 0) | rows["attack"].isin(_canonical(f.protocols, ATTACKS))]
    if f.n_samples:
        rows = rows[rows["n_samples"].isin(f.n_samples)]
    if f.seeds:
        rows = rows[rows["seed"].isin(f.seeds)]
    return rows


def latest(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: the most recently started run wins (ties broken by run id, so the choice is stable)."""
    return rows.sort_values(["started_at", "run_id"]).drop_duplicates(CELL_KEY, keep="last")


def single_suite(rows: pd.DataFrame) -> str:
    suites = sorted(rows["suite"].unique())
    if len(suites) > 1:
        # the same encoder name is a different model in each suite, so rows would silently mix
        raise BenchError(f"results from several suites ({', '.join(suites)}); pick one with --suite")
    return suites[0]


def selected_attacks(f: Filters) -> tuple[str, ...]:
    """The attack names ``--protocol`` selects, canonical, in the order given (duplicates dropped)."""
    from attacks.registry import ATTACKS

    return tuple(dict.fromkeys(next(iter(_canonical([p], ATTACKS))) for p in f.protocols))


def split_by_attack(f: Filters) -> bool:
    """Several protocols asked for by name (``--protocol aa-custom,pgd-100-tga``): each gets columns of its own."""
    return len(selected_attacks(f)) > 1


def check_single_protocol(rows: pd.DataFrame, by_attack: bool = False) -> None:
    """Refuse a column (task, dataset, ε — and the attack name when protocols have columns of their own) whose
    robust numbers come from different protocols."""
    attacked = rows[rows["eps"] > 0]
    keys = ["task", "dataset", "eps_str"] + (["attack"] if by_attack else [])
    for key, sub in attacked.groupby(keys):
        task, dataset, eps = key[:3]
        found = sub[PROTOCOL_KEY].astype(str).drop_duplicates()
        if len(found) > 1:
            names = sorted({f"{r.attack} ({r.protocol}, {r.precision})" for r in found.itertuples()})
            hint = ("one attack name run with different settings (iterations, restarts, precision): re-run one "
                    "set" if by_attack else "pick one with --protocol, or name several (--protocol a,b) to give "
                    "each its own columns")
            raise BenchError(f"results for {task}/{dataset} at ε={eps} come from different protocols "
                             f"({'; '.join(names)}); {hint}")


def mixed_sample_sets(rows: pd.DataFrame) -> list[str]:
    """Warnings for encoders whose cells of one dataset come from different sample sets (n, seed): their clean and
    robust numbers would then be measured on different images."""
    out = []
    for (enc, task, dataset), sub in rows.groupby(["encoder", "task", "dataset"], sort=False):
        sets = sorted({(int(n), int(s)) for n, s in zip(sub["n_samples"], sub["seed"])})
        if len(sets) > 1:
            shown = ", ".join(f"n={n} seed={s}" for n, s in sets)
            out.append(f"warning: {enc} {task}/{dataset} mixes sample sets ({shown}); pick one with --n-samples "
                       "and --seed")
    return out


def encoder_order(names: Iterable[str]) -> list[str]:
    """Registry order (CLIP first, then each method at 2/255 and 4/255), then unknown names as they come."""
    from bench.encoders.registry import ENCODERS

    names = list(dict.fromkeys(names))
    known = [n for n in ENCODERS.names() if n in names]
    return known + [n for n in names if n not in known]
