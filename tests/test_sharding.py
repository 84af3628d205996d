"""Scale-out: ``torchrun`` with 2 CPU processes (gloo) shards the samples of a run; the merged store equals a
single-process run sample for sample and metric for metric."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from bench.cli import main
from bench.store import Store

ARGS = ["run", "--suite", "micro", "--encoder", "clip", "--attack", "pgd-10", "--eps", "4/255", "--n-samples", "5",
        "--dataset", "novel-shapes", "--batch-size", "2", "--no-progress"]
SAME = ["run_id", "suite", "encoder", "dataset", "attack", "eps_str", "n_samples", "metric", "value", "ci_low",
        "ci_high", "seed", "precision", "protocol"]


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "bench", *args, "--nproc", "2"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def _records(out) -> dict[str, pd.DataFrame]:
    store = Store(out)
    frames = {}
    for run_dir in store.run_dirs():
        files = list((run_dir / "samples").glob("*.csv"))
        if not files:  # a derived run (cross-cell checks) has rows only
            continue
        samples = pd.concat(pd.read_csv(p, dtype={"sample_id": str}) for p in files)
        frames[run_dir.name] = samples.sort_values("sample_id").reset_index(drop=True)
    return frames


@pytest.mark.slow
def test_two_process_run_equals_single_process(tmp_path):
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    assert main([*ARGS, "--out", str(single)]) == 0
    two = _torchrun(*ARGS, "--out", str(sharded))
    assert two.returncode == 0, two.stderr

    a, b = Store(single).rows(), Store(sharded).rows()
    key = ["run_id", "metric"]
    a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    assert len(a) == len(b) > 0
    pd.testing.assert_frame_equal(a[SAME], b[SAME])

    ra, rb = _records(single), _records(sharded)
    assert ra.keys() == rb.keys()
    for run_id in ra:
        assert len(ra[run_id]) == 5 and ra[run_id].sample_id.is_unique
        pd.testing.assert_frame_equal(ra[run_id], rb[run_id])
    # the samples were dealt out round-robin: a batch file of rank 0 holds positions 0 and 2, one of rank 1 holds 1
    # and 3, where a single process batches 0 and 1 together
    attacked = next(d for d in Store(sharded).run_dirs() if "pgd-10" in d.name)
    position = {sid: i for i, sid in enumerate(ra[attacked.name].sample_id)}
    batches = [sorted(position[s] for s in pd.read_csv(p, dtype={"sample_id": str}).sample_id)
               for p in (attacked / "samples").glob("*.csv")]
    assert [0, 2] in batches and [1, 3] in batches
    assert '"processes": 2' in (attacked / "card.json").read_text()
    # the printed table is rank 0's only
    assert two.stdout.count("| clip |") == 1
