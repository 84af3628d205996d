"""Synthetic stores for the report, HTML and check tests: real store layout (written through ``bench.store.Run``),
made-up numbers, per-sample records consistent with the rows."""

from __future__ import annotations

import math
from pathlib import Path

from attacks import ENGINE_VERSION
from bench.core.config import CellConfig
from bench.core.stats import wilson_interval
from bench.store import Run

PROTOCOLS = {"none": ("clean", 0, 0), "apgd": ("APGD-CE 100 it × 1 restart", 100, 1),
             "aa-custom": ("APGD-CE 100 it × 5 restarts → APGD-T 100 it × 9 targets", 100, 5),
             "apgd-cut": ("APGD-CE 10 it × 1 restart", 10, 1)}


def eps_value(label: str) -> float:
    if label in ("0", ""):
        return 0.0
    num, den = label.split("/")
    return float(num) / float(den)


def add_cell(root: Path, encoder: str, dataset: str, eps: str, value: float, *, task: str = "zeroshot",
             attack: str | None = None, n: int = 200, seed: int = 0, metric: str = "accuracy", suite: str = "micro",
             started_at: str = "2026-01-01T00:00:00+00:00", extra_rows: list[dict] | None = None,
             card_extra: dict | None = None, protocol: str | None = None, steps: int | None = None,
             encoder_sha256: str | None = None, encoder_source: str = "", records: bool = True,
             engine_version: str = ENGINE_VERSION, robust: list[bool] | None = None,
             row_extra: dict | None = None, predictions: list[tuple[int, int]] | None = None) -> str:
    """Store one finished cell; returns its run id. ``value`` is in stored units (accuracy 0.45 = 45 %); the cell
    is the installed attack engine's unless ``engine_version`` says otherwise. ``robust``: which samples the records
    mark robust (default: the first value·n); ``row_extra``: more columns of its rows; ``predictions``: each sample's
    (label, clean prediction) in its records."""
    attack = attack or ("none" if eps == "0" else "apgd")
    summary, default_steps, restarts = PROTOCOLS.get(attack, (attack, 100, 1))
    cfg = CellConfig(suite, encoder, encoder_sha256 or f"sha-{encoder}", task, dataset, attack, eps_value(eps), eps,
                     n, seed, engine_version=engine_version)
    run = Run(root, cfg)
    k = round(value * n) if metric in ("accuracy", "success_rate") else None
    if records and k is not None:
        column = "robust" if eps != "0" else "clean_correct"
        flags = robust if robust is not None else [i < k for i in range(n)]
        run.write_batch([{"sample_id": f"s{i:05d}", "index": i, column: flags[i],
                          **({"clean_correct": True} if column == "robust" else {}),
                          **({"label": predictions[i][0], "clean_pred": predictions[i][1]} if predictions else {})}
                         for i in range(n)])
    lo, hi = wilson_interval(k, n) if k is not None else (math.nan, math.nan)
    base = {"run_id": cfg.run_id, "suite": suite, "encoder": encoder, "method": encoder.rstrip("24"),
            "train_eps": "" if encoder == "clip" else f"{encoder[-1]}/255", "task": task, "dataset": dataset,
            "attack": attack, "protocol": protocol or summary, "eps": cfg.eps, "eps_str": eps,
            "steps": default_steps if steps is None else steps, "restarts": restarts, "precision": "fp32",
            "n_samples": n, "ci_low": math.nan, "ci_high": math.nan, "seed": seed, "git_sha": "abc123",
            "versions": "python=3.11;torch=2.14.1", "started_at": started_at, "seconds": 1.5,
            "engine_version": engine_version, **(row_extra or {})}
    rows = [{**base, "metric": metric, "value": value, "ci_low": lo, "ci_high": hi},
            {**base, "metric": "nonfinite_samples", "value": 0.0}]
    rows += [{**base, **r} for r in extra_rows or []]
    card = {"run_id": cfg.run_id, "config": cfg.as_dict(), "encoder": {"name": encoder, "checkpoint_sha256":
                                                                          cfg.encoder_sha256, "source": encoder_source},
            "protocol": {"name": attack, "description": summary, "stages": [], "norm": "linf"},
            "protocol_summary": summary, "git_sha": "abc123", "versions": {"python": "3.11", "torch": "2.14.1"},
            "device": "cpu", "threads": 2, "started_at": started_at, "compute_seconds": 1.5, "batch_size": 250,
            **(card_extra or {})}
    run.finish(rows, card)
    return cfg.run_id


def grid(root: Path, values: dict[tuple[str, str, str], float], **kw) -> dict[tuple[str, str, str], str]:
    """Many cells at once: {(encoder, dataset, eps): value} → {(encoder, dataset, eps): run_id}."""
    return {key: add_cell(root, *key, value, **kw) for key, value in values.items()}


def standard_grid(root: Path, **kw) -> dict[tuple[str, str, str], str]:
    """clip collapses under attack, fare4 keeps some of it; two datasets, clean / 2/255 / 4/255."""
    values = {}
    for encoder, dataset, clean, eps2, eps4 in (("clip", "novel-shapes", 0.90, 0.10, 0.0),
                                                ("clip", "novel-colours", 0.80, 0.30, 0.05),
                                                ("fare4", "novel-shapes", 0.85, 0.60, 0.40),
                                                ("fare4", "novel-colours", 0.75, 0.55, 0.35)):
        values.update({(encoder, dataset, "0"): clean, (encoder, dataset, "2/255"): eps2,
                       (encoder, dataset, "4/255"): eps4})
    return grid(root, values, **kw)
