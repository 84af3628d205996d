"""Contracts every registered attack preset, classification loss, encoder and task keeps, checked by iterating the
registries themselves (as timm's tests/test_models.py iterates its model registry): a newly registered attack,
loss, encoder or task is covered here without editing this file.

- attack presets: the adversarial images stay inside the ε-ball and [0,1], no sample is reported robust (or scored
  better) than on its clean image, and a run is deterministic under its seed. Classification presets run as
  registered, on the tiny classifier of conftest.py; vision-language presets run on the committed micro VLM with
  their stages cut to ``VLM_ITERATIONS`` iterations and two samples — none of these properties depends on the
  number of iterations (the projection runs at every step, the worst-of is taken over whatever the stages found,
  and every random start is seeded per sample), and the presets' own budgets (up to 10,000 iterations) would take
  minutes each on a CPU;
- losses: each registered loss runs through the engine, counts in the cost estimate and is refused in one line by
  a reference library that lacks it;
- encoders: every name of the micro suite resolves offline (a trained one loads; a robust one not trained yet
  fails with one line, NeedsTraining, under ``allow_training=False``); retired names fail with one line;
- tasks: the per-sample records a task's ``evaluate`` writes read back from the store equal, value and type, also
  with text holding commas, quotes, newlines, carriage returns or looking like a number;
- test-time defences: metadata, a declared adaptive attack and inference cost, and on the micro CLIP finite,
  deterministic, batch-independent embeddings with a gradient under every backward.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from attack_fixtures import one_thread  # noqa: F401  (autouse fixture)
from conftest import TinyClassifier

from attacks.backends import BACKENDS, check_backend
from attacks.base import ball
from attacks.losses import LOSSES, UNSUPPORTED, classification_objective
from attacks.protocols import Protocol, Stage, run_protocol
from attacks.registry import ATTACKS
from bench.core.config import CellConfig
from bench.core.errors import BenchError, NeedsTraining
from bench.defences import DEFENCES
from bench.device import passes_per_sample
from bench.encoders.registry import ENCODERS, RETIRED
from bench.store import Run
from bench.suites import get_suite
from tasks.base import EvalContext
from tasks.registry import TASKS, protocol_for

# measured: at 10/255 the tiny classifier keeps 7 of its 20 clean-correct points robust under every built-in preset
# and loses 13, so both sides of "robust ≤ clean" are exercised
EPS = 10 / 255
CLASSIFICATION_ITERATIONS = 500  # Square's queries cut from 5,000; every other stage runs in full (≤ 100)
VLM_EPS = 8 / 255
VLM_ITERATIONS = 2
VLM_SAMPLES = 2
CPU = torch.device("cpu")


def classification_presets() -> list[str]:
    return [e.name for e in ATTACKS if isinstance(e.value, Protocol)]


def vlm_preset_variants() -> list[tuple[str, str]]:
    """(preset, task) for every preset a vision-language task resolves to a variant of its own (a task with a
    ``protocol`` method: ``apgd`` there is a single APGD run on the VLM, not the classification preset)."""
    out = []
    for attack in ATTACKS.names():
        for task in TASKS:
            if not hasattr(task.value, "protocol"):
                continue
            try:
                task.value.protocol(attack)
            except BenchError:
                continue  # this task does not take that preset
            out.append((attack, task.name))
    return out


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message and "\n" not in message and "\r" not in message, repr(message)
    return message


# ------------------------------------------------------------------------------------------------ attack presets


def test_every_preset_is_run_by_some_task():
    """A registered preset that no task takes could never be run (classification presets: the zero-shot task)."""
    vlm_presets = {attack for attack, _ in vlm_preset_variants()}
    for entry in ATTACKS:
        assert isinstance(entry.value, Protocol) or entry.name in vlm_presets, entry.name


@pytest.fixture(scope="module")
def classifier_batch():
    model = TinyClassifier(n_classes=5)
    x = torch.rand(24, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    y[:4] = (y[:4] + 1) % 5  # misclassified from the start: never robust
    return model, x, y


@pytest.mark.parametrize("attack", classification_presets())
def test_classification_preset_contract(attack, classifier_batch):
    model, x, y = classifier_batch
    # the invariants hold at any length; Square's 5,000 queries, run twice for determinism on points the tiny model
    # never loses, were the slowest test of the suite (the full presets run in the parity tests)
    protocol = cut(ATTACKS.get(attack), CLASSIFICATION_ITERATIONS)
    seeds = torch.arange(len(x)) + 17
    out = run_protocol(model, x, y, EPS, protocol, seeds)

    distance = ball(protocol.norm).norm(out.x_adv - x)
    assert float(distance.max()) <= EPS * (1 + 1e-6) + 1e-7
    assert float(out.x_adv.min()) >= 0.0 and float(out.x_adv.max()) <= 1.0
    assert not (out.robust & ~out.clean_correct).any() and int(out.robust.sum()) <= int(out.clean_correct.sum())
    assert not out.clean_correct[:4].any()
    assert (out.adv_pred[out.robust] == y[out.robust]).all()  # robust: the re-scored adversarial image is right
    assert set(out.broken_by) <= {""} | {stage.label() for stage in protocol.stages}
    if not protocol.stages:
        assert torch.equal(out.x_adv, x) and torch.equal(out.robust, out.clean_correct)

    again = run_protocol(model, x, y, EPS, protocol, seeds)
    assert torch.equal(again.x_adv, out.x_adv) and torch.equal(again.robust, out.robust)
    assert torch.equal(again.adv_pred, out.adv_pred) and torch.equal(again.iterations, out.iterations)
    assert again.broken_by == out.broken_by


@pytest.fixture(scope="module")
def micro():
    from bench.micro.encoders import load_micro_clip

    return get_suite("micro"), load_micro_clip()


def cut(protocol, iterations: int):
    """A classification or vision-language protocol with every stage cut to at most ``iterations``."""
    return dataclasses.replace(protocol, stages=tuple(dataclasses.replace(s, iterations=min(s.iterations, iterations))
                                                      for s in protocol.stages))


@pytest.mark.parametrize("attack,task_name", vlm_preset_variants())
def test_vision_language_preset_contract(attack, task_name, micro):
    suite, encoder = micro
    task = TASKS.get(task_name)()
    protocol = cut(protocol_for(task, attack), VLM_ITERATIONS)
    data = task.load(suite, suite.tasks[task_name][0], VLM_SAMPLES, 0)
    rows = list(range(VLM_SAMPLES))
    ctx = EvalContext(protocol, VLM_EPS, 0, CPU)
    x, out = task.run(encoder, data, rows, ctx)

    distance = ball(protocol.norm).norm(out.x_adv - x)
    assert float(distance.max()) <= VLM_EPS * (1 + 1e-6) + 1e-7
    assert float(out.x_adv.min()) >= 0.0 and float(out.x_adv.max()) <= 1.0
    if protocol.stages:
        assert out.stages_run.max() > 0, "the cut protocol attacked nothing: the contract would be vacuous"
    else:
        assert torch.equal(out.x_adv, x) and out.output == out.clean_output
    if protocol.keep_worst:
        # scores are "lower = the attack did better": the reported output is never better than the clean one.
        # Single-run protocols (keep_worst=False) report the attacked output as it is, by design (docs/design.md,
        # "Protocols": a weaker attack than the ensemble, never compared with it), so a sample may score above its
        # clean output.
        assert (out.score <= out.clean_score + 1e-12).all(), (out.score, out.clean_score)

    _, again = task.run(encoder, data, rows, ctx)
    assert torch.equal(again.x_adv, out.x_adv)
    assert again.output == out.output and again.broken_by == out.broken_by
    np.testing.assert_array_equal(again.score, out.score)
    np.testing.assert_array_equal(again.iterations, out.iterations)


# ------------------------------------------------------------------------------------------------ losses


@pytest.mark.parametrize("loss", LOSSES.names())
def test_loss_spec_contract(loss, classifier_batch):
    """Each loss runs through the engine (with target classes if it is targeted), is per-sample and finite, its
    minimum number of classes is enforced, it counts in the cost estimate, and every reference library either runs
    it or refuses it in one line before anything runs."""
    model, x, y = classifier_batch
    spec = LOSSES.get(loss)
    assert spec.name == loss and spec.label and spec.min_classes >= 2
    target = model(x).argsort(dim=1, descending=True)[:, 1] if spec.targeted else None
    value, success = classification_objective(model, y, loss, target)(x, torch.arange(len(x)))
    assert value.shape == (len(x),) and torch.isfinite(value).all()
    assert torch.equal(success, model(x).argmax(dim=1) != y)
    if spec.targeted:
        with pytest.raises(ValueError, match="needs target classes"):
            classification_objective(model, y, loss)

    stage = Stage("apgd", loss, 3, targets=2 if spec.targeted else 0)
    protocol = Protocol(f"contract-{loss}", "contract", (stage,))
    out = run_protocol(model, x, y, EPS, protocol, torch.arange(len(x)))
    assert (out.robust <= out.clean_correct).all()
    assert stage.label().startswith(f"APGD-{spec.label} ")
    assert passes_per_sample(protocol, 5) == 3 * (2 if spec.targeted else 1)

    narrow = TinyClassifier(n_classes=spec.min_classes - 1)
    with pytest.raises(BenchError, match=f"at least {spec.min_classes} classes"):
        run_protocol(narrow, x, narrow(x).argmax(dim=1), EPS, protocol, torch.arange(len(x)))

    for backend in BACKENDS[1:]:
        if spec.reference_name(backend) == UNSUPPORTED:
            with pytest.raises(BenchError, match=f"{backend} backend cannot run") as exc:
                check_backend(backend, protocol)
            one_line(exc.value)
        else:
            check_backend(backend, protocol)


def test_a_new_loss_is_one_registration(classifier_batch):
    """What a new loss module does — register a spec — is all the engine, the protocols, the cost estimate and the
    reference backends need (here a Carlini-Wagner margin, in no reference library)."""
    model, x, y = classifier_batch

    def margin(logits, yy, target=None):
        others = logits.masked_fill(torch.nn.functional.one_hot(yy, logits.shape[1]).bool(), -float("inf"))
        return others.amax(dim=1) - logits.gather(1, yy[:, None]).squeeze(1)

    from attacks.losses import LossSpec

    spec = LossSpec("cw-margin", "CW", "Carlini-Wagner margin", margin, min_classes=2)
    protocol = Protocol("cw", "test", (Stage("apgd", "cw-margin", 20),))
    with LOSSES.temporarily(spec.name, spec, spec.description):
        out = run_protocol(model, x, y, 8 / 255, protocol, torch.arange(len(x)))
        assert out.attack_success.any() and protocol.summary() == "APGD-CW 20 it × 1 restart"
        assert passes_per_sample(protocol, 5) == 20
        with pytest.raises(BenchError, match="autoattack backend cannot run stage APGD-CW"):
            check_backend("autoattack", protocol)
    assert "cw-margin" not in LOSSES


# ------------------------------------------------------------------------------------------------ encoders


@pytest.mark.parametrize("name", ENCODERS.names())
def test_encoder_resolves_offline_or_fails_in_one_line(name, micro, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    suite, _ = micro
    spec = ENCODERS.get(name)
    try:
        encoder = suite.load_encoder(spec, "cpu", allow_training=False, progress=False)
    except NeedsTraining as exc:
        assert spec.robust, f"{name} is not a fine-tuned encoder, yet it asks for training"
        assert name in one_line(exc)
        return
    assert encoder.meta.name == name
    x = torch.rand(2, 3, encoder.image_size, encoder.image_size)
    with torch.no_grad():
        emb = encoder(x)
    assert emb.shape[0] == 2 and torch.isfinite(emb).all()
    assert not any(p.requires_grad for p in encoder.parameters())


@pytest.mark.parametrize("name", sorted(RETIRED))
def test_retired_encoder_names_fail_in_one_line(name):
    with pytest.raises(BenchError) as exc:
        ENCODERS.get(name)
    assert name in one_line(exc.value)


def test_every_encoder_alias_resolves_to_its_entry():
    for entry in ENCODERS:
        for alias in entry.aliases:
            assert ENCODERS.get(alias) is entry.value


# ------------------------------------------------------------------------------------------------ tasks and the store

TEXT = ['a caption, with a comma', 'she said "stop"', "two\nlines", "a carriage\rreturn", "windows\r\nline end",
        "trailing newline\n", " padded ", "", "ünïcode ✓", "#not a comment", "1.50", "nan", "True", "NA", "1e5"]
# a batch of count answers: every text value of the batch looks like an integer
INTEGER_LIKE = ["2", "007", "10", "-0", "3", "+1"]


def plain(value):
    """A value as Python holds it (pandas may hand back numpy scalars)."""
    return value.item() if isinstance(value, np.generic) else value


def same(a, b) -> bool:
    a, b = plain(a), plain(b)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("task_name", TASKS.names())
def test_task_records_round_trip_through_the_store(task_name, micro, tmp_path):
    suite, encoder = micro
    task = TASKS.get(task_name)()
    dataset = suite.tasks[task_name][0]
    n = len(INTEGER_LIKE) + len(TEXT)
    data = task.load(suite, dataset, n, 0)
    records = task.evaluate(encoder, data, list(range(n)), EvalContext(protocol_for(task, "none"), 0.0, 0, CPU))
    text_columns = [k for k, v in records[0].items() if isinstance(v, str) and k != "sample_id"]
    assert text_columns, "every task records some text (at least which stage broke a sample)"
    # two batches, as a run stores them: one whose text columns hold only integer-like strings, one with the
    # characters CSV must quote and strings a reader may take for numbers, booleans or missing values
    first, second = records[: len(INTEGER_LIKE)], records[len(INTEGER_LIKE) :]
    for k, record in enumerate(first):
        record.update({c: INTEGER_LIKE[k] for c in text_columns})
    for k, record in enumerate(second):
        record.update({c: TEXT[(k + j) % len(TEXT)] for j, c in enumerate(text_columns)})
    run = Run(tmp_path, CellConfig("micro", encoder.meta.name, "sha", task_name, dataset, "none", 0.0, "0", n, 0))
    run.write_batch(first)
    run.write_batch(second)

    back = {r["sample_id"]: r for r in run.records().to_dict("records")}
    assert sorted(back) == sorted(r["sample_id"] for r in records)
    for record in records:
        stored = back[record["sample_id"]]
        assert set(stored) == set(record)
        wrong = {k: (v, stored[k]) for k, v in record.items() if not same(v, stored[k])}
        assert not wrong, wrong


# ------------------------------------------------------------------------------------------------ test-time defences


@pytest.mark.parametrize("name", DEFENCES.names())
def test_defence_contract(name, micro):
    """Every registered test-time defence says what it is and what it costs, declares an adaptive attack, and on the
    micro CLIP maps images to finite embeddings deterministically, whatever else shares the batch, with a gradient
    under both backwards."""
    import json

    from attacks.eot import BACKWARDS, backward
    from bench.defences import make_defence
    from bench.encoders.defended import DefendedEncoder

    cls = DEFENCES.get(name)
    assert cls.name == name and cls.label and cls.description and cls.citation and cls.definition and cls.bpda
    assert isinstance(cls.adaptive, Protocol) and cls.adaptive.name == "adaptive" and cls.adaptive.stages
    for option, default in cls.options.items():
        assert not isinstance(default, str) or default in cls.option_choices[option], option
    defence = make_defence(name)
    assert make_defence(defence.spelling).identity() == defence.identity()
    json.dumps(defence.identity())
    cost = defence.cost(with_original=False)
    assert cost.forwards >= 1 and cost.backwards >= 0
    _, clip = micro
    encoder = DefendedEncoder(clip, defence, seed=3)
    x = torch.rand(4, 3, clip.image_size, clip.image_size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        emb = encoder(x)
        assert emb.shape == clip(x).shape and torch.isfinite(emb).all()
        # the same images give the same embeddings; in another batch, up to the rounding of batched matmuls (which TTC's
        # sign steps may carry a little further)
        assert torch.equal(encoder(x), emb) and torch.allclose(encoder(x[1:3]), emb[1:3], rtol=1e-3, atol=1e-3)
    for mode in BACKWARDS:
        xg = x.clone().requires_grad_(True)
        with backward(mode):
            (grad,) = torch.autograd.grad(encoder(xg).pow(2).sum(), xg)
        assert torch.isfinite(grad).all() and grad.abs().max() > 0, mode
