"""The per-sample records a run stores beside its rows, read for bootstrap intervals (``bench.core.stats``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.store import read_samples


def read_records(store_root: Path, run_id: str) -> pd.DataFrame:
    """A run's per-sample records (empty when it has none); read-only, unlike ``store.Run`` which creates the run."""
    return read_samples(Path(store_root) / "runs" / run_id)
