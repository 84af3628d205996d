"""Failed sanity checks (the attack engine's gradient-masking checks, stored as ``sanity:<name>`` rows with 1.0 =
passed, 0.0 = failed, details in the run card under "sanity") and cells with non-finite samples: a report lists
them and marks the cells they affect."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.report.metrics import SANITY_PREFIX


@dataclass(frozen=True)
class Flag:
    encoder: str
    task: str
    dataset: str
    eps_str: str
    attack: str
    check: str
    run_id: str
    detail: str = ""

    @property
    def cell(self) -> tuple[str, str, str, str]:
        return (self.encoder, self.task, self.dataset, self.eps_str)


def read_card(store_root: Path | None, run_id: str) -> dict:
    """A run's card, or {} when it is missing or unreadable (a report must not fail on one bad card)."""
    if store_root is None:
        return {}
    path = Path(store_root) / "runs" / run_id / "card.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}


def card_detail(card: dict, check: str) -> str:
    """What the run card says about one check; the card's "sanity" may map names to details or list them."""
    sanity = card.get("sanity")
    found = None
    if isinstance(sanity, dict):
        found = sanity.get(check, sanity.get(SANITY_PREFIX + check))
    elif isinstance(sanity, list):
        found = next((s for s in sanity if isinstance(s, dict) and s.get("name") in (check, SANITY_PREFIX + check)),
                     None)
    if found is None:
        return ""
    if isinstance(found, dict) and "details" in found:  # {"name", "passed", "details"}: the evidence is the details
        found = found["details"]
    return found if isinstance(found, str) else json.dumps(found, sort_keys=True, default=str, ensure_ascii=False)


def failed_flags(rows: pd.DataFrame, store_root: Path | None = None) -> list[Flag]:
    """Every failed sanity check and every cell with non-finite samples among ``rows`` (already filtered and
    reduced to the latest run per cell)."""
    flags = []
    sanity = rows[rows["metric"].astype(str).str.startswith(SANITY_PREFIX) & (rows["value"] < 0.5)]
    nonfinite = rows[(rows["metric"] == "nonfinite_samples") & (rows["value"] > 0)]
    for r in sanity.itertuples():
        check = r.metric[len(SANITY_PREFIX):]
        flags.append(Flag(r.encoder, r.task, r.dataset, str(r.eps_str), r.attack, check, r.run_id,
                          card_detail(read_card(store_root, r.run_id), check)))
    for r in nonfinite.itertuples():
        flags.append(Flag(r.encoder, r.task, r.dataset, str(r.eps_str), r.attack, "nonfinite", r.run_id,
                          f"{int(r.value)} sample(s) with NaN/Inf logits or attack loss"))
    return sorted(flags, key=lambda f: (f.encoder, f.task, f.dataset, f.eps_str, f.check))


def flags_markdown(flags: list[Flag]) -> str:
    if not flags:
        return ""
    lines = ["", "### Failed sanity checks (cells marked †)", "",
             "| encoder | task | dataset | ε | attack | check | run | detail |", "|---|---|---|---|---|---|---|---|"]
    for f in flags:
        detail = f.detail.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {f.encoder} | {f.task} | {f.dataset} | {f.eps_str} | {f.attack} | {f.check} | {f.run_id} "
                     f"| {detail} |")
    return "\n".join(lines) + "\n"
