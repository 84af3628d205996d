"""The newer defences (PMG-AFT, TGA-ZSR, AGFT): each objective's loss against a hand computation on a fixed batch,
including the quirks of the released code it follows; their options, recipes, training configuration and monitor;
one real training step of each on the micro CLIP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.core.errors import BenchError
from bench.train.config import TrainConfig
from bench.train.objectives import OBJECTIVES, Batch, make_objective


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def t(a) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64)


# a fixed batch: 3 images, 4-dimensional embeddings, 3 classes
CLASSES = unit(np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.6, 0.0, 0.8, 0.0]]))
LABELS = np.array([0, 1, 2])
EMB_ADV = np.array([[0.9, 0.3, 0.1, 0.2], [0.2, 0.7, 0.4, 0.1], [0.5, 0.5, 0.5, 0.5]])
EMB_CLEAN = np.array([[1.0, 0.1, 0.0, 0.1], [0.1, 0.9, 0.1, 0.0], [0.4, 0.1, 0.9, 0.1]])
EMB_ORIGINAL_ADV = np.array([[0.7, 0.6, 0.0, 0.3], [0.5, 0.5, 0.2, 0.2], [0.2, 0.9, 0.3, 0.1]])


# ---------------------------------------------------------------- PMG-AFT


def pmg_aft_by_hand(alpha=1.0, beta=1.0, batchmean=False) -> float:
    """The released PMG_AFT.py loss, written out: plain cosine logits (no scale), CE batch mean, KL summed."""
    out_adv, out_clean, out_ori = (unit(e) @ CLASSES.T for e in (EMB_ADV, EMB_CLEAN, EMB_ORIGINAL_ADV))
    lq = log_softmax(out_adv)
    ce = -lq[np.arange(3), LABELS].mean()

    def kl(target_logits):  # KL(p_target ‖ q_adv) = Σ p (log p − log q), summed over batch and classes
        lp = log_softmax(target_logits)
        total = (np.exp(lp) * (lp - lq)).sum()
        return total / 3 if batchmean else total

    return ce + alpha * kl(out_ori) + beta * kl(out_clean)


def pmg_batch(adv_leaf, clean_leaf):
    """The objective sees the encoder on cat([x', x]) and the frozen original on x'; here the 'images' are the
    embeddings themselves (identity encoder), so the hand computation is exact."""
    original_on_adv = t(EMB_ORIGINAL_ADV)
    return adv_leaf, Batch(x=clean_leaf, labels=torch.tensor(LABELS), class_embeddings=t(CLASSES),
                           original=lambda x_adv: original_on_adv)


def test_pmg_aft_released_loss_by_hand():
    adv, clean = t(EMB_ADV).requires_grad_(), t(EMB_CLEAN).requires_grad_()
    x_adv, batch = pmg_batch(adv, clean)
    objective = make_objective("pmg-aft")
    loss, emb = objective.outer_loss(lambda z: z, x_adv, batch)
    assert math.isclose(loss.item(), pmg_aft_by_hand(), rel_tol=1e-12)
    assert torch.equal(emb, adv)
    # plain cosines: the same embeddings with CLIP's 100· logits give another loss
    scaled = log_softmax(100 * unit(EMB_ADV) @ CLASSES.T)
    assert not math.isclose(loss.item(), -scaled[np.arange(3), LABELS].mean(), rel_tol=1e-3)
    # the inner PGD maximises the per-sample CE on the same plain-cosine logits
    inner = objective.inner_loss(adv.detach()[[2, 0]], batch, torch.tensor([2, 0]))  # rows still attacked
    lq = log_softmax(unit(EMB_ADV) @ CLASSES.T)
    assert np.allclose(inner.numpy(), [-lq[2, 2], -lq[0, 0]], rtol=1e-12)


def test_pmg_aft_kl_is_summed_and_the_clean_branch_is_not_detached():
    adv, clean = t(EMB_ADV).requires_grad_(), t(EMB_CLEAN).requires_grad_()
    x_adv, batch = pmg_batch(adv, clean)
    loss, _ = make_objective("pmg-aft").outer_loss(lambda z: z, x_adv, batch)
    loss.backward()
    assert clean.grad is not None and float(clean.grad.abs().sum()) > 0  # the gradient reaches the clean branch
    # it is exactly the gradient of β·KL(softmax(cos(φ(x))) ‖ softmax(cos(φ(x')))) through its target
    clean2 = t(EMB_CLEAN).requires_grad_()
    lq = torch.log_softmax(torch.nn.functional.normalize(t(EMB_ADV), dim=-1) @ t(CLASSES).T, dim=1)
    lp = torch.log_softmax(torch.nn.functional.normalize(clean2, dim=-1) @ t(CLASSES).T, dim=1)
    (lp.exp() * (lp - lq)).sum().backward()
    assert torch.allclose(clean.grad, clean2.grad, atol=1e-12)
    # 'sum' over the batch: the batch-mean option divides both KL terms by the batch size
    batchmean = make_objective("pmg-aft", options=["kl=batchmean"])
    loss_mean, _ = batchmean.outer_loss(lambda z: z, t(EMB_ADV), batch)
    assert math.isclose(loss_mean.item(), pmg_aft_by_hand(batchmean=True), rel_tol=1e-12)
    assert not math.isclose(loss_mean.item(), loss.item(), rel_tol=1e-6)


def test_pmg_aft_sum_stands_for_the_whole_step_under_ddp_and_accumulation():
    """A micro-batch of 3 out of a step of 12 images (4 processes or micro-batches): its summed KL counts 4 times, so
    that the mean over the 4 shares is the sum over all 12 images, as one process summing the whole batch."""
    _, batch = pmg_batch(t(EMB_ADV), t(EMB_CLEAN))
    ce = pmg_aft_by_hand(alpha=0.0, beta=0.0)
    batch.images_per_step = 12
    loss, _ = make_objective("pmg-aft").outer_loss(lambda z: z, t(EMB_ADV), batch)
    assert math.isclose(loss.item(), ce + 4 * (pmg_aft_by_hand() - ce), rel_tol=1e-12)
    mean, _ = make_objective("pmg-aft", options=["kl=batchmean"]).outer_loss(lambda z: z, t(EMB_ADV), batch)
    assert math.isclose(mean.item(), pmg_aft_by_hand(batchmean=True), rel_tol=1e-12)  # a mean needs no share


def test_pmg_aft_paper_weights_are_options():
    _, batch = pmg_batch(t(EMB_ADV), t(EMB_CLEAN))
    weighted = make_objective("pmg-aft", options=[("alpha", 0.3), "beta=2.5"])
    loss, _ = weighted.outer_loss(lambda z: z, t(EMB_ADV), batch)
    assert math.isclose(loss.item(), pmg_aft_by_hand(alpha=0.3, beta=2.5), rel_tol=1e-12)
    with pytest.raises(BenchError, match="no option 'gamma'"):
        make_objective("pmg-aft", options=["gamma=1"])
    with pytest.raises(BenchError, match="one of sum, batchmean"):
        make_objective("pmg-aft", options=["kl=mean"])
    with pytest.raises(BenchError, match="takes a number"):
        make_objective("pmg-aft", options=["alpha=high"])


# ---------------------------------------------------------------- TGA-ZSR


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The 1-D weights of bilinear upsampling with half-pixel centres (align_corners=False): output i samples the
    input at (i + ½)·n_in/n_out − ½, clamped to [0, n_in − 1]."""
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        lo = min(int(np.floor(src)), n_in - 1)
        hi = min(lo + 1, n_in - 1)
        frac = src - lo
        w[i, lo] += 1 - frac
        w[i, hi] += frac
    return w


def attention_by_hand(tokens: np.ndarray, text: np.ndarray, size: int) -> np.ndarray:
    """TGA-ZSR's attention_map.py, written out: normalise over the token axis (class token included), drop the
    class token, dot with the true class's text, min-max over patches, grid, bilinear upsample, flatten."""
    tokens = tokens / np.linalg.norm(tokens, axis=1, keepdims=True)
    am = np.einsum("bnd,bd->bn", tokens[:, 1:], text)
    am = (am - am.min(axis=1, keepdims=True)) / (am.max(axis=1, keepdims=True) - am.min(axis=1, keepdims=True))
    side = int(round(math.sqrt(am.shape[1])))
    grid = am.reshape(-1, side, side)
    w = bilinear_matrix(side, size)
    return np.einsum("ij,bjk,lk->bil", w, grid, w).reshape(len(am), -1)


def test_attention_map_construction_by_hand():
    from bench.train.objectives.tga_zsr import text_guided_attention

    # one image, class token + a 2×2 grid of patch tokens, 3 dimensions; upsampled to 4×4
    tokens = np.array([[[3.0, 0.0, 1.0], [1.0, 2.0, 0.0], [0.0, 1.0, 1.0], [2.0, 0.5, 0.0], [0.5, 0.5, 2.0]]])
    text = unit(np.array([[1.0, 1.0, 0.0]]))
    got = text_guided_attention(t(tokens), t(text), 4).numpy()
    # the same numbers computed fully by hand: column norms over the 5 tokens, patch scores, min-max, upsampling
    norms = np.sqrt((tokens[0] ** 2).sum(axis=0))  # per feature, over the token axis
    scores = (tokens[0, 1:] / norms) @ text[0]
    mm = (scores - scores.min()) / (scores.max() - scores.min())
    a, b, c, d = mm  # the 2×2 grid, row-major
    w = [(1, 0), (0.75, 0.25), (0.25, 0.75), (0, 1)]  # 2 → 4, half-pixel centres
    expected = np.array([[wr[0] * (wc[0] * a + wc[1] * b) + wr[1] * (wc[0] * c + wc[1] * d) for wc in w] for wr in w])
    assert np.allclose(got.reshape(4, 4), expected, atol=1e-12)
    assert np.allclose(got, attention_by_hand(tokens, text, 4), atol=1e-12)
    assert got.min() == 0.0 and got.max() == 1.0  # min-max over patches survives the upsampling's end points
    # normalising over the feature axis instead (the usual choice) gives another map: the quirk matters here
    per_token = unit(tokens[0, 1:]) @ text[0]
    assert not np.allclose((per_token - per_token.min()) / np.ptp(per_token), mm)
    # a positive factor on the text (the released code's logit scale) changes nothing
    assert np.allclose(text_guided_attention(t(tokens), 100 * t(text), 4).numpy(), got, atol=1e-12)


@pytest.fixture(scope="module")
def micro_clip():
    from bench.micro.encoders import load_micro_clip

    return load_micro_clip()


def test_tower_tokens_carry_ln_post_and_the_projection(micro_clip):
    import copy

    tower = micro_clip.tower
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    emb, tokens = tower(x, with_tokens=True)
    assert tokens.shape == (2, 1 + 64, 128) and torch.allclose(emb, tower(x), atol=1e-6)
    assert torch.equal(tokens[:, 0], emb)  # the class token's row is the embedding
    visual = copy.deepcopy(tower.visual)
    visual.output_tokens = True  # open_clip: tokens after ln_post, *without* the projection
    _, raw = visual(tower.prepare(x))
    assert torch.allclose(tokens[:, 1:], raw @ visual.proj, atol=1e-5)
    assert not torch.allclose(tokens[:, 1:, :raw.shape[-1]], raw, atol=1e-3)


def test_tga_zsr_loss_by_hand(micro_clip):
    import copy

    from torch.nn import functional as F

    original = micro_clip.tower
    student = copy.deepcopy(original)
    with torch.no_grad():  # a student that differs from the original, so both attention terms are non-zero
        for p in student.visual.transformer.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    student.requires_grad_(True)
    g = torch.Generator().manual_seed(5)
    size = micro_clip.image_size
    x, x_adv = torch.rand(3, 3, size, size, generator=g), torch.rand(3, 3, size, size, generator=g)
    classes = F.normalize(torch.randn(4, 128, generator=g), dim=-1)
    labels = torch.tensor([2, 0, 3])
    batch = Batch(x=x, labels=labels, class_embeddings=classes, original=original)
    loss, emb = make_objective("tga-zsr").outer_loss(student, x_adv, batch)

    with torch.no_grad():
        e_adv, tok_adv = student(x_adv, with_tokens=True)
        _, tok_clean = student(x, with_tokens=True)
        _, tok_ori = original(x, with_tokens=True)
    text = classes[labels].double().numpy()
    maps = [attention_by_hand(tk.double().numpy(), text, size) for tk in (tok_adv, tok_clean, tok_ori)]
    logits = 100 * unit(e_adv.double().numpy()) @ classes.double().numpy().T
    ce = -log_softmax(logits)[np.arange(3), labels.numpy()].mean()
    d_adv = np.linalg.norm(maps[0] - maps[2], axis=1).mean()
    d_clean = np.linalg.norm(maps[1] - maps[2], axis=1).mean()
    assert d_adv > 0 and d_clean > 0
    assert math.isclose(loss.item(), ce + 0.08 * d_adv + 0.05 * d_clean, rel_tol=1e-4)
    assert torch.allclose(emb, e_adv, atol=1e-5)
    # φ(x) is not detached: the clean attention term alone moves the student
    alone = make_objective("tga-zsr", options=["alpha=0"])
    only_clean = alone.outer_loss(student, x_adv, batch)[0] - F.cross_entropy(
        100 * F.normalize(student(x_adv), dim=-1) @ classes.T, labels)
    grads = torch.autograd.grad(only_clean, list(student.visual.parameters()), allow_unused=True)
    assert any(gr is not None and float(gr.abs().sum()) > 0 for gr in grads)
    # the inner PGD maximises TeCoA's CE alone, per sample
    inner = make_objective("tga-zsr").inner_loss(e_adv, batch, torch.arange(3))
    assert np.allclose(inner.double().numpy(), -log_softmax(logits)[np.arange(3), labels.numpy()], rtol=1e-4,
                       atol=1e-6)  # float32 rounding where the loss is near 0


# ---------------------------------------------------------------- AGFT


def test_agft_soft_targets_and_temperatures_by_hand():
    target = np.array([[0.9, 0.2, 0.1, 0.0], [0.1, 0.8, 0.3, 0.2], [0.3, 0.1, 0.7, 0.4]])  # φ₀(x)
    p = np.exp(log_softmax(72 * unit(target) @ CLASSES.T))
    lq = log_softmax(180 * unit(EMB_ADV) @ CLASSES.T)
    per_sample = -(p * lq).sum(axis=1)
    objective = make_objective("agft")
    # no labels anywhere: the batch carries none, and garbage labels would change nothing
    batch = Batch(x=t(EMB_CLEAN), target=t(target), class_embeddings=t(CLASSES))
    loss, emb = objective.outer_loss(lambda z: z, t(EMB_ADV), batch)
    assert math.isclose(loss.item(), per_sample.mean(), rel_tol=1e-12)
    inner = objective.inner_loss(t(EMB_ADV)[[1, 2]], batch, torch.tensor([1, 2]))
    assert np.allclose(inner.numpy(), per_sample[[1, 2]], rtol=1e-12)
    with_labels = Batch(x=t(EMB_CLEAN), target=t(target), class_embeddings=t(CLASSES), labels=torch.tensor([2, 2, 0]))
    assert objective.outer_loss(lambda z: z, t(EMB_ADV), with_labels)[0].item() == loss.item()
    # the temperatures are 72 (targets) and 180 (trained logits): other values give other losses
    for options, tp, tq in ((["scale_ratio=1"], 180, 180), (["logit_scale=100"], 40, 100)):
        p2 = np.exp(log_softmax(tp * unit(target) @ CLASSES.T))
        expected = -(p2 * log_softmax(tq * unit(EMB_ADV) @ CLASSES.T)).sum(axis=1).mean()
        got = make_objective("agft", options=options).outer_loss(lambda z: z, t(EMB_ADV), batch)[0].item()
        assert math.isclose(got, expected, rel_tol=1e-12) and not math.isclose(got, loss.item(), rel_tol=1e-6)
    assert objective.needs_class_embeddings and not objective.needs_labels


# ---------------------------------------------------------------- configuration, recipes, monitor


# cache keys computed on main before the fields optimizer, sgd_momentum, objective_options and train_set existed:
# a configuration that does not use them must keep its key, or every cached encoder would be retrained. The micro
# keys were pinned again when the micro recipe itself changed (700 steps × 16, FGSM-RS): that change is meant to
# retrain, the new fields are not
KEYS_BEFORE = {("fare", "micro"): "24af9440e36d", ("fare", "paper"): "6b570ec1e586",
               ("tecoa", "micro"): "02607e2265bd", ("tecoa", "paper"): "aac22d2b7e4e",
               ("simclip", "micro"): "7188f916d633", ("simclip", "paper"): "812009a268c0",
               ("simclip-siamese", "micro"): "0c81a4f4bc56", ("simclip-siamese", "paper"): "20f193ff73e6"}


def test_new_fields_keep_existing_cache_keys():
    from bench.train.recipes import recipe

    for (method, suite), key in KEYS_BEFORE.items():
        assert recipe(suite, method, 4).hash == key


def test_options_optimizer_and_training_set_enter_the_hash():
    from bench.train.recipes import recipe

    cfg = recipe("micro", "pmg-aft", 1)
    assert cfg.with_overrides(objective_options=["alpha=1"]).hash == cfg.hash  # the default: the same configuration
    half = cfg.with_overrides(objective_options=["alpha=0.5", "kl=batchmean"])
    assert half.hash != cfg.hash and half.objective_options == (("alpha", "0.5"), ("kl", "batchmean"))
    assert half.hash == cfg.with_overrides(objective_options=["kl=batchmean", "alpha=0.50"]).hash
    assert cfg.with_overrides(optimizer="sgd").hash != cfg.hash
    sgd = cfg.with_overrides(optimizer="sgd")
    assert sgd.with_overrides(sgd_momentum=0.5).hash != sgd.hash
    assert cfg.with_overrides(sgd_momentum=0.5).hash == cfg.hash  # AdamW never reads it
    with pytest.raises(BenchError, match="unknown optimizer"):
        cfg.with_overrides(optimizer="lion")
    with pytest.raises(BenchError, match="paper suites only"):
        cfg.with_overrides(train_set="tinyimagenet")
    with pytest.raises(BenchError, match="no option"):
        recipe("micro", "fare", 4).with_overrides(objective_options=["alpha=2"])


def test_paper_recipes_are_the_released_ones():
    from bench.train.recipes import recipe

    pmg, tga, agft = (recipe("paper-zsr", m, 1) for m in ("pmg-aft", "tga-zsr", "agft"))
    assert (pmg.steps, pmg.batch_size, pmg.lr, pmg.warmup_steps) == (3_910, 256, 5e-5, 1_000)
    assert (tga.steps, tga.batch_size, tga.lr) == (7_820, 128, 1e-4)
    assert (agft.steps, agft.batch_size, agft.lr) == (50_050, 256, 4e-4)
    for cfg in (pmg, tga, agft):
        assert cfg.optimizer == "sgd" and cfg.sgd_momentum == 0.9 and cfg.weight_decay == 0.0
        assert (cfg.inner_steps, cfg.inner_step_size, cfg.inner_momentum) == (2, 1 / 255, 0.0)
        assert cfg.suite == "paper-zsr"  # the suite's name keys the cache: another base model than "paper"
    assert pmg.train_set == tga.train_set == "tinyimagenet" and pmg.n_train == 100_000
    assert agft.train_set == "default" and agft.n_train == 1_281_167
    assert recipe("paper", "pmg-aft", 1).hash != pmg.hash


@pytest.mark.parametrize("method", OBJECTIVES.names())
def test_each_method_is_watched_as_it_means_to_train(tmp_path, micro_clip, method):
    """A method that keeps the clean embedding near the original one is watched for drift from it; one that moves
    away by design (supervised, distilling) by its spread only. A method reading class prompts gets the fine-tuning
    set's classes; SGD runs with momentum 0.9."""
    from bench.micro.datasets import FINETUNING_SET
    from bench.micro.train_data import FineTuningData
    from bench.train.loop import setup_run

    objective = OBJECTIVES.get(method)
    cfg = TrainConfig(method=method, eps_levels=1, suite="micro", steps=1, batch_size=4, lr=1e-4,
                      weight_decay=0.0, warmup_steps=1, inner_steps=1, n_train=16, optimizer="sgd")
    run = setup_run(cfg, micro_clip, FineTuningData(16), tmp_path / method, torch.device("cpu"))
    watches_drift = run.monitor.min_cosine is not None and run.monitor.drift_cosine is not None
    assert watches_drift == objective.keeps_original_embedding
    assert isinstance(run.opt, torch.optim.SGD) and run.opt.defaults["momentum"] == 0.9
    reads_text = objective.needs_labels or objective.needs_class_embeddings
    n_classes = len(FINETUNING_SET.classes)
    assert (run.classes is not None and run.classes.shape[0] == n_classes) if reads_text else run.classes is None


@pytest.mark.parametrize("method", OBJECTIVES.names())
def test_one_training_step_on_the_micro_clip(tmp_path, micro_clip, method):
    """A real step (inner PGD, outer loss, backward, optimiser) through the loop: finite, and it moves the tower."""
    from bench.micro.train_data import FineTuningData
    from bench.train.loop import setup_run, train_step

    cfg = TrainConfig(method=method, eps_levels=1, suite="micro", steps=1, batch_size=4, lr=1e-3, weight_decay=0.0,
                      warmup_steps=1, inner_steps=2, n_train=16)
    run = setup_run(cfg, micro_clip, FineTuningData(16), tmp_path, torch.device("cpu"))
    run.monitor.reference_spread = 0.08
    before = {k: v.clone() for k, v in run.student.visual.state_dict().items()}
    row = train_step(run, 0)
    assert all(math.isfinite(row[k]) for k in ("loss", "adv_loss", "cos_to_original", "spread", "grad_norm"))
    assert row["grad_norm"] > 0
    assert any(not torch.equal(before[k], v) for k, v in run.student.visual.state_dict().items())


def test_bench_train_takes_objective_options_and_sgd(tmp_path, capsys):
    """`bench train` passes options and the optimiser into the configuration the card (and the cache key) records."""
    import json

    from bench.cli import main

    out = tmp_path / "run"
    assert main(["train", "--encoder", "pmg-aft1", "--steps", "1", "--batch-size", "4", "--n-train", "8",
                 "--inner-steps", "1", "--optimizer", "sgd", "--objective-option", "kl=batchmean",
                 "--objective-option", "beta=0.5", "--out", str(out), "--no-progress"]) == 0
    config = json.loads((out / "card.json").read_text())["config"]
    assert config["objective_options"] == [["beta", "0.5"], ["kl", "batchmean"]]
    assert config["optimizer"] == "sgd" and config["sgd_momentum"] == 0.9 and config["method"] == "pmg-aft"
    assert "pmg-aft1:" in capsys.readouterr().out
    assert main(["train", "--encoder", "pmg-aft1", "--objective-option", "gamma=1", "--out", str(out)]) == 2
