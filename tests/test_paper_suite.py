"""The paper suite through the runner and the CLI: tiny models in a fake hub cache, the real CIFAR-10 slice as a
CLIP_benchmark webdataset, the plan printed before a run, and offline failures as one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import requires_real_data
from test_paper_datasets import CIFAR10
from test_paper_fakes import build_fake_hub, tiny, wds_shards

from attacks.registry import ATTACKS
from bench import device as dev
from bench.cli import main
from bench.paper import encoders
from bench.paper.datasets import benchmark_data
from bench.store import Store


@pytest.fixture
def paper_world(tmp_path, monkeypatch):
    """A fake hub cache with every paper checkpoint (tiny) and a --data-root holding CIFAR-10 from the real slice."""
    cache = tmp_path / "hf"
    build_fake_hub(cache)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "bench-cache"))
    monkeypatch.setitem(encoders.FAMILIES, "paper", tiny(encoders.PAPER_L14))
    data = np.load(requires_real_data("cifar10") / "cifar10_test_first1017.npz")
    root = tmp_path / "data"
    wds_shards(root / "wds_vtab-cifar10", data["x"][:40], data["y"][:40].astype(np.int64), CIFAR10,
               benchmark_data("templates")["cifar10"], per_shard=16)
    return tmp_path, root


@pytest.mark.slow
def test_paper_suite_runs_end_to_end(paper_world, capsys):
    tmp_path, root = paper_world
    out = tmp_path / "results"
    args = ["run", "--suite", "paper", "--encoder", "clip,fare4,simclip2", "--attack", "pgd-10", "--eps", "4/255",
            "--dataset", "cifar10", "--n-samples", "6", "--data-root", str(root), "--out", str(out)]
    assert main([*args, "--plan"]) == 0
    err = capsys.readouterr().err
    assert err.count("plan for ") == 3 and "forward+backward passes" in err and "GFLOP" in err
    assert not (out / "runs").exists()  # --plan computes (and creates) nothing

    assert main([*args, "--no-progress"]) == 0
    rows = Store(out).rows()
    acc = rows[rows.metric == "accuracy"]
    assert set(acc.encoder) == {"clip", "fare4", "simclip2"} and set(acc.suite) == {"paper"}
    assert (acc.n_samples == 6).all() and set(acc.eps_str) == {"0", "4/255"}
    card = json.loads(next(d for d in Store(out).run_dirs() if d.name.startswith("fare4")).joinpath("card.json")
                      .read_text())
    assert card["encoder"]["source"].startswith("hf-hub:chs20/fare4-clip/")
    assert card["config"]["encoder_sha256"] == card["encoder"]["checkpoint_sha256"]
    samples = next(d for d in Store(out).run_dirs() if d.name.startswith("clip-zeroshot-cifar10-pgd"))
    ids = {s for p in (samples / "samples").glob("*.csv") for s in p.read_text().split() if s.startswith("s0")}
    assert len(ids) == 6  # webdataset keys are the sample ids

    # the same cells read from a copy whose samples are keyed differently are refused, not mixed in
    data = np.load(requires_real_data("cifar10") / "cifar10_test_first1017.npz")
    other = tmp_path / "other"
    wds_shards(other / "wds_vtab-cifar10", data["x"][:40], data["y"][:40].astype(np.int64), CIFAR10,
               benchmark_data("templates")["cifar10"], prefix="t")
    capsys.readouterr()
    assert main([*args[:-4], "--data-root", str(other), "--out", str(out), "--no-progress"]) == 2
    assert "the dataset was read from another source; --force recomputes it" in capsys.readouterr().err


def test_offline_without_cache_fails_fast_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["run", "--suite", "paper", "--encoder", "fare4", "--eps", "4/255", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "fare4" in err and "hf download chs20/fare4-clip" in err


@pytest.mark.parametrize("args,message", [
    (["--data-root", "."], "applies to the paper suites only"),
    (["--suite", "paper", "--data-root", "/no/such/dir"], "is not a directory"),
    (["--suite", "paper", "--encoder-weights", "fare4"], "NAME=PATH"),
    (["--suite", "paper", "--dataset", "novel-shapes"], "unknown dataset 'novel-shapes'"),
    (["--precision", "tf32"], "needs a CUDA device"),
])
def test_bad_paper_options_are_one_line_errors(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    assert main(["run", "--eps", "4/255", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_pass_counts_flops_and_timing_of_the_plan(tmp_path, monkeypatch):
    import torch
    from test_paper_fakes import build_fake_hub as build

    from bench.encoders.registry import ENCODERS

    aa = ATTACKS.get("aa-custom")
    assert dev.passes_per_sample(aa, 1000) == 100 * 5 + 9 * 100
    assert dev.passes_per_sample(aa, 2) == 100 * 5 + 1 * 100  # one target class left on a binary task
    assert dev.passes_per_sample(ATTACKS.get("none"), 10) == 0
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    build(tmp_path)
    enc = encoders.load_encoder(tiny(encoders.PAPER_L14), ENCODERS.get("clip"), "cpu")
    fwd, both = dev.flops_per_image(enc, torch.device("cpu"))
    assert 0 < fwd < both < 4 * fwd
    assert dev.seconds_per_pass(enc, torch.device("cpu"), 2, repeats=1) > 0
    assert dev.fit_batch(enc, torch.device("cpu"), 50) == 50
    text = dev.describe_plan("clip", torch.device("cpu"), [dev.CellCost(1000, 1400), dev.CellCost(1000, 0)],
                             (1e11, 3e11), 0.01, 8)
    assert "≤ 1,400,000 forward+backward passes" in text and "2,000 samples" in text
