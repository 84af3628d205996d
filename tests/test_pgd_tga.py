"""The `pgd-100-tga` preset: TGA-ZSR's evaluation PGD (fixed 1/255 sign steps, random start, no momentum, the last
iterate scored), against a PGD loop written out here, and the difference last-iterate scoring makes."""

from __future__ import annotations

import torch

from attacks.base import sample_noise
from attacks.losses import classification_objective
from attacks.protocols import Protocol, Stage, run_protocol
from attacks.registry import PROTOCOLS


def ring_classifier(x: torch.Tensor) -> torch.Tensor:
    """Two classes on 1-pixel images: class 0 iff |x − ½| > 0.07. Cross-entropy ascent pulls x toward ½, and a
    step larger than the ring's width jumps across it, so the iterates alternate between broken and not."""
    g = (x.flatten(1)[:, 0] - 0.5) ** 2 - 0.07 ** 2
    return torch.stack([50 * g, torch.zeros_like(g)], dim=1)


def reference_pgd(x, y, eps, step, n_iter, seeds, stream):
    """TGA-ZSR's attack_pgd (attacks.py l. 13-53) over this engine's per-sample random starts: start in the ball,
    clamp to [0,1], then n_iter sign steps of the CE, each projected to the ball and [0,1]; the last iterate."""
    noise = sample_noise(tuple(x.shape[1:]), seeds, stream)
    scale = noise.abs().flatten(1).amax(dim=1).view(-1, *([1] * (x.ndim - 1)))
    x_adv = (x + eps * noise / scale).clamp(0, 1)
    for _ in range(n_iter):
        x_adv.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(ring_classifier(x_adv), y, reduction="sum")
        grad, = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = torch.min(torch.max(x_adv + step * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def test_preset_is_tga_zsr_setting():
    p = PROTOCOLS["pgd-100-tga"]
    (stage,) = p.stages
    assert (stage.method, stage.loss, stage.iterations, stage.restarts, stage.momentum) == ("pgd", "ce", 100, 1, 0)
    assert stage.step_size == 1 / 255 and stage.last_iterate and stage.pgd_step(4 / 255) == 1 / 255
    assert p.summary() == "PGD-CE 100 it × 1 restart, step 1/255, last iterate"
    # the older preset keeps its meaning and its label (stored rows compare by the label)
    (old,) = PROTOCOLS["pgd-100"].stages
    assert old.pgd_step(1 / 255) == 2.5 / 255 / 100 and not old.last_iterate
    assert PROTOCOLS["pgd-100"].summary() == "PGD-CE 100 it × 1 restart"


def test_last_iterate_matches_the_reference_loop_and_is_weaker():
    n, eps, step = 64, 0.2, 0.15
    x = torch.full((n, 1, 1, 1), 0.58)  # correct (|0.58 − ½| > 0.07); the ball reaches across the ring
    y = torch.zeros(n, dtype=torch.long)
    seeds = torch.arange(n)
    for n_iter in (5, 6):
        last = Stage("pgd", "ce", n_iter, step_size=step, last_iterate=True)
        out = run_protocol(ring_classifier, x, y, eps, Protocol("t", "t", (last,)), seeds)
        expected = reference_pgd(x, y, eps, step, n_iter, seeds, stream=0)
        assert torch.allclose(out.x_adv, expected, atol=1e-7)
        broken_last = ring_classifier(expected).argmax(dim=1) != y
        assert torch.equal(~out.robust, broken_last)
        assert torch.equal(out.attack_success, broken_last)  # the bookkeeping agrees with the scored iterate
        any_iterate = run_protocol(ring_classifier, x, y, eps,
                                   Protocol("t", "t", (Stage("pgd", "ce", n_iter, step_size=step),)), seeds)
        # counting a sample broken at its first misclassified iterate breaks every point the last iterate breaks,
        # and here more: points that cross the ring and come back out
        assert bool((~any_iterate.robust >= ~out.robust).all())
        assert int((~any_iterate.robust).sum()) > int((~out.robust).sum())


def test_objective_is_the_engines_ce():
    x = torch.full((4, 1, 1, 1), 0.62)
    y = torch.zeros(4, dtype=torch.long)
    loss, success = classification_objective(ring_classifier, y, "ce")(x, torch.arange(4))
    assert loss.shape == (4,) and not success.any()
