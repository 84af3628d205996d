"""Projected gradient ascent (Madry et al.) with optional momentum, over any per-sample objective.

Used two ways: as an evaluation attack (``pgd-10``/``pgd-100``: success tracked at every iterate, a sample counts as
broken as soon as one iterate breaks it) and as the inner maximisation of adversarial training (FARE's recipe:
fixed step 1/255, uniform random start clamped to [0,1], momentum 0.9 on the normalised gradient with the velocity
renormalised each step, last iterate).
"""

from __future__ import annotations

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
    n, device = x.shape[0], x.device
    x0 = x.detach()
    if random_start:
        if noise is None:
            seeds = torch.arange(n) if seeds is None else seeds.cpu()
            noise = sample_noise(tuple(x.shape[1:]), seeds, stream)
        x_cur = threat.start(x0, eps, noise.to(device=device, dtype=x.dtype))
    else:
        x_cur = x0.clone()
    idx = torch.arange(n, device=device)
    velocity = torch.zeros_like(x0)

    best_x, best_loss = x_cur.clone(), torch.full((n,), -float("inf"), device=device)
    success = torch.zeros(n, dtype=torch.bool, device=device)
    iters = torch.full((n,), n_iter, dtype=torch.long, device=device)
    nonfinite = torch.zeros(n, dtype=torch.bool, device=device)
    active = torch.ones(n, dtype=torch.bool, device=device)

    for it in range(n_iter + (0 if last_iterate else 1)):
        rows = idx[active] if stop_on_success else idx
        if rows.numel() == 0:
            break
        loss, ok, grad = loss_and_grad(objective, x_cur[rows], rows)
        with torch.no_grad():
            nonfinite[rows] |= ~torch.isfinite(loss)
            open_ = ~success[rows]  # a success is kept whatever the loss does later
            better = (loss > best_loss[rows]) & open_
            best_loss[rows] = torch.where(better, loss, best_loss[rows])
            best_x[rows[better]] = x_cur[rows[better]]
            new = ok & open_
            success[rows[new]] = True
            iters[rows[new]] = it
            best_x[rows[new]] = x_cur[rows[new]]
            if stop_on_success:
                active[rows[ok]] = False
            if it == n_iter:
                break
            if momentum > 0:
                # FARE's rule: the velocity is renormalised every step, v ← unit(μ·v + unit(g)). Under ℓ∞ the sign
                # of μ·v + sign(g) equals sign(g) wherever g ≠ 0 (|μ·v| ≤ μ < 1), so it only steers coordinates
                # with a zero gradient; it is kept to match the published recipe, not for its effect.
                velocity[rows] = _unit(momentum * velocity[rows] + _unit(grad, norm), norm)
                direction = velocity[rows]
            else:
                direction = grad
            x_cur[rows] = threat.project(threat.step(x_cur[rows], direction, step), x0[rows], eps)
    x_out = x_cur if last_iterate else best_x
    return AttackResult(x_out.detach(), success, best_loss, iters, nonfinite)


def _unit(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The gradient normalised in the dual norm (sign for ℓ∞, unit ℓ2 otherwise), as momentum methods accumulate it."""
    if norm == "linf":
        return grad.sign()
    return grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (grad.ndim - 1)))
