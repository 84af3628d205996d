"""Adversarial fine-tuning: objectives, resume equivalence, checkpoints and cards, collapse monitor, on-demand
cache. All on the committed micro CLIP with a handful of images and steps."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from bench.core.checkpoints import load_tensors, sha256_file
from bench.core.errors import BenchError, NeedsTraining
from bench.micro.datasets import ZEROSHOT_DATASETS
from bench.micro.train_data import FineTuningData
from bench.train.config import TrainConfig
from bench.train.data import batch_indices
from bench.train.health import CollapseMonitor, embedding_spread
from bench.train.objectives import OBJECTIVES, Batch, make_objective


def tiny_config(method: str = "fare", **kw) -> TrainConfig:
    base = dict(method=method, eps_levels=4, suite="micro", steps=4, batch_size=8, lr=1e-4, weight_decay=1e-4,
                warmup_steps=1, inner_steps=2, n_train=64, checkpoint_every=2)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def micro_clip():
    from bench.micro.encoders import load_micro_clip

    return load_micro_clip()


@pytest.fixture(scope="module")
def tiny_data():
    return FineTuningData(64)


def test_batch_indices_cover_each_epoch_once():
    seen = [batch_indices(step, 0, 1, 8, 24, seed=0) for step in range(3)]
    assert sorted(torch.tensor(list(map(list, seen))).flatten().tolist()) == list(range(24))
    # accumulation splits the same global batch into micro-batches
    whole = batch_indices(5, 0, 1, 8, 24, seed=0)
    halves = [batch_indices(5, m, 2, 8, 24, seed=0) for m in range(2)]
    assert whole.tolist() == halves[0].tolist() + halves[1].tolist()


def test_objectives_match_their_definitions():
    torch.manual_seed(0)
    target = torch.randn(4, 6)
    adv = torch.randn(4, 6, requires_grad=True)
    idx = torch.arange(4)

    def enc(x):
        return x

    batch = Batch(x=torch.randn(4, 6), target=target)
    fare = make_objective("fare")
    assert torch.allclose(fare.inner_loss(adv, batch, idx), ((adv - target) ** 2).sum(1))
    assert torch.allclose(fare.outer_loss(enc, adv, batch)[0], ((adv - target) ** 2).sum(1).mean())
    # Sim-CLIP as released: ½(−cos(φ(x'), sg φ₀(x))) + ½(−cos(φ₀(x), sg φ(x'))) — its value is −cos, and its
    # gradient is that of the first half alone, −½·cos(φ(x'), φ₀(x)); the inner loss is FARE's squared ℓ2
    released = make_objective("simclip")
    loss, _ = released.outer_loss(enc, adv, batch)
    assert torch.allclose(loss, -F.cosine_similarity(adv, target, dim=-1).mean())
    loss.backward()
    half = torch.autograd.grad((-0.5 * F.cosine_similarity(adv, target, dim=-1)).mean(), adv)[0]
    assert torch.allclose(adv.grad, half, atol=1e-7)
    adv.grad = None
    assert torch.allclose(released.inner_loss(adv, batch, idx), ((adv - target) ** 2).sum(1))

    # Sim-CLIP paper objective: symmetric negative cosine with stop-gradient; the gradient w.r.t. each view comes
    # only from the term where that view is not detached
    clean = torch.randn(4, 6, requires_grad=True)
    paper = make_objective("simclip-siamese")
    loss, _ = paper.outer_loss(lambda z: z, adv, Batch(x=clean))
    loss.backward()
    expected_adv = torch.autograd.grad((-0.5 * F.cosine_similarity(adv, clean.detach(), dim=-1)).mean(), adv)[0]
    assert torch.allclose(adv.grad, expected_adv, atol=1e-6)
    assert torch.allclose(paper.inner_loss(adv.detach(), Batch(x=clean, clean=clean.detach()), idx),
                          1 - F.cosine_similarity(adv.detach(), clean.detach(), dim=-1))
    l2 = make_objective("simclip-siamese", "l2")
    assert torch.allclose(l2.inner_loss(adv.detach(), Batch(x=clean, clean=clean.detach()), idx),
                          ((adv.detach() - clean.detach()) ** 2).sum(1))

    classes = F.normalize(torch.randn(3, 6), dim=-1)
    labels = torch.tensor([0, 1, 2, 1])
    tecoa = make_objective("tecoa")
    tb = Batch(x=adv, labels=labels, class_embeddings=classes)
    logits = 100 * F.normalize(adv, dim=-1) @ classes.T
    assert torch.allclose(tecoa.outer_loss(enc, adv, tb)[0], F.cross_entropy(logits, labels))


def test_config_hash_ignores_operational_fields():
    a = tiny_config()
    assert a.hash == tiny_config(checkpoint_every=99).hash
    assert a.hash != tiny_config(lr=2e-4).hash
    with pytest.raises(BenchError, match="divisible"):
        tiny_config(grad_accum=3).validate()
    with pytest.raises(BenchError, match="does not apply to fare"):
        tiny_config(inner_loss="l2").validate()


def test_objective_definition_is_part_of_the_hash(monkeypatch):
    """A method redefined under the same name (as Sim-CLIP was) never finds the checkpoint of its old meaning."""
    from bench.train.objectives import OBJECTIVES

    before = tiny_config("simclip").hash
    monkeypatch.setattr(OBJECTIVES.get("simclip"), "definition", "the paper's unanchored Siamese objective")
    assert tiny_config("simclip").hash != before
    assert tiny_config("simclip").weights_dict()["objective"] == "the paper's unanchored Siamese objective"


def test_collapse_monitor():
    mon = CollapseMonitor(reference_spread=0.08, patience=3)
    assert not any(mon.update(s, 0.07, 0.9) for s in range(10))
    flags = [mon.update(s, 0.01, 0.9) for s in range(10, 14)]
    assert flags == [False, False, True, False] and mon.collapsed_at == 12
    assert mon.drifted_at is None  # collapsed by spread, the cosine stayed at 0.9
    drift = CollapseMonitor(reference_spread=0.08)
    assert not any(drift.update(s, 0.08, c) for s, c in enumerate([0.95, 0.85, 0.79, 0.9, 0.7]))
    assert drift.drifted_at == 2 and not drift.collapsed  # drifting is a warning, not a collapse
    # TeCoA moves away from the original embedding by design: only its spread is watched
    tecoa = CollapseMonitor(reference_spread=0.08, min_cosine=None, drift_cosine=None, patience=2)
    assert not any(tecoa.update(s, 0.05, 0.1) for s in range(5)) and tecoa.drifted_at is None
    assert [tecoa.update(s, 0.02, 0.1) for s in (5, 6)] == [False, True]
    x = torch.randn(64, 32)
    assert embedding_spread(x) > 10 * embedding_spread(x[:1].repeat(64, 1) + 1e-4 * x)


@pytest.mark.slow
@pytest.mark.parametrize("method", OBJECTIVES.names())
def test_each_method_trains_and_writes_card(tmp_path, micro_clip, tiny_data, method):
    from bench.train.loop import LOG_FIELDS, train

    cfg = tiny_config(method, steps=2)
    text_before = {k: v.clone() for k, v in micro_clip.model.state_dict().items() if not k.startswith("visual.")}
    out = train(cfg, micro_clip, tiny_data, tmp_path, device=torch.device("cpu"), progress=False)
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["method"] == method and card["eps"] == "4/255" and card["config_hash"] == cfg.hash
    assert card["sha256"] == sha256_file(tmp_path / "visual.safetensors")
    for key in ("loss", "adv_loss", "cos_to_original", "spread"):
        assert card["final_health"][key] is not None
    log = (tmp_path / "train_log.csv").read_text().splitlines()
    assert log[0].split(",") == LOG_FIELDS and len(log) == 3
    weights = load_tensors(tmp_path / "visual.safetensors")
    original = {k: v.clone() for k, v in micro_clip.tower.visual.state_dict().items()}
    assert any(not torch.equal(weights[k], original[k]) for k in original), "training must change the tower"
    text_after = {k: v for k, v in micro_clip.model.state_dict().items() if not k.startswith("visual.")}
    assert text_after.keys() == text_before.keys() and any(k.startswith("transformer") for k in text_after)
    assert all(torch.equal(text_after[k], v) for k, v in text_before.items()), "the text tower stays frozen"
    assert all(torch.equal(v, original[k]) for k, v in micro_clip.tower.visual.state_dict().items()), \
        "training works on a copy: the base encoder's image tower is untouched"
    assert card["method_label"] and (method != "simclip-siamese" or "no anchor" in card["method_label"])
    assert out.card["sha256"] == card["sha256"]


@pytest.mark.slow
def test_resume_equals_uninterrupted(tmp_path, micro_clip, tiny_data):
    from bench.train.loop import train

    cfg = tiny_config("simclip", steps=4, checkpoint_every=2)
    train(cfg, micro_clip, tiny_data, tmp_path / "full", device=torch.device("cpu"), progress=False)

    def interrupt_after_step_3(step, row):
        if step == 3:
            raise KeyboardInterrupt  # the step-2 checkpoint is the last one saved

    half = tmp_path / "half"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, micro_clip, tiny_data, half, device=torch.device("cpu"), progress=False,
              on_step=interrupt_after_step_3)
    assert torch.load(half / "last.pt", weights_only=True)["step"] == 2
    assert not (half / "visual.safetensors").exists()
    train(cfg, micro_clip, tiny_data, half, device=torch.device("cpu"), resume=True, progress=False)
    a = load_tensors(tmp_path / "full" / "visual.safetensors")
    b = load_tensors(half / "visual.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    log_full = (tmp_path / "full" / "train_log.csv").read_text().splitlines()
    log_half = (half / "train_log.csv").read_text().splitlines()
    assert [r.split(",")[:6] for r in log_full] == [r.split(",")[:6] for r in log_half]


def test_on_demand_cache(tmp_path, monkeypatch, micro_clip, tiny_data):
    """A missing encoder is trained once, then found in the cache; --no-train turns a miss into a clear error."""
    from bench.train import cache

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    cfg = tiny_config("fare", steps=1)
    with pytest.raises(NeedsTraining, match="bench train --encoder fare4"):
        cache.obtain(cfg, "fare4", micro_clip, lambda: tiny_data, torch.device("cpu"), allow_training=False)
    enc = cache.obtain(cfg, "fare4", micro_clip, lambda: tiny_data, torch.device("cpu"), allow_training=True,
                       progress=False)
    directory = cache.encoder_dir(cfg)
    assert directory.parent.parent == tmp_path and cfg.hash in directory.name
    assert enc.meta.method == "fare" and enc.meta.checkpoint_sha256 == cache.read_card(directory)["sha256"]
    stamp = (directory / "visual.safetensors").stat().st_mtime_ns
    again = cache.obtain(cfg, "fare4", micro_clip, lambda: tiny_data, torch.device("cpu"), allow_training=False)
    assert (directory / "visual.safetensors").stat().st_mtime_ns == stamp
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(enc(x), again(x))
    assert not torch.equal(enc(x), micro_clip(x))


def test_micro_training_data_is_drawn_lazily_and_equals_the_split():
    from bench.micro.data import generate_indices
    from bench.micro.datasets import FINETUNING_SET

    data = FineTuningData(64)
    assert data.drawn == 0
    x, labels = data.load([5, 3, 5])
    split = generate_indices("train", [5, 3, 5], within=FINETUNING_SET.within, stream=FINETUNING_SET.stream)
    assert torch.equal(x, torch.tensor(split.images, dtype=torch.float32) / 255)
    assert labels[0] == labels[2] and data.drawn == 2  # scenes 5 and 3, nothing else


@pytest.mark.slow
def test_probe_measures_without_changing_the_weights(tmp_path, micro_clip, tiny_data):
    """`--probe-every` writes accuracy curves and ends with exactly the weights of a run without it."""
    from bench.suites import get_suite
    from bench.train.loop import train
    from bench.train.probe import PROBE_FIELDS, ProbeConfig, probe_for_suite

    cfg = tiny_config("simclip", steps=3, checkpoint_every=3)
    probe = probe_for_suite(ProbeConfig(every=2, samples=6, iterations=2), get_suite("micro"), micro_clip, cfg.eps,
                            torch.device("cpu"))
    train(cfg, micro_clip, tiny_data, tmp_path / "probed", device=torch.device("cpu"), progress=False, probe=probe)
    train(cfg, micro_clip, tiny_data, tmp_path / "plain", device=torch.device("cpu"), progress=False)
    a = load_tensors(tmp_path / "probed" / "visual.safetensors")
    b = load_tensors(tmp_path / "plain" / "visual.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = (tmp_path / "probed" / "probe_log.csv").read_text().splitlines()
    assert lines[0].split(",") == PROBE_FIELDS
    rows = [dict(zip(PROBE_FIELDS, line.split(","))) for line in lines[1:]]
    assert sorted({int(r["step"]) for r in rows}) == [0, 2, 3]  # at 0, every 2 steps, and the last step
    assert {r["dataset"] for r in rows} == set(ZEROSHOT_DATASETS)
    for r in rows:
        assert 0 <= float(r["robust_accuracy"]) <= float(r["clean_accuracy"]) <= 1 and r["n_samples"] == "6"
    assert not (tmp_path / "plain" / "probe_log.csv").exists()


def test_step_time_is_measured_on_a_copy(tmp_path, micro_clip, tiny_data):
    """The training estimate times real steps on throwaway copies: the student and optimiser are untouched."""
    from bench.train.loop import measure_step_seconds, setup_run

    run = setup_run(tiny_config("fare"), micro_clip, tiny_data, tmp_path, torch.device("cpu"))
    before = {k: v.clone() for k, v in run.student.state_dict().items()}
    assert measure_step_seconds(run) > 0
    assert all(torch.equal(v, run.student.state_dict()[k]) for k, v in before.items())
    assert not run.opt.state  # no optimiser step was taken


@pytest.mark.slow
def test_health_every_n_steps_leaves_the_weights_alone(tmp_path, micro_clip, tiny_data):
    """Health figures cost a forward pass; checked every 2 steps (and at the last), the others are left empty and the
    weights are those of a run that checks every step."""
    from bench.train.loop import train

    sparse = train(tiny_config("fare", steps=3, health_every=2), micro_clip, tiny_data, tmp_path / "sparse",
                   device=torch.device("cpu"), progress=False)
    train(tiny_config("fare", steps=3), micro_clip, tiny_data, tmp_path / "dense", device=torch.device("cpu"),
          progress=False)
    a = load_tensors(tmp_path / "sparse" / "visual.safetensors")
    b = load_tensors(tmp_path / "dense" / "visual.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = [line.split(",") for line in (tmp_path / "sparse" / "train_log.csv").read_text().splitlines()[1:]]
    cosine = [r[4] for r in rows]
    assert cosine[0] == "" and cosine[1] and cosine[2]  # steps 2 and 3 (the last) are checked
    assert sparse.card["final_health"]["cos_to_original"] is not None
    assert tiny_config(health_every=2).hash == tiny_config().hash  # operational: not part of the weights' identity
