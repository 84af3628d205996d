"""Cells where a classifier gives (almost) one answer to every image. There its accuracy, clean or robust, is that
class's share of the dataset, and an attack that cannot move the answer leaves it there: a collapsed encoder reads as
robust. A report names such cells, so that nobody ranks a constant answer as robustness (micro TeCoA⁴ answers one
class on three of the five zero-shot datasets).

Read from the per-sample records (``clean_pred``, ``label``) of each (encoder, task, dataset): the clean cell's
when stored, else any attacked cell's, as every classification cell records the clean prediction.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.core.errors import BenchError
from bench.report.bootstrap import read_records

CONSTANT_SHARE = 0.9  # a cell is named when this share of its clean predictions, or more, is one class


def constant_prediction_notes(head: pd.DataFrame, store_root: Path | None) -> list[str]:
    """One note per encoder that answers one class on at least ``CONSTANT_SHARE`` of a dataset's clean images."""
    if store_root is None or head.empty:
        return []
    found: dict[str, list[str]] = {}
    classified = head[head["metric"] == "accuracy"]  # only classification cells record predictions: read no other
    cells = classified.sort_values("eps", kind="stable").drop_duplicates(["encoder", "task", "dataset"])
    for r in cells.itertuples():
        try:
            records = read_records(store_root, r.run_id)
        except BenchError:
            continue  # a corrupt per-sample file: the table still shows the stored rows; this note is a diagnosis
        if not {"clean_pred", "label"} <= set(records.columns) or records.empty:
            continue  # stored without its records
        shares = records["clean_pred"].value_counts(normalize=True)
        if records["label"].nunique() > 1 and shares.iloc[0] >= CONSTANT_SHARE:
            found.setdefault(r.encoder, []).append(f"{r.dataset} ({100 * shares.iloc[0]:.1f} %)")
    return [f"constant answers: {encoder} gives one class for most clean images on {', '.join(datasets)}; there its "
            f"accuracy, clean and robust, is that class's share of the data, not robustness"
            for encoder, datasets in found.items()]
