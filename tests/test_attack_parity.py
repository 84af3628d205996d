"""Strength parity: on the same samples and seed, the native ``aa-custom`` leaves no more points robust than the
reference AutoAttack (pyautoattack) — equal within one sample — and every point the reference breaks is broken
natively too, or counted here (printed, and at most one). The reference must break some of the points the model
classifies correctly clean: one that broke nothing would make any native result look at parity. Checked on the micro
CLIP and on a small adversarially trained model built in seconds."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from attack_fixtures import one_thread  # noqa: F401  (autouse fixture)
from torch import nn

from attacks.apgd import apgd
from attacks.backends import run_classification
from attacks.base import LinfBall
from attacks.losses import classification_objective
from attacks.pgd import pgd
from attacks.registry import PROTOCOLS

N_CLASSES = 10  # enough for APGD-T's 9 target classes


def prototype_data(n: int, seed: int, noise: float = 0.4) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy copies of one fixed random 3×8×8 prototype per class: separable, but not with a wide margin."""
    protos = torch.rand(N_CLASSES, 3, 8, 8, generator=torch.Generator().manual_seed(1234)) * 0.6 + 0.2
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, N_CLASSES, (n,), generator=g)
    return (protos[y] + noise * torch.randn(n, 3, 8, 8, generator=g)).clamp(0, 1), y


class SmallConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, stride=2, padding=1),
                                 nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4 * 4, N_CLASSES))

    def forward(self, x):
        return self.net(x - 0.5)


def adversarially_trained(eps: float, steps: int = 100, batch: int = 128) -> nn.Module:
    """Madry-style training (PGD-5 inner maximisation of the cross-entropy) on prototype data, a few seconds."""
    torch.manual_seed(0)
    model = SmallConvNet()
    x_train, y_train = prototype_data(4096, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(2)
    for step in range(steps):
        idx = torch.randint(0, len(x_train), (batch,), generator=g)
        x, y = x_train[idx], y_train[idx]

        def inner(x_adv, rows, y=y):
            return F.cross_entropy(model(x_adv), y[rows], reduction="none"), torch.zeros_like(rows, dtype=torch.bool)

        model.requires_grad_(False)
        x_adv = pgd(inner, x, eps, n_iter=5, step_size=eps / 2, seeds=torch.arange(batch) + step * batch,
                    last_iterate=True).x_adv
        model.requires_grad_(True)
        opt.zero_grad()
        F.cross_entropy(model(x_adv), y).backward()
        opt.step()
    return model.requires_grad_(False).eval()


def compare(model, x, y, eps, reference: str = "autoattack", seed: int = 0):
    protocol = PROTOCOLS["aa-custom"]
    seeds = torch.arange(len(x)) + 1000 * seed
    native = run_classification("native", model, x, y, eps, protocol, seeds, seed=seed)
    ref = run_classification(reference, model, x, y, eps, protocol, seeds, seed=seed)
    assert torch.equal(native.clean_correct, ref.clean_correct)
    only_ref = torch.nonzero(native.robust & ~ref.robust).flatten().tolist()
    only_native = torch.nonzero(ref.robust & ~native.robust).flatten().tolist()
    print(f"\n{reference}: clean {int(ref.clean_correct.sum())}/{len(x)}, robust native {int(native.robust.sum())} "
          f"vs {reference} {int(ref.robust.sum())}; broken only by {reference}: {only_ref}; "
          f"only by native: {only_native}")
    return native, ref, only_ref


def assert_parity(native, ref, only_ref):
    # parity means something only if the reference attack works: it must break points the model gets right clean
    assert int(ref.robust.sum()) < int(ref.clean_correct.sum()), "the reference broke no point: nothing to compare"
    assert int(native.robust.sum()) <= int(ref.robust.sum()) + 1, "native leaves more points robust"
    assert len(only_ref) <= 1, f"the reference broke samples {only_ref} that the native attack did not"


@pytest.mark.parametrize("loss", ["ce", "dlr", "dlr-targeted"])
def test_apgd_follows_the_reference_trajectory_from_the_same_start(tiny_classifier, tiny_batch, loss):
    """From the same starting point the native APGD takes exactly pyautoattack's steps (step-size schedule,
    momentum, checkpoints, best-iterate): the same samples succeed, the others end at the same best loss."""
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted

    eps = 8 / 255
    x = tiny_batch
    logits = tiny_classifier(x)
    y, target = logits.argmax(1), logits.argsort(1, descending=True)[:, 1]
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(5)) * 2 - 1
    x_init = LinfBall.start(x, eps, noise)
    if loss == "dlr-targeted":
        ref = APGDAttack_targeted(tiny_classifier, n_iter=100, eps=eps, device="cpu", seed=0)
        ref.y_target = target
    else:
        ref = APGDAttack(tiny_classifier, n_iter=100, eps=eps, loss=loss, device="cpu", seed=0)
    ref.init_hyperparam(x)
    _, ref_robust, ref_loss, _ = ref.attack_single_run(x, y, x_init=x_init)
    native = apgd(classification_objective(tiny_classifier, y, loss, target), x, eps, n_iter=100, x_init=x_init)
    assert torch.equal(native.success, ~ref_robust.bool())
    assert 0 < int(native.success.sum()) < len(x)
    assert torch.allclose(native.loss[~native.success], ref_loss[~native.success], atol=1e-5)


@pytest.fixture(scope="module")
def defended():
    eps = 16 / 255
    x, y = prototype_data(48, seed=99)
    return adversarially_trained(eps), x, y, eps


def test_parity_with_autoattack_on_a_defended_model(defended):
    model, x, y, eps = defended
    native, ref, only_ref = compare(model, x, y, eps, "autoattack")
    # the comparison means something only if the model is defended but not invulnerable
    assert 0 < int(native.robust.sum()) < int(native.clean_correct.sum())
    assert_parity(native, ref, only_ref)


def test_parity_with_torchattacks_on_a_defended_model(defended):
    model, x, y, eps = defended
    assert_parity(*compare(model, x, y, eps, "torchattacks"))


@pytest.mark.slow
def test_parity_with_autoattack_on_the_micro_clip():
    from bench.micro.encoders import load_micro_clip
    from bench.micro.suite import load_classification
    from tasks.base import to_float
    from tasks.zeroshot_model import ZeroShotClassifier

    data = load_classification("count", 6, seed=0)
    model = ZeroShotClassifier.for_data(load_micro_clip(), data)
    x, y = to_float(data.images[list(range(6))], "cpu"), torch.as_tensor(data.labels)
    assert_parity(*compare(model, x, y, 2 / 255, "autoattack"))
