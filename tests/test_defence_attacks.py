"""Attacks that see a test-time defence: EOT over a randomised model's draws (never the verdict's), the transfer
protocol (crafted on the undefended base, judged through the defence, whole budget), Square (deterministic per
sample, inside the ε-ball), and parity with pyautoattack for square, aa-standard, aa-rand and the transfer presets."""

from __future__ import annotations

import pytest
import torch
from attack_fixtures import one_thread  # noqa: F401  (autouse fixture)
from conftest import TinyClassifier
from test_attack_parity import adversarially_trained, prototype_data
from torch import nn

from attacks.backends import check_backend, run_classification
from attacks.base import ball
from attacks.eot import VERDICT, current_draw, fresh_draws
from attacks.library_stages import square
from attacks.losses import classification_objective
from attacks.protocols import Protocol, Stage, run_protocol
from attacks.registry import PROTOCOLS
from bench.core.errors import BenchError
from bench.encoders.defended import image_noise

EPS = 8 / 255


class NoisyClassifier(nn.Module):
    """A randomised classifier (the TinyClassifier on the image plus keyed noise of its draw) that records which
    draws its forward passes used, and whether gradients were on."""

    def __init__(self, sigma: float = 0.08):
        super().__init__()
        self.net = TinyClassifier()
        self.sigma = sigma
        self.draws: list[tuple[int, bool]] = []

    def forward(self, x):
        draw = current_draw()
        self.draws.append((draw, torch.is_grad_enabled()))
        return self.net((x + self.sigma * image_noise(x, 0, draw)).clamp(0, 1))


def batch(n: int = 12, seed: int = 1):
    x = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        y = TinyClassifier()(x).argmax(dim=1)
    return x, y


def test_eot_averages_attack_draws_and_never_sees_the_verdict():
    model = NoisyClassifier()
    x, y = batch(4)
    value, _ = classification_objective(model, y, "ce", draws=3)(x, torch.arange(4))
    assert [d for d, _ in model.draws] == [1, 2, 3]
    per_draw = []
    for d in (1, 2, 3):
        logits = model.net((x + model.sigma * image_noise(x, 0, d)).clamp(0, 1))
        per_draw.append(torch.nn.functional.cross_entropy(logits, y, reduction="none"))
    torch.testing.assert_close(value, torch.stack(per_draw).mean(dim=0))


def test_a_protocol_judges_on_the_verdict_draw_and_attacks_on_the_others():
    model = NoisyClassifier()
    x, y = batch()
    protocol = Protocol("eot", "test", (Stage("apgd", "ce", 5),), eot=2)
    out = run_protocol(model, x, y, EPS, protocol, torch.arange(len(x)))
    scoring = {d for d, grad in model.draws if not grad}
    attacking = {d for d, grad in model.draws if grad}
    assert VERDICT not in attacking and attacking <= {1, 2} and VERDICT in scoring
    again = NoisyClassifier()
    repeat = run_protocol(again, x, y, EPS, protocol, torch.arange(len(x)))
    assert torch.equal(repeat.x_adv, out.x_adv) and torch.equal(repeat.robust, out.robust)  # deterministic


class Counting(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.calls, self.with_grad = net, 0, 0

    def forward(self, x):
        self.calls += 1
        self.with_grad += int(torch.is_grad_enabled())
        return self.net(x)


def test_transfer_crafts_on_the_base_for_its_whole_budget_and_judges_through_the_model():
    judged, base = Counting(TinyClassifier(seed=0)), Counting(TinyClassifier(seed=4))
    x, y = batch()
    protocol = Protocol("t", "test", (Stage("apgd", "ce", 10),), craft_on="base")
    out = run_protocol(judged, x, y, EPS, protocol, torch.arange(len(x)), craft_model=base)
    assert judged.with_grad == 0 and base.with_grad == 11  # the start and 10 iterations, no early stop
    with torch.no_grad():
        verdict = judged.net(out.x_adv).argmax(dim=1) == y
    assert torch.equal(out.robust, out.clean_correct & verdict)
    assert int((out.clean_correct & ~out.robust).sum()) == sum(bool(b) for b in out.broken_by)
    # without a base (an undefended encoder) it crafts on the model itself
    alone = run_protocol(TinyClassifier(seed=4), x, y, EPS, protocol, torch.arange(len(x)))
    assert not torch.equal(alone.x_adv, out.x_adv)


def test_square_is_deterministic_per_sample_and_stays_in_the_ball():
    """A failed search hands back the clean image (pyautoattack keeps only successes); at 32/255 most succeed."""
    model = TinyClassifier()
    x, y = batch(6, seed=2)
    eps, seeds = 32 / 255, torch.arange(6) + 40

    def run(xs, ys, ss):
        return square(model, xs, ys, eps, queries=100, restarts=1, norm="linf", seeds=ss, stream=3)

    whole, again, part = run(x, y, seeds), run(x, y, seeds), run(x[2:5], y[2:5], seeds[2:5])
    assert torch.equal(whole.x_adv, again.x_adv) and torch.equal(part.x_adv, whole.x_adv[2:5])
    assert float(ball("linf").norm(whole.x_adv - x).max()) <= eps + 1e-7
    assert float(whole.x_adv.min()) >= 0 and float(whole.x_adv.max()) <= 1
    assert int(whole.success.sum()) >= 4
    other = run(x, y, seeds + 1)  # another seed, another search
    broken = whole.success & other.success
    assert not any(torch.equal(a, b) for a, b in zip(other.x_adv[broken], whole.x_adv[broken]))


@pytest.fixture(scope="module")
def defended():
    eps = 16 / 255
    x, y = prototype_data(24, seed=99)
    return adversarially_trained(eps), x, y, eps


def robust_counts(model, x, y, eps, name):
    protocol = PROTOCOLS[name]
    seeds = torch.arange(len(x))
    native = run_classification("native", model, x, y, eps, protocol, seeds, seed=0)
    ref = run_classification("autoattack", model, x, y, eps, protocol, seeds, seed=0)
    print(f"\n{name}: clean {int(native.clean_correct.sum())}, robust native {int(native.robust.sum())} vs "
          f"pyautoattack {int(ref.robust.sum())}")
    return native, ref


@pytest.mark.parametrize("name", ["square", "aa-standard"])
def test_parity_with_pyautoattack_on_a_defended_model(defended, name):
    """The native stages against pyautoattack's own run of the same attacks (batched, one global seed): as strong
    within one sample. (pyautoattack has no transfer protocol: it judges success on the model it attacks.)"""
    model, x, y, eps = defended
    native, ref = robust_counts(model, x, y, eps, name)
    assert 0 < int(native.robust.sum()) < int(native.clean_correct.sum())
    assert abs(int(native.robust.sum()) - int(ref.robust.sum())) <= 1


def test_aa_rand_parity_on_a_randomised_model():
    """aa-rand (EOT 20) natively and through pyautoattack's rand-version settings, where every library call takes a
    fresh draw: as strong within two samples (both are random searches over draws)."""
    model = NoisyClassifier(sigma=0.05)
    x, y = batch(16, seed=5)
    eps = 10 / 255
    native, ref = robust_counts(model, x, y, eps, "aa-rand")
    assert abs(int(native.robust.sum()) - int(ref.robust.sum())) <= 2


def test_fresh_draws_count_on():
    with fresh_draws():
        assert [current_draw() for _ in range(3)] == [1, 2, 3]
    assert current_draw() == VERDICT


def test_libraries_refuse_what_they_cannot_run_in_one_line():
    for backend, name in (("torchattacks", "square"), ("torchattacks", "aa-standard"),
                          ("autoattack", "transfer-apgd")):
        with pytest.raises(BenchError, match=f"{backend} backend cannot run") as exc:
            check_backend(backend, PROTOCOLS[name])
        assert "\n" not in str(exc.value)
    check_backend("autoattack", PROTOCOLS["aa-standard"])
    check_backend("autoattack", PROTOCOLS["aa-rand"])


def test_notes_say_what_ran_on_a_dataset():
    """aa-custom's APGD-T on a 5-class dataset runs 4 targets, and says so."""
    assert PROTOCOLS["aa-custom"].summary(5).endswith("APGD-T 100 it × 4 targets")
    assert PROTOCOLS["aa-custom"].summary(10).endswith("APGD-T 100 it × 9 targets")
    assert "FAB-T 100 it × 4 targets" in PROTOCOLS["aa-standard"].summary(5)
    assert "crafted on the undefended base" in PROTOCOLS["transfer-apgd"].summary(5)
    assert "20 draws (EOT)" in PROTOCOLS["aa-rand"].summary(5)


def test_aa_standard_is_autoattacks_standard_version():
    """The preset's stages are the settings pyautoattack's standard version gives its attack objects."""
    from pyautoattack import AutoAttack

    from attacks.library_stages import SQUARE_P_INIT, SQUARE_RESCALE_SCHEDULE

    aa = AutoAttack(TinyClassifier(), norm="Linf", eps=EPS, version="standard", seed=0)
    apgd_ce, apgd_t, fab_t, sq = PROTOCOLS["aa-standard"].stages
    assert aa.attacks_to_run == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert (apgd_ce.method, apgd_ce.loss, apgd_ce.iterations, apgd_ce.restarts) == ("apgd", "ce", aa.apgd.n_iter,
                                                                                    aa.apgd.n_restarts)
    assert (apgd_t.loss, apgd_t.iterations, apgd_t.restarts, apgd_t.targets) == (
        "dlr-targeted", aa.apgd_targeted.n_iter, aa.apgd_targeted.n_restarts, aa.apgd_targeted.n_target_classes)
    assert (fab_t.method, fab_t.iterations, fab_t.restarts, fab_t.targets) == ("fab", aa.fab.n_iter, aa.fab.n_restarts,
                                                                                aa.fab.n_target_classes)
    assert (sq.method, sq.iterations, sq.restarts) == ("square", aa.square.n_queries, aa.square.n_restarts)
    assert (aa.square.p_init, aa.square.rescale_schedule) == (SQUARE_P_INIT, SQUARE_RESCALE_SCHEDULE)


@pytest.mark.slow
def test_aa_standard_equals_pyautoattack_on_a_defended_micro_cell():
    """The micro CLIP under CLIPure-Cos (deterministic), 6 shape images at 1/255: the native aa-standard leaves
    exactly the points robust that pyautoattack's standard version does (its target counts set to C − 1)."""
    from pyautoattack import AutoAttack

    from bench.defences import make_defence
    from bench.encoders.defended import DefendedEncoder
    from bench.micro.encoders import load_micro_clip
    from bench.micro.suite import load_classification
    from tasks.zeroshot import to_float
    from tasks.zeroshot_model import ZeroShotClassifier

    data = load_classification("novel-shapes", 6, seed=0)
    model = ZeroShotClassifier.for_data(DefendedEncoder(load_micro_clip(), make_defence("clipure")), data)
    x, y = to_float(data.images, "cpu"), torch.as_tensor(data.labels)
    native = run_protocol(model, x, y, 1 / 255, PROTOCOLS["aa-standard"], torch.arange(len(x)))
    aa = AutoAttack(model, norm="Linf", eps=1 / 255, version="standard", seed=0)
    aa.apgd_targeted.n_target_classes = aa.fab.n_target_classes = len(data.classnames) - 1
    with torch.random.fork_rng():
        x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=len(x))
    with torch.no_grad():
        reference = native.clean_correct & (model(x_adv).argmax(dim=1) == y)
    print(f"\nclean {int(native.clean_correct.sum())}, robust native {int(native.robust.sum())}, "
          f"pyautoattack {int(reference.sum())}")
    assert torch.equal(native.robust, reference)
