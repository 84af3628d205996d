"""Percentile bootstrap intervals over the per-sample records a run stores beside its rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

RESAMPLES = 2000


def read_records(store_root: Path, run_id: str) -> pd.DataFrame:
    """A run's per-sample records (empty when it has none); read-only, unlike ``store.Run`` which creates the run."""
    files = sorted((Path(store_root) / "runs" / run_id / "samples").glob("*.csv"))
    if not files:
        return pd.DataFrame()
    frames = [pd.read_csv(f, keep_default_na=False, dtype={"sample_id": str}) for f in files]
    return pd.concat(frames, ignore_index=True).drop_duplicates("sample_id", keep="first")


def bootstrap_interval(values: np.ndarray, resamples: int = RESAMPLES, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Interval of the mean of ``values``; seeded, so a report is reproducible."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1 - level) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(lo), float(hi)
