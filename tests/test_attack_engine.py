"""Engine behaviour beyond single attacks: batch splitting on out-of-memory, fp32 confirmation of claimed successes,
restart grouping, class-count limits, reference backends refusing what they cannot run."""

from __future__ import annotations

import pytest
import torch
from attack_fixtures import one_thread  # noqa: F401  (autouse fixture)
from torch import nn

from attacks.apgd import apgd
from attacks.backends import check_backend, describe, run_classification
from attacks.losses import classification_objective
from attacks.memory import BatchSplitter
from attacks.protocols import Protocol, Stage, run_protocol
from attacks.registry import PROTOCOLS
from bench.cli import main
from bench.core.errors import BenchError

SMALL_AA = Protocol("small-aa", "test", (Stage("apgd", "ce", 15, restarts=3), Stage("apgd", "dlr-targeted", 10,
                                                                                    targets=2)))


class OutOfMemoryAbove(nn.Module):
    """Raises CUDA's out-of-memory error for batches above ``limit`` rows, as a too-small GPU would."""

    def __init__(self, inner, limit: int):
        super().__init__()
        self.inner, self.limit, self.refused = inner, limit, 0

    def forward(self, x):
        if x.shape[0] > self.limit:
            self.refused += 1
            raise torch.OutOfMemoryError(f"CUDA out of memory (simulated: {x.shape[0]} > {self.limit} rows)")
        return self.inner(x)


def test_out_of_memory_splits_the_batch_without_changing_results(tiny_classifier, tiny_batch):
    y = tiny_classifier(tiny_batch).argmax(1)
    seeds = torch.arange(24)
    whole = run_protocol(tiny_classifier, tiny_batch, y, 4 / 255, SMALL_AA, seeds)
    small_gpu = OutOfMemoryAbove(tiny_classifier, limit=7)
    splitter = BatchSplitter(verbose=False)
    split = run_protocol(small_gpu, tiny_batch, y, 4 / 255, SMALL_AA, seeds, splitter=splitter)
    assert small_gpu.refused > 0 and splitter.splits >= 2 and splitter.max_rows <= 7
    assert torch.equal(whole.robust, split.robust) and torch.equal(whole.clean_correct, split.clean_correct)
    assert torch.allclose(whole.x_adv, split.x_adv, atol=1e-6)
    assert 0 < int(whole.robust.sum()) < int(whole.clean_correct.sum())


def test_out_of_memory_on_a_single_image_is_raised(tiny_classifier, tiny_batch):
    with pytest.raises(torch.OutOfMemoryError):
        run_protocol(OutOfMemoryAbove(tiny_classifier, limit=0), tiny_batch, torch.zeros(24, dtype=torch.long),
                     4 / 255, SMALL_AA, torch.arange(24), splitter=BatchSplitter(verbose=False))


class ClaimsUnderGrad(nn.Module):
    """Predicts class 0 everywhere, except in forward passes under autograd (the attack's), where it claims class 1:
    what a half-precision artefact looks like to the engine."""

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 5) + 0 * x.sum(dim=(1, 2, 3))[:, None]
        logits[:, 0] = 1.0
        if torch.is_grad_enabled():
            logits = logits + torch.tensor([0.0, 2.0, 0, 0, 0])
        return logits


def test_claimed_successes_count_only_once_confirmed_in_fp32(tiny_batch):
    out = run_protocol(ClaimsUnderGrad(), tiny_batch, torch.zeros(24, dtype=torch.long), 4 / 255, SMALL_AA,
                       torch.arange(24))
    assert out.robust.all() and not out.attack_success.any() and set(out.broken_by) == {""}


def test_restart_grouping_never_changes_a_sample(tiny_classifier, tiny_batch):
    y = tiny_classifier(tiny_batch).argmax(1)
    obj = classification_objective(tiny_classifier, y, "ce")
    seeds = torch.arange(24) + 7
    a = apgd(obj, tiny_batch, 2 / 255, n_iter=20, restarts=4, seeds=seeds, first_restart_alone=True)
    b = apgd(obj, tiny_batch, 2 / 255, n_iter=20, restarts=4, seeds=seeds, first_restart_alone=False)
    assert torch.equal(a.success, b.success)
    assert 0 < int(a.success.sum()) < 24


def test_targets_are_limited_to_the_other_classes(tiny_classifier, tiny_batch):
    y = tiny_classifier(tiny_batch).argmax(1)
    nine_targets = Protocol("t", "test", (Stage("apgd", "dlr-targeted", 5, targets=9),))
    out = run_protocol(tiny_classifier, tiny_batch, y, 2 / 255, nine_targets, torch.arange(24))
    assert (out.robust <= out.clean_correct).all()  # 5 classes: 4 target classes tried, not 9

    class ThreeClasses(nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :3]

    with pytest.raises(BenchError, match="needs at least 4 classes"):
        run_protocol(ThreeClasses(), tiny_batch, y % 3, 2 / 255, PROTOCOLS["aa-custom"], torch.arange(24))


def test_reference_backends_refuse_what_they_cannot_run():
    with pytest.raises(BenchError, match="autoattack backend cannot run stage PGD-CE"):
        check_backend("autoattack", PROTOCOLS["pgd-10"])
    with pytest.raises(BenchError, match="fp32 only"):
        check_backend("torchattacks", PROTOCOLS["apgd"], "fp16")
    check_backend("torchattacks", PROTOCOLS["pgd-10"])
    assert describe(PROTOCOLS["apgd"], "native") == PROTOCOLS["apgd"].summary()
    assert describe(PROTOCOLS["apgd"], "autoattack").endswith("[backend: autoattack]")


def test_cli_refuses_an_unsupported_backend_in_one_line(capsys):
    assert main(["run", "--attack", "pgd-10", "--attack-backend", "autoattack", "--eps", "4/255"]) == 2
    err = capsys.readouterr().err.strip()
    assert "autoattack backend cannot run" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("backend", ["autoattack", "torchattacks"])
def test_reference_backends_stay_in_the_ball(tiny_classifier, tiny_batch, backend):
    y = tiny_classifier(tiny_batch).argmax(1)
    out = run_classification(backend, tiny_classifier, tiny_batch, y, 4 / 255, PROTOCOLS["apgd"], torch.arange(24),
                             seed=0)
    assert (out.x_adv - tiny_batch).abs().max() <= 4 / 255 + 1e-6
    assert set(out.broken_by) <= {"", backend} and (out.robust <= out.clean_correct).all()
    assert out.attack_success.any()


def test_a_success_keeps_the_point_that_succeeded():
    """x_adv of a successful sample is the iterate whose evaluation succeeded, also when that iteration closes a
    checkpoint window and the step halving sends the row back to its best point (pyautoattack records the success
    before the checkpoint too). The objective's loss falls at every evaluation, so the best point is the start and
    every checkpoint halves; success is claimed at evaluation k only."""
    x = torch.full((2, 3, 4, 4), 0.5)
    wrong = []
    for k in range(1, 31):  # n_iter = 30: checkpoints close at iterations 6, 11, 15, 18, 20, 21, …
        seen, calls = {}, [0]

        def objective(x_adv, idx, k=k, seen=seen, calls=calls):
            it = calls[0]
            calls[0] += 1
            if it == k:
                seen["x"] = x_adv.detach().clone()
            return -float(it) + 1e-3 * x_adv.flatten(1).sum(dim=1), torch.full((len(idx),), it == k)

        res = apgd(objective, x, 8 / 255, n_iter=30, seeds=torch.arange(2))
        assert res.success.all() and (res.iterations == k).all()
        if not torch.equal(res.x_adv, seen["x"]):
            wrong.append(k)
    assert not wrong, f"x_adv is not the successful iterate for successes at iterations {wrong}"
