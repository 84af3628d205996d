"""Projected gradient ascent (Madry et al.) with optional momentum, over any per-sample objective.

Used two ways: as an evaluation attack (``pgd-10``/``pgd-100``: success tracked at every iterate, a sample counts as
broken as soon as one iterate breaks it) and as the inner maximisation of adversarial training (FARE's recipe:
fixed step 1/255, uniform random start clamped to [0,1], momentum 0.9 on the normalised gradient with the velocity
renormalised each step, last iterate).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks.base import AttackResult, Objective, ball, loss_and_grad, sample_noise


def pgd(
    objective: Objective,
    x: torch.Tensor,
    eps: float,
    *,
    n_iter: int = 10,
    step_size: float | None = None,
    momentum: float = 0.0,
    norm: str = "linf",
    seeds: torch.Tensor | None = None,
    stream: int = 0,
    noise: torch.Tensor | None = None,
    random_start: bool = True,
    stop_on_success: bool = False,
    last_iterate: bool = False,
) -> AttackResult:
    """Maximise ``objective`` around ``x``. ``step_size`` defaults to 2.5·ε/n_iter (Madry et al.'s rule).

    ``last_iterate=True`` returns the final iterate for every sample (what adversarial training uses) without
    evaluating it — n_iter gradient evaluations, as in the reference training code — so ``success`` and ``loss``
    then describe the iterates before it. Otherwise the first successful iterate, or the one of highest loss, over
    all n_iter + 1 iterates.
    """
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    threat = ball(norm)
    step = 2.5 * eps / n_iter if step_size is None else step_size
    x0 = x.detach()
    state = _State.start(_start_point(x0, eps, threat, random_start, noise, seeds, stream), n_iter)
    idx = torch.arange(x.shape[0], device=x.device)
    for it in range(n_iter + (0 if last_iterate else 1)):
        rows = idx[state.active] if stop_on_success else idx
        if rows.numel() == 0:
            break
        loss, ok, grad = loss_and_grad(objective, state.x[rows], rows)
        with torch.no_grad():
            state.record(rows, it, loss, ok, stop_on_success)
            if it == n_iter:
                break
            direction = state.direction(rows, grad, momentum, norm)
            state.x[rows] = threat.project(threat.step(state.x[rows], direction, step), x0[rows], eps)
    x_out = state.x if last_iterate else state.best_x
    return AttackResult(x_out.detach(), state.success, state.best_loss, state.iterations, state.nonfinite)


def _start_point(x0: torch.Tensor, eps: float, threat, random_start: bool, noise: torch.Tensor | None,
                 seeds: torch.Tensor | None, stream: int) -> torch.Tensor:
    """The first iterate: ``x0`` itself, or a random start from ``noise`` (by default each sample's own seeded
    noise)."""
    if not random_start:
        return x0.clone()
    if noise is None:
        seeds = torch.arange(x0.shape[0]) if seeds is None else seeds.cpu()
        noise = sample_noise(tuple(x0.shape[1:]), seeds, stream)
    return threat.start(x0, eps, noise.to(device=x0.device, dtype=x0.dtype))


@dataclass
class _State:
    """Per-sample state of a PGD run (every tensor indexed by sample, not by row)."""

    x: torch.Tensor  # current iterate
    velocity: torch.Tensor  # momentum, in the dual norm's unit ball
    best_x: torch.Tensor  # the first successful iterate, else the one of highest loss so far
    best_loss: torch.Tensor
    success: torch.Tensor
    iterations: torch.Tensor  # iterate index of the first success, else n_iter
    nonfinite: torch.Tensor
    active: torch.Tensor  # still attacked (with stop_on_success, until the first success)

    @classmethod
    def start(cls, x: torch.Tensor, n_iter: int) -> _State:
        n, device = x.shape[0], x.device
        return cls(x, torch.zeros_like(x), x.clone(), torch.full((n,), -float("inf"), device=device),
                   torch.zeros(n, dtype=torch.bool, device=device),
                   torch.full((n,), n_iter, dtype=torch.long, device=device),
                   torch.zeros(n, dtype=torch.bool, device=device), torch.ones(n, dtype=torch.bool, device=device))

    def record(self, rows: torch.Tensor, it: int, loss: torch.Tensor, ok: torch.Tensor, stop_on_success: bool) -> None:
        """Take in the evaluation of iterate ``it`` at ``rows``: non-finite losses, the best point, first success."""
        self.nonfinite[rows] |= ~torch.isfinite(loss)
        open_ = ~self.success[rows]  # a success is kept whatever the loss does later
        better = (loss > self.best_loss[rows]) & open_
        self.best_loss[rows] = torch.where(better, loss, self.best_loss[rows])
        self.best_x[rows[better]] = self.x[rows[better]]
        new = ok & open_
        self.success[rows[new]] = True
        self.iterations[rows[new]] = it
        self.best_x[rows[new]] = self.x[rows[new]]
        if stop_on_success:
            self.active[rows[ok]] = False

    def direction(self, rows: torch.Tensor, grad: torch.Tensor, momentum: float, norm: str) -> torch.Tensor:
        """What the step at ``rows`` follows: the gradient, or with momentum the renormalised velocity."""
        if momentum <= 0:
            return grad
        # FARE's rule: the velocity is renormalised every step, v ← unit(μ·v + unit(g)). Under ℓ∞ the sign of
        # μ·v + sign(g) equals sign(g) wherever g ≠ 0 (|μ·v| ≤ μ < 1), so it only steers coordinates with a zero
        # gradient; it is kept to match the published recipe, not for its effect.
        self.velocity[rows] = _unit(momentum * self.velocity[rows] + _unit(grad, norm), norm)
        return self.velocity[rows]


def _unit(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The gradient normalised in the dual norm (sign for ℓ∞, unit ℓ2 otherwise), as momentum methods accumulate it."""
    if norm == "linf":
        return grad.sign()
    return grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (grad.ndim - 1)))
