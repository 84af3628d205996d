"""`bench check` rebuilds any encoder a baseline row names: the ``train:FIELD=VALUE`` spelling and its recorded form,
each recorded ``encoder_source`` read back into a source and base, tower paths made relative to a baseline in the
same git work tree, the specs a baseline's rows rebuild, and the one-line refusals."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from report_synth import add_cell

from bench.check_rebuild import load_checkpoints, rebuild
from bench.core.checkpoints import save_tensors
from bench.core.errors import BenchError
from bench.encoders.provenance import read_provenance, relative_source
from bench.encoders.sources import parse_source
from bench.encoders.sources.hub_model import HubModel
from bench.encoders.sources.hub_tower import HubTower
from bench.encoders.sources.local_file import LocalTower
from bench.encoders.sources.train import Trained
from bench.encoders.sources.url import UrlTower
from bench.micro.encoders import load_micro_clip
from bench.store import Store
from bench.train.recipes import recipe


@pytest.fixture(scope="module")
def tower(tmp_path_factory):
    """A micro tower file (the micro CLIP's own weights)."""
    path = tmp_path_factory.mktemp("repo") / "models" / "visual.safetensors"
    path.parent.mkdir()
    save_tensors(path, load_micro_clip().tower.visual.state_dict())
    return path


def test_train_spelling_with_recipe_changes_round_trips():
    source = parse_source("train:steps=350:seed=1")
    assert source == Trained((("seed", "1"), ("steps", "350"))) and str(source) == "train:seed=1:steps=350"
    assert parse_source("train") == Trained() and str(Trained()) == "train"
    assert source.merged((("steps", "100"), ("lr", "1e-3"))).overrides == (("lr", "1e-3"), ("seed", "1"),
                                                                            ("steps", "100"))
    for spelling in (Trained(), source):
        text = spelling.describe("simclip4-micro-0123456789ab")
        assert Trained.from_description(text) == spelling
    assert source.describe("x") == "trained on demand (train:seed=1:steps=350): x"
    assert Trained.from_description("committed micro checkpoint micro_clip.safetensors") is None
    for bad, message in (("train:steps", "expected train or train:FIELD=VALUE"), ("train:Steps=1", "expected"),
                         ("train:steps=1:steps=2", "given twice")):
        with pytest.raises(BenchError, match=message) as err:
            parse_source(bad)
        assert "\n" not in str(err.value)


def test_text_overrides_are_typed_and_change_the_cache_key():
    cfg = recipe("micro", "simclip", 4)
    half, changed = cfg.with_text_overrides((("steps", str(cfg.steps // 2)),))
    assert half.steps == cfg.steps // 2 and half.hash != cfg.hash and changed == (("steps", str(cfg.steps // 2)),)
    same, changed = cfg.with_text_overrides((("seed", "0"),))  # the recipe's own seed: the recipe's own encoder
    assert same.hash == cfg.hash and changed == ()
    anchorless, _ = cfg.with_text_overrides((("method", "simclip-siamese"),))
    assert anchorless.method == "simclip-siamese" and anchorless.hash != cfg.hash
    assert cfg.with_text_overrides((("lr", "5e-4"),))[0].lr == 5e-4
    for pairs, message in (((("steps", "many"),), "steps takes an integer"), ((("stepz", "1"),), "unknown training"),
                           ((("checkpoint_every", "5"),), "cannot be set in an encoder source"),
                           ((("steps", "0"),), "at least 1")):
        with pytest.raises(BenchError, match=message):
            cfg.with_text_overrides(pairs)


def test_each_recorded_source_reads_back(tower):
    by_name = ("", "committed micro checkpoint micro_clip.safetensors", "python: mine.Module", "a plugin's words")
    for text in by_name:
        assert read_provenance(text).by_name, text
    assert read_provenance("trained on demand (train:steps=350): simclip4-micro-0123456789ab").source == \
        Trained((("steps", "350"),))
    now = read_provenance(f"{tower} on micro")
    assert (now.source, now.base) == (LocalTower(str(tower)), "micro")
    old = read_provenance(f"{tower} on committed micro checkpoint micro_clip.safetensors")  # before bases were spelled
    assert (old.source, old.base) == (LocalTower(str(tower)), None)
    relative = read_provenance("../models/visual.safetensors on micro", relative_to=tower.parent.parent / "ci")
    assert relative.source == LocalTower(str(tower))
    assert read_provenance("https://host/t.pt on ViT-B-32/openai").source == UrlTower("https://host/t.pt")
    assert read_provenance("https://host/t.pt on ViT-B-32/openai").base == "ViT-B-32/openai"
    assert read_provenance("hf-hub:org/repo/simclip4.pt on ViT-L-14/openai").source == \
        HubTower("org/repo/simclip4.pt")
    assert read_provenance("hf-hub:Org/Some-CLIP/open_clip_model.safetensors").source == HubModel("Org/Some-CLIP")
    with pytest.raises(BenchError, match="no such file"):
        read_provenance(f"{tower.parent / 'gone.safetensors'} on micro")


def test_tower_paths_become_relative_inside_one_work_tree(tower, tmp_path):
    repo = tower.parent.parent
    recorded = f"{tower} on micro"
    assert relative_source(recorded, repo / "ci") == recorded  # no .git: nothing says they travel together
    (repo / ".git").mkdir()
    try:
        assert relative_source(recorded, repo / "ci") == "../models/visual.safetensors on micro"
        assert relative_source(recorded, tmp_path) == recorded  # another tree: kept absolute
        assert relative_source("trained on demand: fare4-micro-0123456789ab", repo) == \
            "trained on demand: fare4-micro-0123456789ab"
    finally:
        (repo / ".git").rmdir()


def baseline_of(tmp_path, cells: list[tuple[str, str]]) -> pd.DataFrame:
    for encoder, source in cells:
        add_cell(tmp_path / "store", encoder, "novel-colours", "0", 0.9, encoder_source=source,
                 encoder_sha256=f"{encoder:x<64}"[:64])
    rows = Store(tmp_path / "store").rows()
    rows["encoder_source"] = [dict(cells)[e] for e in rows["encoder"]]
    return rows


def test_a_baseline_rebuilds_every_encoder_it_names(tower, tmp_path):
    rows = baseline_of(tmp_path, [("clip", ""), ("fare4", "trained on demand (train:seed=2): fare4-micro-0a"),
                                  ("mine", f"{tower} on micro"),
                                  ("fare2", "hf-hub:chs20/fare2-clip/open_clip_model.safetensors")])
    specs = {r.name: r for r in rebuild(rows, tmp_path, (("steps", "350"),))}
    assert specs["clip"].spec.source is None and not specs["clip"].trained
    assert specs["fare4"].trained and specs["fare4"].spec.source == Trained((("seed", "2"), ("steps", "350")))
    assert (specs["mine"].spec.method, specs["mine"].spec.source, specs["mine"].spec.base) == \
        ("external", LocalTower(str(tower)), "micro")
    assert (specs["fare2"].spec.method, specs["fare2"].spec.source) == ("fare", HubModel("chs20/fare2-clip"))


def test_an_encoder_that_cannot_be_rebuilt_is_one_line(tower, tmp_path):
    rows = baseline_of(tmp_path, [("gone", f"{tower.parent / 'gone.pt'} on micro"), ("api", "python: mine.Module")])
    with pytest.raises(BenchError) as err:
        rebuild(rows, tmp_path)
    message = str(err.value)
    assert "\n" not in message and message.startswith("cannot rebuild ") and "gone (" in message
    assert "no such file" in message and "'api' is not a registered encoder here" in message
    with pytest.raises(BenchError, match="--train-override applies to encoders trained on demand"):
        rebuild(baseline_of(tmp_path / "b", [("clip", "")]), tmp_path, (("steps", "1"),))


def test_checkpoints_are_read_before_anything_runs(tower, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    rows = baseline_of(tmp_path, [("mine", f"{tower} on micro"), ("fare4", "trained on demand: fare4-micro-0a")])
    loaded, untrained = load_checkpoints(rebuild(rows, tmp_path), allow_training=False, device="cpu",
                                         progress=False)
    assert list(loaded["encoder"]) == ["mine"] and loaded["encoder_source"].iloc[0] == f"{tower} on micro"
    assert list(untrained) == ["fare4"] and "not trained yet" in untrained["fare4"]
    broken = tmp_path / "broken.safetensors"
    save_tensors(broken, {"nothing": torch.zeros(1)})
    with pytest.raises(BenchError, match="cannot load mine from .*broken.safetensors") as err:
        load_checkpoints(rebuild(baseline_of(tmp_path / "c", [("mine", f"{broken} on micro")]), tmp_path),
                         allow_training=False, device="cpu", progress=False)
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_a_plugins_encoder_is_rebuilt_and_a_missing_plugin_is_one_line(tmp_path):
    """In subprocesses that find the plugin on PYTHONPATH only (tests/test_plugins.py installs it)."""
    from test_plugins import bench, install_plugin

    site = tmp_path / "site"
    sha = install_plugin(site)
    run = bench(["run", "--encoder", "demo-tower", "--attack", "none", "--dataset", "novel-colours", "--n-samples", "4",
                 "--out", "results", "--no-progress"], site, tmp_path)
    assert run.returncode == 0, run.stderr
    write = bench(["check", "--baseline", "baseline.csv", "--results", "results", "--write-baseline"], site, tmp_path)
    assert write.returncode == 0, write.stderr
    recorded = set(pd.read_csv(tmp_path / "baseline.csv")["encoder_source"])
    assert recorded == {f"{site / 'crb_demo_plugin' / 'tower.safetensors'} on micro"}
    checked = bench(["check", "--baseline", "baseline.csv", "--no-progress"], site, tmp_path)
    assert checked.returncode == 0 and "all 1 cell(s) within tolerance" in checked.stdout, checked.stdout
    assert sha in (tmp_path / "baseline.csv").read_text()

    (site / "crb_demo_plugin" / "tower.safetensors").unlink()  # the plugin's files are gone
    gone = bench(["check", "--baseline", "baseline.csv", "--no-progress"], site, tmp_path)
    assert gone.returncode == 2 and len(gone.stderr.strip().splitlines()) == 1
    assert gone.stderr.startswith("error: cannot rebuild demo-tower (") and "no such file" in gone.stderr
