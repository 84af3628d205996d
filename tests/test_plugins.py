"""Plugins through Python entry points: a tiny distribution (a package and its ``*.dist-info`` with METADATA and
entry_points.txt) installed into a temporary directory registers an encoder, an attack and a training objective;
`bench list` shows them and `bench run` uses them, in subprocesses that find the plugin on PYTHONPATH only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.core.checkpoints import save_tensors
from bench.micro.encoders import load_micro_clip

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = '''"""A demo plugin for clip-robust-bench."""
from pathlib import Path

from attacks.protocols import Protocol, Stage
from bench.encoders.registry import EncoderSpec
from bench.train.objectives import Objective, squared_l2

ENCODER = EncoderSpec("demo-tower", "external", None, source=str(Path(__file__).parent / "tower.safetensors"),
                      description="a micro image tower shipped with the demo plugin")
ATTACK = Protocol("pgd-3", "l-inf PGD, 3 steps of 2.5 eps/3, random start (demo plugin)", (Stage("pgd", "ce", 3),))


class DemoFare(Objective):
    name = "demofare"
    label = "demo FARE"
    description = "demo plugin objective: FARE's loss"
    definition = "inner and outer: squared l2 to the frozen original embedding (demo plugin)"
    paper_recipe = dict(steps=10, batch_size=8, lr=1e-5, weight_decay=1e-4, warmup_steps=1)

    def inner_loss(self, emb_adv, batch, idx):
        return squared_l2(emb_adv, batch.target[idx])

    def outer_loss(self, encoder, x_adv, batch):
        emb = encoder(x_adv)
        return squared_l2(emb, batch.target).mean(), emb
'''
ENTRY_POINTS = """[clip_robust_bench.encoders]
demo-tower = crb_demo_plugin:ENCODER

[clip_robust_bench.attacks]
pgd-3 = crb_demo_plugin:ATTACK

[clip_robust_bench.objectives]
demofare = crb_demo_plugin:DemoFare
"""


def install_plugin(site: Path) -> str:
    """The distribution crb-demo-plugin 0.1 in ``site``, as pip would lay it out; returns its tower's sha256."""
    package = site / "crb_demo_plugin"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(PLUGIN)
    visual = load_micro_clip().tower.visual.state_dict()
    g = torch.Generator().manual_seed(11)
    sha = save_tensors(package / "tower.safetensors", {k: v + 0.01 * torch.randn(v.shape, generator=g)
                                                      if v.is_floating_point() else v for k, v in visual.items()})
    info = site / "crb_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: crb-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    (info / "top_level.txt").write_text("crb_demo_plugin\n")
    return sha


def bench(args: list[str], site: Path, tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "OMP_NUM_THREADS": "1",
           "BENCH_CACHE": str(tmp / "cache")}
    return subprocess.run([sys.executable, "-m", "bench", *args], env=env, capture_output=True, text=True,
                          timeout=600, cwd=tmp)


@pytest.mark.slow
def test_an_installed_plugin_is_listed_and_run(tmp_path):
    site = tmp_path / "site"
    sha = install_plugin(site)
    listed = bench(["list"], site, tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert any(line.split()[:1] == ["demo-tower"] and "[plugin crb-demo-plugin]" in line for line in lines)
    assert any(line.split()[:1] == ["pgd-3"] and "[plugin crb-demo-plugin]" in line for line in lines)
    assert any(line.split()[:1] == ["demofare{1,2,4}"] for line in lines)  # the objective's encoders, derived
    assert "warning" not in listed.stderr

    run = bench(["run", "--encoder", "clip,demo-tower", "--attack", "pgd-3", "--eps", "4/255", "--dataset",
                 "novel-colours",
                 "--n-samples", "4", "--out", "results", "--no-progress"], site, tmp_path)
    assert run.returncode == 0, run.stderr
    assert "| demo-tower |" in run.stdout and "| clip |" in run.stdout

    from bench.store import Store

    rows = Store(tmp_path / "results").rows()
    mine = rows[(rows["encoder"] == "demo-tower") & (rows["metric"] == "accuracy")]
    assert set(mine["attack"]) == {"none", "pgd-3"} and set(mine["encoder_sha256"]) == {sha}
    assert set(mine.loc[mine["attack"] == "pgd-3", "steps"]) == {3}


def test_without_the_plugin_its_names_are_unknown(tmp_path):
    from bench.core.errors import BenchError
    from bench.encoders.resolve import resolve_encoder

    with pytest.raises(BenchError, match="unknown encoder 'demo-tower'"):
        resolve_encoder("demo-tower")
