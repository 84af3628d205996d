"""Which metric a task's table shows, how it is displayed, and which way is better — as data.

A task's headline metric comes, in order, from: a ``--metric TASK=METRIC`` override; the task class's
``headline_metric`` in the task registry; ``HEADLINE_FALLBACK`` (for tasks not registered in this process, e.g. rows
written by a newer version); "accuracy" when the task has it; the task's only non-auxiliary metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.core.errors import BenchError
from tasks.registry import TASKS

SANITY_PREFIX = "sanity:"
AUXILIARY = {"clean_accuracy", "nonfinite_samples"}  # stored beside the headline, never a table's metric

HEADLINE_FALLBACK = {
    "zeroshot": "accuracy",
    "coco-captioning": "cider",
    "flickr-captioning": "cider",
    "captioning": "cider",
    "vqav2": "vqa_accuracy",
    "textvqa": "vqa_accuracy",
    "vqa": "vqa_accuracy",
    "targeted": "success_rate",
}


@dataclass(frozen=True)
class MetricStyle:
    label: str  # axis and caption label
    scale: float = 1.0  # displayed = stored × scale
    higher_is_better: bool = True  # from the defender's side: a robust encoder scores high
    proportion: bool = False  # a fraction of samples that are right/wrong: binomial noise and Wilson intervals apply
    digits: int = 1
    upper: float | None = None  # largest displayed value, for fixed plot axes (100 for percentages)


# Stored values keep their natural scale (proportions in [0, 1], CIDEr as pycocoevalcap returns it); papers show
# them ×100.
METRIC_STYLES = {
    "accuracy": MetricStyle("accuracy (%)", 100.0, proportion=True, upper=100.0),
    "clean_accuracy": MetricStyle("clean accuracy (%)", 100.0, proportion=True, upper=100.0),
    "vqa_accuracy": MetricStyle("VQA accuracy (%)", 100.0, upper=100.0),
    "cider": MetricStyle("CIDEr", 100.0),
    "success_rate": MetricStyle("targeted attack success (%)", 100.0, higher_is_better=False, proportion=True,
                                upper=100.0),
}


def style(metric: str) -> MetricStyle:
    return METRIC_STYLES.get(metric, MetricStyle(metric))


def _registered_headline(task: str) -> str | None:
    try:
        return getattr(TASKS.get(task), "headline_metric", None)
    except BenchError:
        return None


def headline_metric(task: str, available: set[str], overrides: dict[str, str] | None = None) -> str:
    """The metric a table shows for ``task``, given the metrics its rows carry."""
    candidates = [(overrides or {}).get(task), _registered_headline(task), HEADLINE_FALLBACK.get(task)]
    for metric in candidates:
        if metric and metric in available:
            return metric
    if "accuracy" in available:
        return "accuracy"
    main = sorted(m for m in available if m not in AUXILIARY and not m.startswith(SANITY_PREFIX))
    if len(main) == 1:
        return main[0]
    raise BenchError(f"cannot tell which metric to show for task {task!r} (it has {', '.join(sorted(available))}); "
                     f"choose one with --metric {task}=METRIC")


def parse_metric_overrides(values: list[str] | None) -> dict[str, str]:
    out = {}
    for v in values or []:
        task, sep, metric = v.partition("=")
        if not sep or not task.strip() or not metric.strip():
            raise BenchError(f"--metric expects TASK=METRIC (e.g. zeroshot=accuracy), got {v!r}")
        out[task.strip()] = metric.strip()
    return out


def headline_rows(rows: pd.DataFrame, overrides: dict[str, str] | None = None) -> pd.DataFrame:
    """Each task's headline-metric rows."""
    keep = []
    for task, sub in rows.groupby("task", sort=False):
        keep.append(sub[sub["metric"] == headline_metric(task, set(sub["metric"]), overrides)])
    return pd.concat(keep) if keep else rows.iloc[0:0]


def per_sample_values(metric: str, records: pd.DataFrame, attacked: bool) -> np.ndarray | None:
    """The per-sample quantity whose mean is ``metric`` (for bootstrap intervals), or None when the records carry
    none: accuracy is the mean of ``robust`` (attacked) or ``clean_correct`` (clean); other metrics use a per-sample
    column of the same name when the task writes one."""
    column = ("robust" if attacked else "clean_correct") if metric == "accuracy" else metric
    if column not in records.columns or records.empty:
        return None
    values = records[column]
    if values.dtype == object:  # booleans read back from CSV as text when a file mixes types
        values = values.astype(str).str.lower().map({"true": 1.0, "false": 0.0})
    return values.astype(float).to_numpy()
