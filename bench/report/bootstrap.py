"""The per-sample records a run stores beside its rows, read for bootstrap intervals (``bench.core.stats``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def read_records(store_root: Path, run_id: str) -> pd.DataFrame:
    """A run's per-sample records (empty when it has none); read-only, unlike ``store.Run`` which creates the run."""
    files = sorted((Path(store_root) / "runs" / run_id / "samples").glob("*.csv"))
    if not files:
        return pd.DataFrame()
    frames = [pd.read_csv(f, keep_default_na=False, dtype={"sample_id": str}) for f in files]
    return pd.concat(frames, ignore_index=True).drop_duplicates("sample_id", keep="first")
