"""A sweep that needs an untrained encoder trains it once, in a job of its own, before any evaluation of it; and a
sweep through submitit's local launcher (2 jobs) stores exactly what one ``bench run`` of the grid stores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from filelock import FileLock
from test_failure_runs import assert_same_results

import bench.micro.suite
import bench.runner
import bench.sweep.job
import bench.train.cache
import bench.train.loop
import bench.train.recipes
from bench.cli import main
from bench.core.eps import parse_eps
from bench.encoders.registry import ENCODERS
from bench.micro.suite import training_identity
from bench.runner import RunRequest
from bench.sweep import record as records
from bench.sweep.launch import LaunchOptions
from bench.sweep.status import status
from bench.sweep.submit import sweep

TINY_TRAINING = {"steps": 2, "batch_size": 8, "n_train": 16, "inner_steps": 1}
GRID = ["--encoder", "clip,fare4", "--dataset", "novel-colours,novel-shapes", "--attack", "pgd-10", "--eps", "4/255",
        "--n-samples", "4", "--batch-size", "4", "--seed", "0", "--no-progress"]


def test_untrained_encoder_is_trained_once_before_its_evaluations(tmp_path, monkeypatch):
    """submitit's in-process executor, with the local launcher's order: fare4 is missing from the training cache;
    both evaluation jobs need it; it is trained once, by the training job, before either evaluates it."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    real_recipe, real_train, real_run = bench.train.recipes.recipe, bench.train.loop.train, bench.runner.run
    events = []
    # where the micro suite and the training cache use them
    monkeypatch.setattr(bench.micro.suite, "recipe",
                        lambda *a: real_recipe(*a).with_overrides(**TINY_TRAINING))  # seconds, not minutes
    monkeypatch.setattr(bench.train.cache, "train", lambda *a, **k: events.append("train") or real_train(*a, **k))
    monkeypatch.setattr(bench.sweep.job, "run", lambda req: events.append(("eval", *req.encoders)) or real_run(req))

    req = RunRequest(encoders=("clip", "fare4"), eps=(parse_eps("4/255"),), datasets=("novel-colours", "novel-shapes"),
                     n_samples=4, batch_size=4, out=tmp_path / "out", progress=False)
    record = sweep(req, LaunchOptions("debug", jobs=2))
    kinds = [(e["kind"], e.get("encoder")) for e in record["submissions"]]
    assert kinds == [("train", "fare4"), ("eval", None), ("eval", None)]
    assert all(any(u[0] == "fare4" for u in e["units"]) for e in record["submissions"][1:])  # both need it
    assert events.count("train") == 1 and events[0] == "train"
    assert events.count(("eval", "fare4")) == 2
    _, statuses = status(tmp_path / "out")
    assert len(statuses) == 2 * 2 * 2 and {s.state for s in statuses} == {"done"}

    # a cell whose run lock is held reads as running, with its stored samples
    run_dir = next((tmp_path / "out" / "runs").glob("fare4-zeroshot-novel-colours-apgd-*"))
    (run_dir / "rows.csv").rename(run_dir / "rows.bak")
    with FileLock(str(run_dir / ".lock")):
        running = [s for s in status(tmp_path / "out")[1] if s.state == "running"]
    assert [(s.key, s.progress) for s in running] == [("fare4 zeroshot/novel-colours apgd 4/255", "4/4")]

    # nothing left to train or run: the same sweep again submits nothing
    (run_dir / "rows.bak").rename(run_dir / "rows.csv")
    again = sweep(req, LaunchOptions("debug", jobs=2))
    assert len(again["submissions"]) == 3 and events.count("train") == 1


@pytest.fixture(scope="module")
def trained_cache(tmp_path_factory):
    """A training cache holding a (barely) trained fare4 under the micro recipe's entry, for the local jobs'
    subprocesses too."""
    from bench.train.cache import encoder_dir

    previous = os.environ["BENCH_CACHE"]
    os.environ["BENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    spec = ENCODERS.get("fare4")
    target = encoder_dir(bench.train.recipes.recipe("micro", spec.method, 4, training_identity()))
    assert main(["train", "--encoder", "fare4", "--no-progress", "--out", str(target),
                 *[f"--{k.replace('_', '-')}={v}" for k, v in TINY_TRAINING.items()]]) == 0
    yield Path(os.environ["BENCH_CACHE"])
    os.environ["BENCH_CACHE"] = previous


@pytest.mark.slow
def test_local_sweep_equals_bench_run(trained_cache, tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert main(["run", *GRID, "--no-train", "--out", str(ref)]) == 0
    assert main(["sweep", *GRID, "--launcher", "local", "--jobs", "2", "--out", str(out)]) == 0
    assert_same_results(out, ref)
    record = records.load(out)
    assert [e["kind"] for e in record["submissions"]] == ["eval", "eval"]  # trained already: no training job
    assert {s.state for s in status(out)[1]} == {"done"}
