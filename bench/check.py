"""Regression check against a committed baseline of tidy rows (``results/baselines/micro.csv``).

Every baseline cell (encoder × task × dataset × attack × ε, the task's headline metric, plus the sanity-check rows)
is compared with the same cell re-computed now (or read from a results directory). A cell regresses when:

- its number moved by more than the tolerance, in either direction, because each direction means something:
  * clean score **down**: the model, data or preprocessing broke;  clean score **up**: the model or data changed
    (refresh the baseline together with such a change, never silently);
  * robust score **up**: the attack got weaker (fewer iterations, masked gradients, a wrong ε) — the failure
    this check exists for, since it makes every defence look better;  robust score **down**: the defence got
    weaker (or the attack stronger: refresh the baseline if that was the intent);
  "up" means better for the defender (higher accuracy, CIDEr; lower targeted-attack success);
- its protocol changed (protocol summary, iterations, restarts, precision: a silent iteration cut shows here before
  any number moves), or it is missing (a cell is keyed by its sample count and seed too: other samples are not
  comparable);
- a sanity check that passed in the baseline now fails.

An encoder is its name and its checkpoint (``encoder_sha256``): a baseline cell is compared with the same cell of the
same checkpoint. A re-run rebuilds each encoder from its rows' ``encoder_source`` (``bench.check_rebuild``) and reads
its checkpoint before any cell runs. Another checkpoint than the baseline's (under the same source, or in the
results read) fails the check in one line naming both hashes (``checkpoint_failures``), unless the encoder is trained
on demand (training is not bit-identical across machines: its tolerance has a training-noise part) or the user allows
it (``--allow-new-checkpoint``); then it is compared and a note names both checkpoints and their sources. When the
results hold several other checkpoints under the name (``fare4`` and ``fare4=my.pt``), the cell is not compared with
any of them and fails as ambiguous.

Tolerance: ``sigmas`` × NOISE_RATIO × the binomial standard deviation sqrt(p(1−p)/n) of a proportion, with p
shrunk as (k+1)/(n+2) so that a cell at 0 % or 100 % still tolerates a sample or two. NOISE_RATIO is the measured
seed-to-seed standard deviation over the binomial one (scripts/measure_noise.py; docs/regression-check.md). A row of the
baseline may carry its own ``tolerance`` (absolute, stored units), which wins: ``--write-baseline`` records one per
compared cell, from evaluation noise and, for an encoder trained on demand, measured training noise
(``bench.check_tolerance``), with its reason and the value the cell had before (``BASELINE_COLUMNS``); metrics that
are not proportions need one given by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.core.eps import parse_eps
from bench.core.errors import BenchError
from bench.encoders.sources.train import Trained
from bench.report.metrics import SANITY_PREFIX, headline_rows, style
from bench.report.sanity import read_card
from bench.report.select import CELL_KEY, with_checkpoint_columns
from bench.runner import RunRequest, run
from bench.store import ROW_COLUMNS, card_checkpoint, read_rows

DEFAULT_SIGMAS = 3.0
NOISE_RATIO = 1.0
PROTOCOL_COLUMNS = ["protocol", "steps", "restarts", "precision"]
SAMPLE_COLUMNS = ["n_samples", "seed"]
# a baseline may hold the same cell on several sample sets (e.g. a small one for a quick test), so they are keys
CHECK_KEY = CELL_KEY + SAMPLE_COLUMNS
# the same cell whatever checkpoint measured it: how a refreshed baseline row replaces the old one
ANY_CHECKPOINT_KEY = [c for c in CHECK_KEY if c != "encoder_sha256"]
# what a baseline records beyond result rows, per compared cell (bench.check_tolerance writes them)
BASELINE_COLUMNS = ["tolerance", "tolerance_eval", "tolerance_train", "tolerance_reason", "previous_value"]


def tolerance(value: float, n: int, sigmas: float = DEFAULT_SIGMAS, ratio: float = NOISE_RATIO) -> float:
    """Allowed |change| of a proportion measured on ``n`` samples (stored units, e.g. 0.05 = 5 points)."""
    p = (value * n + 1) / (n + 2)
    return sigmas * ratio * math.sqrt(p * (1 - p) / n)


@dataclass(frozen=True)
class CellResult:
    encoder: str
    task: str
    dataset: str
    attack: str
    eps_str: str
    metric: str
    n_samples: int
    baseline: float
    current: float  # NaN when missing
    tolerance: float
    ok: bool
    reason: str = ""
    previous: float = math.nan  # the baseline's value before its last refresh (NaN: not recorded)
    tolerance_reason: str = ""  # why the tolerance is what it is (written by --write-baseline)
    skipped: bool = False  # not run (the check stopped before it); never ok

    @property
    def name(self) -> str:
        eps = "clean" if self.eps_str in ("0", "0.0") else f"{self.attack} ε={self.eps_str}"
        return f"{self.encoder} {self.task}/{self.dataset} {eps} {self.metric} (n={self.n_samples})"


def read_baseline(path: Path) -> pd.DataFrame:
    if not Path(path).is_file():
        raise BenchError(f"baseline file not found: {path}")
    return require_columns(read_rows(Path(path)), ROW_COLUMNS, f"baseline {path}", "a file of tidy result rows")


def require_columns(table: pd.DataFrame, columns: list[str], what: str, kind: str) -> pd.DataFrame:
    """``table`` if it has ``columns`` and a row; else a one-line error saying ``what`` is not ``kind``."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise BenchError(f"{what} is not {kind} (missing columns: {', '.join(missing)})")
    if table.empty:
        raise BenchError(f"{what} has no rows")
    return table


def latest_per_sample_set(rows: pd.DataFrame) -> pd.DataFrame:
    rows = with_checkpoint_columns(rows)
    return rows.sort_values(["started_at", "run_id"]).drop_duplicates(CHECK_KEY, keep="last")


def compared_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The cells a check compares: each task's headline metric and the sanity checks, latest run per cell."""
    rows = latest_per_sample_set(rows)
    sanity = rows["metric"].astype(str).str.startswith(SANITY_PREFIX)
    return pd.concat([headline_rows(rows[~sanity]), rows[sanity]], ignore_index=True)


def cell_tolerance(row, sigmas: float) -> float:
    own = getattr(row, "tolerance", math.nan)
    if own is not None and not pd.isna(own):
        return float(own)
    if style(row.metric).proportion:
        return tolerance(float(row.value), int(row.n_samples), sigmas)
    raise BenchError(f"baseline row {row.encoder} {row.task}/{row.dataset} ε={row.eps_str}: no noise model for "
                     f"metric {row.metric!r}; give the row a `tolerance` (absolute, in stored units)")


def _judge(base, cur, tol: float) -> tuple[bool, str]:
    """(ok, reason) for one numeric cell; see the module docstring for what each direction means."""
    s = style(base.metric)
    delta = float(cur.value) - float(base.value)
    if abs(delta) <= tol:
        return True, ""
    shown = f"{abs(delta) * s.scale:.1f} (tolerance {tol * s.scale:.1f}, baseline {base.value * s.scale:.1f}, " \
            f"now {cur.value * s.scale:.1f})"
    better = delta > 0 if s.higher_is_better else delta < 0
    if float(base.eps) == 0:
        if better:
            return False, f"clean {base.metric} rose by {shown}: the model or data changed; refresh the baseline " \
                          "if that was intended"
        return False, f"clean {base.metric} dropped by {shown}: the model, data or preprocessing changed"
    if better:
        return False, f"robust {base.metric} rose by {shown}: the attack got weaker (fewer iterations, masked " \
                      "gradients, a smaller ε?) or the defence stronger"
    return False, f"robust {base.metric} fell by {shown}: the defence got weaker or the attack stronger"


def _differences(base, cur, columns: list[str]) -> list[str]:
    return [f"{c} {getattr(base, c)!s} → {getattr(cur, c)!s}" for c in columns
            if str(getattr(base, c)) != str(getattr(cur, c))]


def key_of(row, columns: list[str]) -> tuple:
    """A row's values in ``columns``, as text: a key that matches across files whatever types they were read as."""
    return tuple(str(getattr(row, k)) for k in columns)


def _counterpart(b, index: dict, any_checkpoint: dict) -> tuple[object | None, str]:
    """The current row to compare baseline row ``b`` with, or (None, why not): the same checkpoint's, else the one
    other checkpoint the results hold under the name; several others are ambiguous."""
    c = index.get(key_of(b, CHECK_KEY))
    if c is not None:
        return c, ""
    others = any_checkpoint.get(key_of(b, ANY_CHECKPOINT_KEY), [])
    if len(others) == 1:
        return others[0], ""
    if others:
        shas = ", ".join(str(o.encoder_sha256)[:12] or "unknown" for o in others)
        return None, (f"ambiguous: the results hold {len(others)} other checkpoints under {b.encoder} ({shas}), none "
                      f"the baseline's ({str(b.encoder_sha256)[:12] or 'unknown'}); keep one per name")
    return None, ""


def compare(baseline: pd.DataFrame, current: pd.DataFrame, sigmas: float = DEFAULT_SIGMAS) -> list[CellResult]:
    base = compared_rows(baseline)
    cur = latest_per_sample_set(current) if len(current) else with_checkpoint_columns(current)
    index = {key_of(r, CHECK_KEY): r for r in cur.itertuples()}
    any_checkpoint: dict[tuple, list] = {}
    for r in cur.itertuples():
        any_checkpoint.setdefault(key_of(r, ANY_CHECKPOINT_KEY), []).append(r)
    elsewhere = {}  # the same cell on other sample sets, to say why a cell is missing
    cell_key = [k for k in CELL_KEY if k != "encoder_sha256"]
    for r in cur.itertuples():
        elsewhere.setdefault(key_of(r, cell_key), []).append(f"n={r.n_samples} seed={r.seed}")
    results = []
    for b in base.itertuples():
        is_sanity = str(b.metric).startswith(SANITY_PREFIX)
        tol = 0.0 if is_sanity else cell_tolerance(b, sigmas)
        c, ambiguous = _counterpart(b, index, any_checkpoint)
        head = (b.encoder, b.task, b.dataset, b.attack, str(b.eps_str), b.metric, int(b.n_samples), float(b.value))
        told = dict(previous=number_or_nan(getattr(b, "previous_value", math.nan)),
                    tolerance_reason=text_or_empty(getattr(b, "tolerance_reason", "")))
        if c is None:
            other = sorted(set(elsewhere.get(key_of(b, cell_key), [])))
            why = ambiguous or (f"not comparable: the results have it only with {', '.join(other)}" if other else
                                "missing from the current results")
            results.append(CellResult(*head, math.nan, tol, False, why, **told))
            continue
        if float(b.eps) > 0 and _differences(b, c, PROTOCOL_COLUMNS):
            ok, reason = False, "protocol changed: " + "; ".join(_differences(b, c, PROTOCOL_COLUMNS))
        elif is_sanity:
            ok = not (b.value >= 0.5 and c.value < 0.5)
            reason = "" if ok else f"sanity check {b.metric[len(SANITY_PREFIX):]} passed in the baseline, now fails"
        else:
            ok, reason = _judge(b, c, tol)
        results.append(CellResult(*head, float(c.value), tol, ok, reason, **told))
    return results


def number_or_nan(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def text_or_empty(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _requests(baseline: pd.DataFrame, specs: dict, out: Path, allow_training: bool, device: str, progress: bool):
    """The runs that recompute the baseline's cells: one per (suite, encoder, sample set, precision, attack), each
    with the encoder's rebuilt spec (``specs``: {(suite, encoder): EncoderSpec})."""
    reqs = []
    for (suite, enc, seed, n, precision), group in baseline.groupby(
            ["suite", "encoder", "seed", "n_samples", "precision"], sort=False):
        if (suite, enc) not in specs:
            continue  # not loadable here (it needs training, not allowed): reported by the caller
        attacked = group[group["eps"] > 0]
        attacks = list(dict.fromkeys(attacked["attack"])) or ["none"]
        for attack in attacks:
            eps = sorted({parse_eps(e) for e in attacked.loc[attacked["attack"] == attack, "eps_str"]})
            reqs.append(RunRequest(suite=suite, encoders=(specs[(suite, enc)],), attack=attack, eps=tuple(eps),
                                   tasks=tuple(dict.fromkeys(group["task"])),
                                   datasets=tuple(dict.fromkeys(group["dataset"])), n_samples=int(n), seed=int(seed),
                                   out=out, device=device, force=True, allow_training=allow_training,
                                   progress=progress, precision=precision))
    return reqs


def rerun(baseline: pd.DataFrame, specs: dict, out: Path, *, allow_training: bool = False, device: str = "cpu",
          progress: bool = False) -> pd.DataFrame:
    """Recompute every baseline cell of the encoders in ``specs`` ({(suite, encoder): EncoderSpec}, see
    ``bench.check_rebuild``) into ``out`` (forced: a cached cell from older code would prove nothing)."""
    frames = [run(req) for req in _requests(baseline, specs, out, allow_training, device, progress)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ROW_COLUMNS)


def with_checkpoints(rows: pd.DataFrame, store_root: Path) -> pd.DataFrame:
    """``rows`` with their checkpoint columns, filled from the run cards where the rows predate them (a derived run,
    a cross-cell sanity check, has no checkpoint of its own and keeps "")."""
    out = with_checkpoint_columns(rows).copy()
    for i, run_id in out.loc[out["encoder_sha256"] == "", "run_id"].items():
        sha, source = card_checkpoint(read_card(store_root, run_id))
        out.loc[i, "encoder_sha256"] = sha
        out.loc[i, "encoder_source"] = out.loc[i, "encoder_source"] or source
    return out


def _changed_checkpoints(baseline: pd.DataFrame, current: pd.DataFrame):
    """(encoder, baseline sha, baseline source, sha now, source now) for each encoder whose results (or rebuilt
    encoder) hold exactly one checkpoint, not the baseline's."""
    baseline, current = with_checkpoint_columns(baseline), with_checkpoint_columns(current)
    for enc, group in current.groupby("encoder", sort=False):
        now = group[group["encoder_sha256"] != ""].drop_duplicates("encoder_sha256")
        before = baseline.loc[(baseline["encoder"] == enc) & (baseline["encoder_sha256"] != ""),
                              ["encoder_sha256", "encoder_source"]].drop_duplicates("encoder_sha256")
        if len(now) != 1 or before.empty or now["encoder_sha256"].iloc[0] in set(before["encoder_sha256"]):
            continue
        yield (enc, before["encoder_sha256"].iloc[0], text_or_empty(before["encoder_source"].iloc[0]),
               now["encoder_sha256"].iloc[0], text_or_empty(now["encoder_source"].iloc[0]))


def retrained(source: str) -> bool:
    """Whether a recorded source is an encoder trained on demand, whose checkpoint may differ on another machine."""
    return Trained.from_description(source) is not None


def checkpoint_failures(baseline: pd.DataFrame, current: pd.DataFrame, allow_new: bool = False) -> dict[str, str]:
    """{encoder: one line} for each encoder whose checkpoint is not the baseline's, unless it is trained on demand
    (training is not bit-reproducible across machines; the training-noise tolerance covers it) or ``allow_new``."""
    if allow_new:
        return {}
    return {enc: f"CHECKPOINT CHANGED {enc}: sha256 {sha} ({source or 'source unknown'}) is not the baseline's {was} "
                 f"({was_source or 'source unknown'}); refresh the baseline with --write-baseline if the change is "
                 "intended, or compare anyway with --allow-new-checkpoint"
            for enc, was, was_source, sha, source in _changed_checkpoints(baseline, current)
            if not (retrained(was_source) or retrained(source))}


def checkpoint_notes(baseline: pd.DataFrame, current: pd.DataFrame) -> list[str]:
    """A changed checkpoint that is compared (a retrained encoder, or any with --allow-new-checkpoint) explains
    moved numbers and says the baseline may be stale."""
    notes = []
    for enc, was, was_source, sha, source in _changed_checkpoints(baseline, current):
        sources = f"; source {was_source or 'unknown'} → {source or 'unknown'}" if was_source != source else ""
        notes.append(f"note: {enc}'s checkpoint differs from the baseline's ({was[:12]} → {sha[:12]}{sources}); "
                     "refresh the baseline if that change is intended")
    return notes


def merge_baseline(baseline: pd.DataFrame | None, new_rows: pd.DataFrame) -> pd.DataFrame:
    """The baseline with ``new_rows``' cells replacing the same cells (other cells kept)."""
    new_rows = latest_per_sample_set(new_rows)
    known = new_rows[new_rows["encoder_sha256"] != ""]
    several = known.groupby("encoder")["encoder_sha256"].nunique()
    if (several > 1).any():
        names = ", ".join(several[several > 1].index)
        raise BenchError(f"the new rows hold several checkpoints under {names}; a baseline keeps one per name "
                         "(select the rows of one with --encoder from a results directory holding only it)")
    if baseline is None or baseline.empty:
        merged = new_rows
    else:  # a refreshed cell replaces the old one whatever checkpoint measured it
        baseline = with_checkpoint_columns(baseline)
        keys = set(map(tuple, new_rows[ANY_CHECKPOINT_KEY].astype(str).to_numpy()))
        keep = [tuple(r) not in keys for r in baseline[ANY_CHECKPOINT_KEY].astype(str).to_numpy()]
        merged = pd.concat([baseline[keep], new_rows], ignore_index=True)
    columns = ROW_COLUMNS + [c for c in BASELINE_COLUMNS if c in merged.columns]
    return merged[columns].sort_values(["suite", "encoder", "task", "dataset", "eps", "attack", "metric"])
