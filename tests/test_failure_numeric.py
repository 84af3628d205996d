"""Numerical faults stay with their sample: a NaN image is flagged per sample without touching its batch-mates or
making an aggregate NaN, and a sample misclassified before the attack is never counted as robust."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

import tasks.zeroshot
from bench.cli import main
from bench.store import Store

RUN = ["run", "--encoder", "clip", "--attack", "apgd", "--eps", "4/255", "--dataset", "novel-colours",
       "--n-samples", "6",
       "--batch-size", "3", "--no-progress"]
NAN_AT, WRONG_AT = 1, 4  # positions in the selection: one per batch


def records_and_rows(out) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """attack name → (per-sample records by sample id, metric rows by metric name)."""
    store = Store(out)
    found = {}
    for run_dir in store.run_dirs():
        if run_dir.name.startswith("sanity-"):
            continue
        rows = pd.read_csv(run_dir / "rows.csv")
        records = pd.concat(pd.read_csv(p, dtype={"sample_id": str}) for p in (run_dir / "samples").glob("*.csv"))
        found[rows.attack.iloc[0]] = (records.set_index("sample_id").sort_index(), rows.set_index("metric"))
    return found


def inject_faults(monkeypatch) -> dict:
    """From now on the selection has one image turned to NaN (as a broken decoder would hand it over) and one label
    changed so that the clean prediction is wrong; the returned dict gets their sample ids once data is loaded."""
    real_load, real_to_float = tasks.zeroshot.ZeroShotTask.load, tasks.zeroshot.to_float
    chosen = {}

    def load(self, suite, dataset, n_samples, seed):
        data = real_load(self, suite, dataset, n_samples, seed)
        labels = data.labels.copy()
        labels[WRONG_AT] = (labels[WRONG_AT] + 1) % len(data.classnames)
        chosen.update(nan=data.ids[NAN_AT], wrong=data.ids[WRONG_AT], image=data.images[NAN_AT].copy())
        return replace(data, labels=labels)

    def to_float(images, device):
        x = real_to_float(images, device)
        for i, image in enumerate(np.asarray(images)):
            if np.array_equal(image, chosen["image"]):
                x[i] = torch.nan
        return x

    monkeypatch.setattr(tasks.zeroshot.ZeroShotTask, "load", load)
    monkeypatch.setattr(tasks.zeroshot, "to_float", to_float)
    return chosen


@pytest.mark.slow
def test_nan_input_and_clean_errors_stay_per_sample(tmp_path, monkeypatch):
    assert main([*RUN, "--out", str(tmp_path / "reference")]) == 0
    reference = records_and_rows(tmp_path / "reference")
    chosen = inject_faults(monkeypatch)
    assert main([*RUN, "--out", str(tmp_path / "faulty")]) == 0
    faulty = records_and_rows(tmp_path / "faulty")
    nan_id, wrong_id = chosen["nan"], chosen["wrong"]

    for attack in ("none", "apgd"):
        records, rows = faulty[attack]
        ref_records, ref_rows = reference[attack]
        assert ref_records.clean_correct.all() and not ref_records.nonfinite.any()  # both faults are injected ones
        # the NaN sample: flagged, neither correct nor robust
        assert records.loc[nan_id, "nonfinite"] and not records.loc[nan_id, "clean_correct"]
        assert not records.loc[nan_id, "robust"]
        # the sample misclassified clean: not robust, and not attacked either (nothing to break)
        assert not records.loc[wrong_id, "clean_correct"] and not records.loc[wrong_id, "robust"]
        assert not records.loc[wrong_id, "attack_success"]
        # robust implies correct on the clean image, everywhere
        assert not (records.robust & ~records.clean_correct).any()
        # batch-mates of the NaN image got exactly the results they get without it
        others = records.index.difference([nan_id, wrong_id])
        pd.testing.assert_frame_equal(records.loc[others], ref_records.loc[others])
        # aggregates: finite, the NaN sample counted once, the rates over all samples
        assert rows.loc["nonfinite_samples", "value"] == 1 and ref_rows.loc["nonfinite_samples", "value"] == 0
        flag = "robust" if attack == "apgd" else "clean_correct"
        assert math.isfinite(rows.loc["accuracy", "value"])
        assert rows.loc["accuracy", "value"] == pytest.approx(records[flag].mean())
