"""The paper-style table: rows = encoders, columns = task/dataset × ε (clean first), per-task averages over
datasets, the best value per column, confidence intervals on request, failed sanity checks marked."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from attacks.protocols import ADAPTIVE
from bench.core.errors import BenchError
from bench.core.stats import bootstrap_interval
from bench.report.bootstrap import read_records
from bench.report.constant import constant_prediction_notes
from bench.report.metrics import SANITY_PREFIX, headline_rows, per_sample_values, style
from bench.report.sanity import Flag, failed_flags
from bench.report.select import (
    CLEAN_LABEL,
    Filters,
    apply_filters,
    check_single_protocol,
    encoder_order,
    eps_label,
    label_encoders,
    latest,
    mixed_sample_sets,
    other_engine_note,
    selected_attacks,
    single_suite,
    split_by_attack,
)
from bench.report.worst import GAP, WORST, derived_columns, worst_case_values
from bench.suites import get_suite
from bench.train.objectives import OBJECTIVES, method_label

AVERAGE = "average"
ZERO_SHOT_AVERAGE = "zero-shot average"  # the label of the average when a task has in-distribution datasets
CI_METHODS = ("wilson", "bootstrap")


@dataclass(frozen=True)
class Column:
    task: str
    dataset: str  # AVERAGE for the mean over the task's datasets
    eps_str: str  # "0" for clean
    eps: float
    metric: str
    attack: str = ""  # the protocol of an attacked column when several protocols have columns of their own

    @property
    def eps_label(self) -> str:
        """"4/255", or "4/255 aa-custom" when the column is one of several protocols'."""
        return eps_label(self.eps_str) + (f" {self.attack}" if self.attack else "")

    @property
    def is_gap(self) -> bool:
        """A difference of two robust accuracies (``bench.report.worst``), not an accuracy: kept out of plots."""
        return self.attack.startswith(GAP)

    @property
    def cell(self) -> tuple[str, str, str, str]:
        """(task, dataset, eps_str, attack): what a stored cell must match to fill this column."""
        return (self.task, self.dataset, self.eps_str, self.attack)


@dataclass
class ReportTable:
    suite: str
    encoders: list[str]
    columns: list[Column]
    values: dict[tuple[str, Column], float]  # stored units
    intervals: dict[tuple[str, Column], tuple[float, float]] = field(default_factory=dict)
    in_distribution: tuple[str, ...] = ()  # datasets outside the average (the suite's in-distribution ones)
    flags: dict[tuple[str, Column], list[str]] = field(default_factory=dict)
    flag_list: list[Flag] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ci: str | None = None
    rows: pd.DataFrame = field(default_factory=pd.DataFrame)  # the headline rows behind the cells

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(c.task for c in self.columns))

    def dataset_label(self, col: Column) -> str:
        """Datasets are named alone unless two tasks share a dataset name or the table has several tasks' averages."""
        several = len(self.tasks) > 1
        if col.dataset == AVERAGE:
            average = ZERO_SHOT_AVERAGE if self.in_distribution else AVERAGE
            return f"{col.task} {average}" if several else average
        clash = len({c.task for c in self.columns if c.dataset == col.dataset}) > 1
        return f"{col.task}/{col.dataset}" if clash else col.dataset

    def display(self, enc: str, col: Column) -> float:
        """The value as printed (×100 for proportions and CIDEr), rounded to the printed digits; NaN if missing."""
        v = self.values.get((enc, col), math.nan)
        s = style(col.metric)
        return round(v * s.scale, s.digits) if not math.isnan(v) else math.nan

    def best(self, col: Column) -> set[str]:
        """Encoders with the best printed value in a column (ties all marked); none with fewer than two values, and
        none in a gap column (a difference of two numbers, neither better high nor low)."""
        if col.is_gap:
            return set()
        shown = {e: self.display(e, col) for e in self.encoders}
        shown = {e: v for e, v in shown.items() if not math.isnan(v)}
        if len(shown) < 2:
            return set()
        pick = max if style(col.metric).higher_is_better else min
        target = pick(shown.values())
        return {e for e, v in shown.items() if v == target}

    def interval(self, enc: str, col: Column) -> tuple[float, float] | None:
        lo_hi = self.intervals.get((enc, col))
        if lo_hi is None or any(math.isnan(x) for x in lo_hi):
            return None
        s = style(col.metric)
        return (round(lo_hi[0] * s.scale, s.digits), round(lo_hi[1] * s.scale, s.digits))

    def frame(self, with_ci: bool = False) -> pd.DataFrame:
        """Printed values as a DataFrame: index = encoder, columns = (dataset label, ε label[, ci_low/ci_high])."""
        data: dict[tuple[str, str], list[float]] = {}
        for col in self.columns:
            key = (self.dataset_label(col), col.eps_label)
            data[key] = [self.display(e, col) for e in self.encoders]
            if with_ci:
                cis = [self.interval(e, col) or (math.nan, math.nan) for e in self.encoders]
                data[(key[0], f"{key[1]} ci_low")] = [c[0] for c in cis]
                data[(key[0], f"{key[1]} ci_high")] = [c[1] for c in cis]
        out = pd.DataFrame(data, index=pd.Index(self.encoders, name="encoder"))
        out.columns = pd.MultiIndex.from_tuples(out.columns)
        return out


def _suite(name: str):
    try:
        return get_suite(name)
    except BenchError:
        return None


def suite_in_distribution(name: str) -> tuple[str, ...]:
    """The datasets of suite ``name`` that are its fine-tuning distribution (outside the zero-shot average);
    none for an unknown suite."""
    return tuple(getattr(_suite(name), "in_distribution", ()))


def _task_layout(suite: str, head: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """Tasks and their datasets in the suite's order when the suite is known, else in order of appearance."""
    known = getattr(_suite(suite), "tasks", {})
    tasks = list(dict.fromkeys([t for t in known if t in set(head["task"])] + list(head["task"])))
    layout = []
    for task in tasks:
        present = list(dict.fromkeys(head.loc[head["task"] == task, "dataset"]))
        order = [d for d in known.get(task, ()) if d in present]
        layout.append((task, order + [d for d in present if d not in order]))
    return layout


def _column_attack(eps: float, attack: str, attacks: tuple[str, ...]) -> str:
    """The attack a row's column is keyed by: its own when protocols are split (``attacks``), else none."""
    return attack if attacks and eps > 0 else ""


def averaged(datasets: list[str], in_distribution: tuple[str, ...]) -> list[str]:
    """The datasets a task's average is taken over: all but the in-distribution ones."""
    return [d for d in datasets if d not in in_distribution]


def _columns(head: pd.DataFrame, layout, attacks: tuple[str, ...] = (), in_distribution: tuple[str, ...] = ()
             ) -> list[Column]:
    """Per task and dataset, a column per ε (clean first); with ``attacks`` (several protocols selected) a column
    per ε and attack, in the order the attacks were named, then the worst case over them and the gap of each
    transfer protocol to it (``bench.report.worst``). The average (over the datasets that are not in-distribution)
    follows the datasets it averages; in-distribution datasets come first."""
    cols = []
    derived = derived_columns(attacks)
    rank = {a: i for i, a in enumerate(attacks + derived)}
    for task, datasets in layout:
        sub = head[head["task"] == task]
        metric = sub["metric"].iloc[0]
        keyed = sub.assign(key=[_column_attack(e, a, attacks) for e, a in zip(sub["eps"], sub["attack"])])
        attacked = keyed.loc[keyed["eps"] > 0, ["eps_str", "eps"]].drop_duplicates()
        extra = pd.DataFrame([(r.eps_str, r.eps, k) for r in attacked.itertuples() for k in derived],
                             columns=["eps_str", "eps", "key"])
        budgets = pd.concat([keyed[["eps_str", "eps", "key"]], extra]).drop_duplicates(["eps_str", "key"])
        budgets = sorted(budgets.itertuples(), key=lambda b: (b.eps, rank.get(b.key, -1)))
        inside = [d for d in datasets if d in in_distribution]
        outside = averaged(datasets, in_distribution)
        for dataset in [*inside, *outside, AVERAGE] if len(outside) > 1 else [*inside, *outside]:
            for b in budgets:
                cols.append(Column(task, dataset, str(b.eps_str), float(b.eps), metric, b.key))
    return cols


def _intervals(head: pd.DataFrame, ci: str | None, store_root: Path | None, notes: list[str],
               attacks: tuple[str, ...] = ()) -> dict:
    """(encoder, task, dataset, eps_str, column attack) → (low, high) in stored units."""
    out = {}
    if ci is None:
        return out
    fallback = set()
    for r in head.itertuples():
        key = (r.encoder, r.task, r.dataset, str(r.eps_str), _column_attack(r.eps, r.attack, attacks))
        if ci == "bootstrap" and store_root is not None:
            values = per_sample_values(r.metric, read_records(store_root, r.run_id), attacked=r.eps > 0)
            if values is not None and len(values) and abs(values.mean() - r.value) <= 1e-6 * max(1.0, abs(r.value)):
                out[key] = bootstrap_interval(values)
                continue
            fallback.add(f"{r.task}/{r.dataset}")
        out[key] = (float(r.ci_low), float(r.ci_high))
    if ci == "bootstrap":
        notes.append("95 % intervals: percentile bootstrap over per-sample records (2,000 resamples; it collapses to "
                     "a point at 0 % and 100 %, where --ci wilson does not)"
                     + (f"; stored (Wilson) intervals where per-sample values were unavailable: "
                        f"{', '.join(sorted(fallback))}" if fallback else ""))
    else:
        notes.append(stored_interval_note(set(head["metric"])))
    return out


def stored_interval_note(metrics: set[str]) -> str:
    """What the intervals stored with the rows are: a task writes Wilson's for a proportion (accuracy, success
    rate) and a bootstrap of the mean for the rest (CIDEr and VQA accuracy are not proportions)."""
    others = sorted(m for m in metrics if not style(m).proportion)
    if not others:
        return "95 % intervals: Wilson score intervals from the stored rows"
    return (f"95 % intervals: those stored with the rows (a percentile bootstrap of the mean for {', '.join(others)}"
            + ("; Wilson score for the proportions)" if len(others) < len(metrics) else ")"))


def average_interval(values: list[float], sizes: list[int]) -> tuple[float, float]:
    """95 % interval of a mean of proportions measured on independent samples: the normal approximation with each
    proportion's binomial variance, p shrunk to (k+1)/(n+2) so that 0 % and 100 % still count; clipped to [0, 1].
    (Per-sample values are read only for the datasets' own bootstrap intervals.)"""
    shrunk = [(v * n + 1) / (n + 2) for v, n in zip(values, sizes)]
    se = math.sqrt(sum(p * (1 - p) / n for p, n in zip(shrunk, sizes))) / len(values)
    mean = float(np.mean(values))
    return (max(0.0, mean - 1.959964 * se), min(1.0, mean + 1.959964 * se))


def _notes(head: pd.DataFrame, layout, attacks: tuple[str, ...] = ()) -> list[str]:
    notes = []
    if attacks:
        notes.append(f"protocols side by side, each in columns of its own (ε followed by the attack): "
                     f"{', '.join(attacks)}")
    for task, datasets in layout:
        sub = head[head["task"] == task]
        metric = sub["metric"].iloc[0]
        protocols = "; ".join(_protocol_notes(sub[sub["eps"] > 0], datasets))
        ns = ", ".join(str(int(n)) for n in sorted(sub["n_samples"].unique()))
        seeds = ", ".join(str(int(s)) for s in sorted(sub["seed"].unique()))
        notes.append(f"{task}: {style(metric).label}; {protocols or 'clean only'}; n = {ns} per dataset; "
                     f"seed {seeds}")
    return notes


def _protocol_notes(attacked: pd.DataFrame, datasets: list[str]) -> list[str]:
    """What each attack ran, as its rows say: a text per protocol, naming the datasets (a targeted stage runs at
    most C − 1 targets) and the encoders (``adaptive`` is each test-time defence's own) it ran on when not all."""
    out = []
    encoders = set(attacked["encoder"])
    for (attack, protocol, precision), group in attacked.groupby(["attack", "protocol", "precision"], sort=False):
        where = []
        if set(group["dataset"]) != set(datasets):
            where.append("on " + ", ".join(d for d in datasets if d in set(group["dataset"])))
        if set(group["encoder"]) != encoders and attack == ADAPTIVE:
            where.append("for " + ", ".join(dict.fromkeys(group["encoder"])))
        out.append(f"{attack}: {protocol}, {precision}" + (f" ({'; '.join(where)})" if where else ""))
    return out


def _defence_notes(head: pd.DataFrame) -> list[str]:
    """Each test-time defence shown, with what one defended inference costs (beside the robustness it buys)."""
    if "defence" not in head.columns:
        return []
    defended = head[head["defence"].fillna("").astype(str) != ""].drop_duplicates("encoder")
    return [f"{r.encoder}: test-time defence {r.defence}; inference {r.inference_cost} (undefended: 1 forward)"
            for r in defended.itertuples()]


def _method_notes(head: pd.DataFrame) -> list[str]:
    """What each robust encoder shown is, in the words of its training objective (e.g. which Sim-CLIP)."""
    pairs = head[head["method"].astype(str).isin(OBJECTIVES.names())].drop_duplicates("encoder")
    return [f"{r.encoder}: {method_label(str(r.method))}" for r in pairs.itertuples()]


def build_table(rows: pd.DataFrame, filters: Filters | None = None, ci: str | None = None,
                store_root: Path | None = None) -> ReportTable:
    """The report table from tidy rows (all rows of a store, or those a run returned)."""
    if ci is not None and ci not in CI_METHODS:
        raise BenchError(f"unknown interval method {ci!r} (choose {' or '.join(CI_METHODS)})")
    filters = filters or Filters()
    hidden = other_engine_note(rows, filters)
    rows = apply_filters(rows, filters)
    if rows.empty:
        raise BenchError("no results to report; run `bench run` first (or check --out and the filters)")
    suite = single_suite(rows)
    rows, checkpoints = label_encoders(latest(rows))  # one table row per (encoder, checkpoint)
    head = headline_rows(rows[~rows["metric"].astype(str).str.startswith(SANITY_PREFIX)], filters.metric_overrides)
    if head.empty:
        raise BenchError("no headline-metric results to report (check the filters and --metric)")
    attacks = selected_attacks(filters) if split_by_attack(filters) else ()
    check_single_protocol(head, by_attack=bool(attacks))
    layout = _task_layout(suite, head)
    in_distribution = suite_in_distribution(suite)
    columns = _columns(head, layout, attacks, in_distribution)
    encoders = encoder_order(head["encoder"])
    notes = (_notes(head, layout, attacks) + _method_notes(head) + _defence_notes(head) + checkpoints
             + mixed_sample_sets(head) + constant_prediction_notes(head, store_root) + hidden)
    cell_values = {(r.encoder, r.task, r.dataset, str(r.eps_str), _column_attack(r.eps, r.attack, attacks)):
                   float(r.value) for r in head.itertuples()}
    worst = worst_case_values(head, attacks, store_root, notes)
    cell_values.update(worst)
    cell_sizes = {(r.encoder, r.task, r.dataset, str(r.eps_str), _column_attack(r.eps, r.attack, attacks)):
                  int(r.n_samples) for r in head.itertuples()}
    # the worst case is a proportion over its attacks' common samples; a gap is a difference, with no size
    group_sizes = {key[:4]: n for key, n in cell_sizes.items()}
    cell_sizes.update({key: group_sizes[key[:4]] for key in worst if key[-1] == WORST})
    if in_distribution and any(d in in_distribution for d in head["dataset"]):
        notes.append(f"{ZERO_SHOT_AVERAGE}: the mean over the zero-shot datasets; in-distribution (the fine-tuning "
                     f"distribution, reported apart): {', '.join(in_distribution)}")
    cell_ci = _intervals(head, ci, store_root, notes, attacks)
    flag_list = failed_flags(rows, store_root)
    cell_flags: dict[tuple, list[str]] = {}
    for f in flag_list:
        attacked = eps_label(f.eps_str) != CLEAN_LABEL
        cell_flags.setdefault((*f.cell, f.attack if attacks and attacked else ""), []).append(f.check)

    tab = ReportTable(suite, encoders, [], {}, ci=ci, notes=notes, flag_list=flag_list, rows=head,
                      in_distribution=tuple(d for d in in_distribution if d in set(head["dataset"])))
    datasets_of = dict(layout)
    for col in columns:
        for enc in encoders:
            if col.dataset == AVERAGE:
                parts = [(enc, col.task, d, col.eps_str, col.attack)
                         for d in averaged(datasets_of[col.task], in_distribution)]
                if all(p in cell_values for p in parts):  # an average over fewer datasets would mislead
                    tab.values[(enc, col)] = float(np.mean([cell_values[p] for p in parts]))
                    if ci is not None and all(p in cell_sizes for p in parts):
                        tab.intervals[(enc, col)] = average_interval([cell_values[p] for p in parts],
                                                                     [cell_sizes[p] for p in parts])
                checks = sorted({c for p in parts for c in cell_flags.get(p, [])})
            else:
                key = (enc, *col.cell)
                if key in cell_values:
                    tab.values[(enc, col)] = cell_values[key]
                if key in cell_ci:
                    tab.intervals[(enc, col)] = cell_ci[key]
                checks = cell_flags.get(key, [])
            if checks:
                tab.flags[(enc, col)] = list(checks)
    tab.columns = [c for c in columns if any((e, c) in tab.values for e in encoders)]
    if any(c.dataset == AVERAGE for (_, c) in tab.intervals):
        notes.append(f"{tab.dataset_label(next(c for c in tab.columns if c.dataset == AVERAGE))}: 95 % interval "
                     "from the datasets' binomial variances (normal approximation)")
    return tab
