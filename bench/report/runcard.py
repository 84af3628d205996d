"""`bench report --run RUN_ID`: the full provenance of one result, from its card.json and rows.csv."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import pandas as pd

from bench.core.errors import BenchError
from bench.report.bootstrap import read_records
from bench.report.metrics import SANITY_PREFIX
from bench.report.sanity import card_detail


def resolve_run(store_root: Path, run_id: str) -> Path:
    """The run directory for an exact id or a unique prefix of one."""
    runs = Path(store_root) / "runs"
    names = sorted(p.name for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []
    if run_id in names:
        return runs / run_id
    matches = [n for n in names if n.startswith(run_id)]
    if len(matches) == 1:
        return runs / matches[0]
    if len(matches) > 1:
        raise BenchError(f"run id {run_id!r} is ambiguous: {', '.join(matches[:5])}"
                         f"{' …' if len(matches) > 5 else ''}")
    close = difflib.get_close_matches(run_id, names, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else f" (the store has {len(names)} runs)"
    raise BenchError(f"no run {run_id!r} under {runs}{hint}")


def cross_cell_checks(directory: Path) -> list[tuple[str, dict, pd.DataFrame]]:
    """Derived runs (checks across cells, e.g. accuracy never rising with ε) whose card names this run."""
    found = []
    for other in sorted(directory.parent.glob(f"*{directory.name}*")):
        if other == directory or not (other / "rows.csv").is_file():
            continue
        try:
            card = json.loads((other / "card.json").read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        if directory.name in card.get("cells", ()):
            rows = pd.read_csv(other / "rows.csv", keep_default_na=False, na_values=[""])
            found.append((other.name, card, rows[rows["metric"].astype(str).str.startswith(SANITY_PREFIX)]))
    return found


def _block(title: str, items: dict) -> list[str]:
    lines = [title]
    width = max((len(str(k)) for k in items), default=0)
    for k, v in items.items():
        text = json.dumps(v, default=str) if isinstance(v, dict | list) else str(v)
        lines.append(f"  {str(k):<{width}}  {text}")
    return lines + [""]


def describe_run(store_root: Path, run_id: str) -> str:
    directory = resolve_run(store_root, run_id)
    try:
        card = json.loads((directory / "card.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(f"cannot read the run card {directory / 'card.json'}: {exc}") from exc
    rows_path = directory / "rows.csv"
    rows = pd.read_csv(rows_path, keep_default_na=False, na_values=[""], dtype={"eps_str": str}) \
        if rows_path.is_file() else pd.DataFrame()
    protocol = card.get("protocol") or {}
    out = [f"run {directory.name}  ({card.get('status', 'unknown status')})", ""]
    out += _block("configuration", card.get("config", {}))
    out += _block("encoder", card.get("encoder", {}))
    stages = protocol.get("stages") or []
    out += _block("protocol", {"name": protocol.get("name"), "summary": card.get("protocol_summary"),
                               "description": protocol.get("description"), "norm": protocol.get("norm"),
                               **{f"stage {i + 1}": s for i, s in enumerate(stages)}})
    out += _block("provenance", {"git_sha": card.get("git_sha"), "device": card.get("device"),
                                 "threads": card.get("threads"), "batch_size": card.get("batch_size"),
                                 **{f"version {k}": v for k, v in (card.get("versions") or {}).items()}})
    records = read_records(store_root, directory.name)
    out += _block("timings", {"started_at": card.get("started_at"), "finished_at": card.get("finished_at"),
                              "compute_seconds": card.get("compute_seconds"),
                              "per-sample records": len(records)})
    if len(rows):
        metrics = rows[~rows["metric"].astype(str).str.startswith(SANITY_PREFIX)]
        out += ["metrics"] + ["  " + line for line in metrics[["metric", "value", "ci_low", "ci_high", "n_samples"]]
                              .to_string(index=False).splitlines()] + [""]
        sanity = rows[rows["metric"].astype(str).str.startswith(SANITY_PREFIX)]
        checks = {r.metric[len(SANITY_PREFIX):]: ("passed" if r.value >= 0.5 else "FAILED")
                  for r in sanity.itertuples()}
        detail = {f"{name} ({state})": card_detail(card, name) or "–" for name, state in checks.items()}
        for derived_id, derived_card, derived_rows in cross_cell_checks(directory):
            for r in derived_rows.itertuples():
                name = str(r.metric)[len(SANITY_PREFIX):]
                state = "passed" if r.value >= 0.5 else "FAILED"
                detail[f"{name} ({state}; run {derived_id})"] = card_detail(derived_card, name) or "–"
        out += _block("sanity checks", detail or {"(none recorded)": ""})
    else:
        out += ["metrics", "  (none: the run has not finished; rows.csv is written when it completes)", ""]
    return "\n".join(out)
