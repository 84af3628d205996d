"""Attack invariants: inside the ε-ball and [0,1], deterministic, success flags agree with re-scoring, no
parameter gradients, strong enough to break an undefended model."""

from __future__ import annotations

import pytest
import torch
from attack_fixtures import one_thread  # noqa: F401  (autouse fixture)

from attacks.apgd import apgd, checkpoint_schedule
from attacks.base import L2Ball, LinfBall
from attacks.losses import classification_objective, dlr, dlr_targeted
from attacks.pgd import pgd
from attacks.protocols import ProtocolState, run_protocol
from attacks.registry import PROTOCOLS

EPS = 8 / 255


def labels_of(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


@pytest.mark.parametrize("attack", ["apgd", "pgd"])
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_stays_in_ball_and_range(tiny_classifier, tiny_batch, attack, loss):
    y = labels_of(tiny_classifier, tiny_batch)
    obj = classification_objective(tiny_classifier, y, loss)
    fn = apgd if attack == "apgd" else pgd
    res = fn(obj, tiny_batch, EPS, n_iter=20)
    assert (res.x_adv - tiny_batch).abs().max() <= EPS + 1e-6
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1


def test_l2_ball_projection_stays_inside():
    x = torch.rand(5, 3, 8, 8)
    far = x + torch.randn_like(x)
    p = L2Ball.project(far, x, 0.5)
    assert (L2Ball.norm(p - x) <= 0.5 + 1e-5).all()
    assert p.min() >= 0 and p.max() <= 1


def test_linf_random_start_on_the_sphere_before_clamping():
    x = torch.full((4, 3, 8, 8), 0.5)
    noise = torch.rand(4, 3, 8, 8) * 2 - 1
    start = LinfBall.start(x, 0.1, noise)
    assert torch.allclose(LinfBall.norm(start - x), torch.full((4,), 0.1), atol=1e-6)


def test_deterministic_and_independent_of_batching(tiny_classifier, tiny_batch):
    y = labels_of(tiny_classifier, tiny_batch)
    seeds = torch.arange(100, 124)
    obj = classification_objective(tiny_classifier, y, "ce")
    a = apgd(obj, tiny_batch, EPS, n_iter=15, restarts=2, seeds=seeds)
    b = apgd(obj, tiny_batch, EPS, n_iter=15, restarts=2, seeds=seeds)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)
    # the second half attacked on its own gives the same per-sample outcome
    half = slice(12, 24)
    obj_half = classification_objective(tiny_classifier, y[half], "ce")
    c = apgd(obj_half, tiny_batch[half], EPS, n_iter=15, restarts=2, seeds=seeds[half])
    assert torch.equal(c.success, a.success[half])
    assert torch.allclose(c.x_adv, a.x_adv[half], atol=1e-6)


def test_success_flags_agree_with_rescoring(tiny_classifier, tiny_batch):
    y = labels_of(tiny_classifier, tiny_batch)
    res = apgd(classification_objective(tiny_classifier, y, "ce"), tiny_batch, EPS, n_iter=30)
    rescored = labels_of(tiny_classifier, res.x_adv) != y
    assert res.success.any(), "the attack should break some points of an undefended tiny model"
    assert torch.equal(rescored, res.success)


def test_no_parameter_gradients(tiny_classifier, tiny_batch):
    tiny_classifier.requires_grad_(True)  # even if a caller forgets to freeze, attacks only differentiate inputs
    y = labels_of(tiny_classifier, tiny_batch)
    apgd(classification_objective(tiny_classifier, y, "ce"), tiny_batch, EPS, n_iter=5)
    assert all(p.grad is None for p in tiny_classifier.parameters())


def test_apgd_breaks_more_with_more_budget(tiny_classifier, tiny_batch):
    y = labels_of(tiny_classifier, tiny_batch)
    obj = classification_objective(tiny_classifier, y, "ce")
    small = apgd(obj, tiny_batch, 1 / 255, n_iter=50).success.float().mean()
    large = apgd(obj, tiny_batch, 16 / 255, n_iter=50).success.float().mean()
    assert large >= small
    assert large > 0.5


def test_apgd_drops_broken_points(tiny_classifier, tiny_batch):
    y = labels_of(tiny_classifier, tiny_batch)
    tiny_classifier.calls = 0
    res = apgd(classification_objective(tiny_classifier, y, "ce"), tiny_batch, 32 / 255, n_iter=100)
    assert res.success.all()
    # every sample falls early at this budget; the engine must stop calling the model once they have
    assert tiny_classifier.calls < 100


def test_checkpoint_schedule_published_values():
    assert checkpoint_schedule(100) == (22, 6, 3)


def test_dlr_losses_match_definition():
    logits = torch.tensor([[5.0, 3.0, 1.0, 0.0], [1.0, 4.0, 2.0, 0.5]])
    y = torch.tensor([0, 0])
    # sample 0: true class on top: -(5-3)/(5-1); sample 1: -(1-4)/(4-1)
    assert torch.allclose(dlr(logits, y), torch.tensor([-0.5, 1.0]))
    t = torch.tensor([1, 2])
    # -(z_y - z_t) / (z1 - (z3+z4)/2)
    assert torch.allclose(dlr_targeted(logits, y, t), torch.tensor([-2 / 4.5, 1 / (4 - 0.75)]))


def test_protocol_never_counts_misclassified_as_robust(tiny_classifier, tiny_batch):
    y = labels_of(tiny_classifier, tiny_batch)
    y[:5] = (y[:5] + 1) % 5  # wrong labels: misclassified from the start
    out = run_protocol(tiny_classifier, tiny_batch, y, EPS, PROTOCOLS["apgd"], torch.arange(24))
    assert not out.robust[:5].any()
    assert not out.clean_correct[:5].any()
    assert (out.robust <= out.clean_correct).all()
    assert torch.equal(out.robust, out.clean_correct & ~out.attack_success)


def test_protocol_state_resumes(tmp_path, tiny_classifier, tiny_batch):
    y = labels_of(tiny_classifier, tiny_batch)
    proto = PROTOCOLS["aa-custom"]
    seeds = torch.arange(24)
    saved = []

    def keep_first(state):
        if state.next_stage == 1:
            state.save(tmp_path / "state")
            saved.append(True)

    full = run_protocol(tiny_classifier, tiny_batch, y, 2 / 255, proto, seeds, on_stage=keep_first)
    assert saved
    resumed = run_protocol(tiny_classifier, tiny_batch, y, 2 / 255, proto, seeds,
                           state=ProtocolState.load(tmp_path / "state"))
    assert torch.equal(full.robust, resumed.robust)


def test_nonfinite_logits_are_flagged_not_robust(tiny_batch):
    class NaNModel(torch.nn.Module):
        def forward(self, x):
            out = torch.zeros(x.shape[0], 3)
            out[:, 0] = 1.0
            out[0] = float("nan")
            return out + 0 * x.sum(dim=(1, 2, 3), keepdim=False)[:, None]

    model = NaNModel()
    y = torch.zeros(24, dtype=torch.long)
    out = run_protocol(model, tiny_batch, y, EPS, PROTOCOLS["pgd-10"], torch.arange(24))
    assert out.nonfinite[0] and not out.robust[0]
    assert out.robust[1:].all()
