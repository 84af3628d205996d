"""The number that counts for a defence: the worst case over the attacks shown side by side, per sample — a sample
is robust only if every attack failed on it — and the gap between the papers' transfer protocol and that worst case.

Both are columns of their own beside the attacks' (``WORST``, ``GAP`` + the transfer protocol's name), never mixed
into one. They are computed from the per-sample records of the cells in the store, so they need the same samples
(n, seed) in every attack's cell; a group that lacks an attack or whose sample sets differ gets no number, and a
note says why.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from attacks.registry import ATTACKS
from bench.report.bootstrap import read_records
from bench.report.metrics import per_sample_values

WORST = "worst case"
GAP = "gap"  # column "gap <transfer protocol>": its robust accuracy minus the worst case
KEY = ["encoder", "task", "dataset", "eps_str"]


def transfer_attacks(attacks: tuple[str, ...]) -> list[str]:
    """The attacks shown that are a transfer protocol (crafted on the undefended base)."""
    out = []
    for name in attacks:
        protocol = ATTACKS.get(name) if name in ATTACKS else None
        if getattr(protocol, "craft_on", "model") == "base":
            out.append(name)
    return out


def gap_name(transfer: str) -> str:
    return f"{GAP} {transfer}"


def derived_columns(attacks: tuple[str, ...]) -> tuple[str, ...]:
    """The column keys added after the attacks' own: the worst case, then one gap per transfer protocol."""
    return (WORST, *(gap_name(t) for t in transfer_attacks(attacks))) if len(attacks) > 1 else ()


def worst_case_values(head: pd.DataFrame, attacks: tuple[str, ...], store_root: Path | None,
                      notes: list[str]) -> dict[tuple, float]:
    """(encoder, task, dataset, eps_str, column) → the worst case and the gaps, for every group that has every attack
    in ``attacks`` on one sample set; a note for the rest."""
    out: dict[tuple, float] = {}
    if len(attacks) < 2:
        return out
    attacked = head[(head["eps"] > 0) & head["attack"].isin(attacks)]
    missing, unreadable = set(), set()
    for key, group in attacked.groupby(KEY, sort=False):
        if set(group["attack"]) != set(attacks):
            missing.add(f"{key[0]} {key[1]}/{key[2]} {key[3]}")
            continue
        worst = None if store_root is None else _worst(group, store_root)
        if worst is None:
            unreadable.add(f"{key[0]} {key[1]}/{key[2]} {key[3]}")
            continue
        out[(*key, WORST)] = worst
        for transfer in transfer_attacks(attacks):
            value = float(group.loc[group["attack"] == transfer, "value"].iloc[0])
            out[(*key, gap_name(transfer))] = value - worst
    shown = ", ".join(attacks)
    notes.append(f"{WORST}: per sample, robust only if every attack shown ({shown}) failed on it"
                 + "".join(f"; {gap_name(t)}: {t}'s robust accuracy minus the worst case (the papers' transfer "
                           "protocol against every attack run)" for t in transfer_attacks(attacks)))
    if missing:
        notes.append(f"no {WORST} where an attack has no cell: {', '.join(sorted(missing))}")
    if unreadable:
        notes.append(f"no {WORST} where the per-sample records are missing or hold other samples: "
                     f"{', '.join(sorted(unreadable))}")
    return out


def _worst(group: pd.DataFrame, store_root: Path) -> float | None:
    """Mean over samples of "robust under every attack", from the cells' per-sample records; None when a cell's
    records are missing or the cells hold different samples."""
    flags = []
    for r in group.itertuples():
        records = read_records(store_root, r.run_id)
        values = per_sample_values(r.metric, records, attacked=True)
        if values is None or len(values) != int(r.n_samples):
            return None
        flags.append(pd.Series(values > 0.5, index=records["sample_id"].astype(str)))
    ids = set(flags[0].index)
    if any(set(f.index) != ids for f in flags):
        return None
    robust = pd.concat(flags, axis=1).all(axis=1)
    return float(robust.mean())
