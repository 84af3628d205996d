"""DDP: two CPU processes (gloo) under torchrun give the same weights as one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from bench.core.checkpoints import load_tensors

ARGS = ["train", "--encoder", "fare4", "--steps", "3", "--batch-size", "8", "--n-train", "32", "--inner-steps", "2",
        "--warmup-steps", "1", "--lr", "5e-4", "--no-progress"]


def bench(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=600,
                          env=env)


def assert_same_steps(single: pd.DataFrame, ddp: pd.DataFrame) -> None:
    """The logged losses and gradient norms agree step by step; the health columns (measured every health_every
    steps, empty in between) agree where they were measured, and were measured at least once."""
    for column in ("loss", "adv_loss", "grad_norm", "cos_to_original"):
        assert single[column].notna().any(), f"{column} never logged"
        assert np.allclose(single[column], ddp[column], rtol=1e-4, atol=1e-6, equal_nan=True), column


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    single = bench(*ARGS, "--out", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = bench(*ARGS, "--out", str(tmp_path / "ddp"), "--nproc", "2")
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    # the global gradient (all-reduced across the two processes) and the loss match the single process step by
    # step; a mistake in sharding or averaging shows here (AdamW would hide a gradient scale error in the weights)
    logs = [pd.read_csv(tmp_path / run / "train_log.csv") for run in ("single", "ddp")]
    assert len(logs[0]) == len(logs[1]) == 3
    assert_same_steps(*logs)
    a = load_tensors(tmp_path / "single" / "visual.safetensors")
    b = load_tensors(tmp_path / "ddp" / "visual.safetensors")
    # AdamW moves every weight by about lr per step whatever its gradient's size, so coordinates whose gradient is
    # zero up to rounding can step either way: the weights agree to 2·lr·steps, not to machine precision
    lr, steps = 5e-4, 3
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 2 * lr * steps, f"DDP weights differ from single-process by {worst}"
    close = sum(int(torch.isclose(a[k], b[k], rtol=1e-4, atol=1e-6).sum()) for k in a)
    total = sum(a[k].numel() for k in a)
    assert close / total > 0.99, f"only {close / total:.1%} of the weights agree"
    # and training did move the weights (the comparison is not between two untouched copies)
    from bench.micro.encoders import load_micro_clip

    original = load_micro_clip().tower.visual.state_dict()
    assert max(float((a[k] - original[k]).abs().max()) for k in a) > 1e-4
    assert torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)["step"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["pmg-aft1", "tga-zsr1"])
def test_two_processes_match_one_for_the_two_view_objectives(tmp_path, encoder):
    """PMG-AFT and TGA-ZSR put x' and x through the trained tower in one call (TGA-ZSR with its tokens) and PMG-AFT
    sums its KL over the batch: with SGD, which keeps the gradient's scale, two processes must still take the
    single process's steps."""
    args = ["train", "--encoder", encoder, "--steps", "2", "--batch-size", "8", "--n-train", "32", "--inner-steps",
            "1", "--warmup-steps", "1", "--lr", "1e-2", "--optimizer", "sgd", "--no-progress"]
    single = bench(*args, "--out", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = bench(*args, "--out", str(tmp_path / "ddp"), "--nproc", "2")
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    logs = [pd.read_csv(tmp_path / run / "train_log.csv") for run in ("single", "ddp")]
    assert_same_steps(*logs)
    a = load_tensors(tmp_path / "single" / "visual.safetensors")
    b = load_tensors(tmp_path / "ddp" / "visual.safetensors")
    assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6) for k in a)
