"""Bringing your own encoder to `bench run`, offline: any whole open_clip CLIP from the hub (a fake hub cache the test
builds), a tower `bench train --out` wrote under a new name, and the same tower under the registered name fare4,
evaluated on the micro suite and reported beside the committed clip and the registry's fare4."""

from __future__ import annotations

import json

import pytest
import torch
from test_paper_fakes import open_clip_repo, tiny_clip

from bench.cli import main
from bench.core.checkpoints import save_tensors, sha256_file
from bench.micro.encoders import load_micro_clip
from bench.micro.suite import training_identity
from bench.train.cache import encoder_dir
from bench.train.recipes import recipe

RUN = ["--dataset", "novel-colours", "--n-samples", "4", "--attack", "apgd", "--eps", "4/255", "--no-progress"]


@pytest.fixture
def offline_world(tmp_path, monkeypatch):
    """A hub cache holding one tiny whole CLIP, and a training cache holding the registry's fare4 for the default
    micro recipe (its card constructed here: training it for real takes minutes)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    open_clip_repo(tmp_path / "hf", "someone/Tiny-CLIP", tiny_clip(5, quick_gelu=False))
    visual = load_micro_clip().tower.visual.state_dict()
    g = torch.Generator().manual_seed(4)
    shifted = {k: v + 0.01 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
               for k, v in visual.items()}
    directory = encoder_dir(recipe("micro", "fare", 4, training_identity()))
    sha = save_tensors(directory / "visual.safetensors", shifted)
    (directory / "card.json").write_text(json.dumps({"encoder": "fare4", "method": "fare", "sha256": sha}))
    return tmp_path, sha


@pytest.mark.slow
def test_hub_clip_and_new_towers_are_run_and_reported_beside_clip_and_fare4(offline_world, capsys):
    tmp, registry_sha = offline_world
    tower_dir = tmp / "my-fare"
    assert main(["train", "--encoder", "fare4", "--steps", "1", "--batch-size", "4", "--n-train", "8",
                 "--inner-steps", "1", "--warmup-steps", "1", "--out", str(tower_dir), "--no-progress"]) == 0
    tower = tower_dir / "visual.safetensors"
    mine_sha = sha256_file(tower)
    out = tmp / "results"
    capsys.readouterr()
    assert main(["run", "--encoder", f"clip,fare4,hf-hub:someone/Tiny-CLIP,mine={tower},fare4={tower}",
                 "--out", str(out), *RUN]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("note: fare4")]
    assert len(notes) == 1 and str(tower) in notes[0] and "never merge" in notes[0]

    assert main(["report", "--out", str(out)]) == 0
    table = (out / "report" / "table.md").read_text()
    rows = {line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ") and "---" not in line}
    fare4_mine, fare4_registry = f"fare4 [visual.safetensors, sha {mine_sha[:6]}]", \
        f"fare4 [trained on demand, sha {registry_sha[:6]}]"
    assert rows == {"encoder", "clip", fare4_registry, fare4_mine, "mine", "someone/Tiny-CLIP"}
    assert f"mine: {tower} on micro (sha256 {mine_sha[:12]}" in table
    assert "someone/Tiny-CLIP: hf-hub:someone/Tiny-CLIP/open_clip_pytorch_model.bin" in table

    from bench.store import Store

    stored = Store(out).rows()
    accuracy = stored[stored["metric"] == "accuracy"]
    by_encoder = accuracy.groupby(["encoder", "encoder_sha256"])["run_id"].nunique().to_dict()
    hub_sha = sha256_file(next((tmp / "hf").rglob("open_clip_pytorch_model.bin")))
    assert by_encoder == {("clip", load_micro_clip().meta.checkpoint_sha256): 2, ("fare4", registry_sha): 2,
                          ("fare4", mine_sha): 2, ("mine", mine_sha): 2, ("someone/Tiny-CLIP", hub_sha): 2}
    # (clean and 4/255 cells for each encoder and checkpoint)
    labels = accuracy.drop_duplicates("encoder").set_index("encoder")[["method", "train_eps"]].fillna("")
    methods = labels.to_dict("index")
    assert methods["mine"] == {"method": "external", "train_eps": ""}
    assert methods["someone/Tiny-CLIP"] == {"method": "external", "train_eps": ""}
    assert methods["fare4"] == {"method": "fare", "train_eps": "4/255"}
