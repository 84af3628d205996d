"""Auto-PGD (Croce & Hein, ICML 2020) over any per-sample objective.

The published algorithm: step size 2ε, momentum 0.75, checkpoints w_j at p_0 = 0, p_1 = 0.22 and
p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06) of the budget; at each checkpoint the step size halves (and the
iterate restarts from the best point) where fewer than ρ = 75 % of the steps since the last checkpoint increased
the loss, or where the step size was not halved last time and the best loss has not improved since.

Engine choices (they change speed, never the outcome of a sample):
- samples are independent, so a sample is dropped from the batch the moment it succeeds;
- restarts run side by side as replicas of the batch, and a sample leaves when any replica succeeds;
- every random start comes from the sample's own seed (see ``sample_noise``), so batching does not matter.
"""

from __future__ import annotations

import torch

from attacks.base import AttackResult, Objective, ball, loss_and_grad, sample_noise


def checkpoint_schedule(n_iter: int) -> tuple[int, int, int]:
    """(first window length, minimum window length, window decrement) in iterations, as in the reference code."""
    return max(int(0.22 * n_iter), 1), max(int(0.06 * n_iter), 1), max(int(0.03 * n_iter), 1)


def apgd(
    objective: Objective,
    x: torch.Tensor,
    eps: float,
    *,
    n_iter: int = 100,
    restarts: int = 1,
    norm: str = "linf",
    seeds: torch.Tensor | None = None,
    stream: int = 0,
    stop_on_success: bool = True,
    rho: float = 0.75,
    momentum: float = 0.75,
    x_init: torch.Tensor | None = None,
) -> AttackResult:
    """Maximise ``objective`` in the ε-ball around ``x`` (images in [0,1]); see the module docstring."""
    if n_iter < 1 or restarts < 1:
        raise ValueError(f"n_iter and restarts must be >= 1, got {n_iter} and {restarts}")
    threat = ball(norm)
    n, device = x.shape[0], x.device
    seeds = torch.arange(n) if seeds is None else seeds.cpu()
    group = torch.arange(n, device=device).repeat(restarts)  # which sample each working row attacks
    x0 = x.detach().repeat(restarts, *([1] * (x.ndim - 1)))
    if x_init is not None:
        x_cur = threat.project(x_init.detach().repeat(restarts, *([1] * (x.ndim - 1))), x0, eps)
    else:
        noise = torch.cat([sample_noise(tuple(x.shape[1:]), seeds, stream * 1000 + r) for r in range(restarts)])
        x_cur = threat.start(x0, eps, noise.to(device=device, dtype=x.dtype))

    out_x = x.detach().clone()
    out_loss = torch.full((n,), -float("inf"), device=device)
    out_success = torch.zeros(n, dtype=torch.bool, device=device)
    out_iters = torch.full((n,), n_iter, dtype=torch.long, device=device)
    out_nonfinite = torch.zeros(n, dtype=torch.long, device=device)  # count of non-finite losses

    def record_successes(rows_success: torch.Tensor, x_rows: torch.Tensor, loss_rows: torch.Tensor, it: int):
        """Keep the first successful point of each sample."""
        for r in torch.nonzero(rows_success).flatten().tolist():
            g = int(group[r])
            if not out_success[g]:
                out_success[g] = True
                out_x[g] = x_rows[r]
                out_loss[g] = loss_rows[r]
                out_iters[g] = it

    loss, success, grad = loss_and_grad(objective, x_cur, group)
    out_nonfinite.index_add_(0, group, (~torch.isfinite(loss)).long())
    record_successes(success, x_cur, loss, 0)

    step = torch.full((x_cur.shape[0],) + (1,) * (x.ndim - 1), 2.0 * eps, device=device, dtype=x.dtype)
    x_prev = x_cur.clone()
    x_best, grad_best, loss_best = x_cur.clone(), grad.clone(), loss.clone()
    last_loss, n_increase = loss.clone(), torch.zeros_like(loss)
    loss_best_at_check = loss_best.clone()
    reduced_at_check = torch.ones_like(loss, dtype=torch.bool)
    window, window_min, window_decr = checkpoint_schedule(n_iter)
    since_check = 0

    def keep_rows(keep: torch.Tensor):
        nonlocal group, x0, x_cur, x_prev, grad, step, x_best, grad_best, loss_best, last_loss, n_increase
        nonlocal loss_best_at_check, reduced_at_check
        group, x0, x_cur, x_prev, grad, step = group[keep], x0[keep], x_cur[keep], x_prev[keep], grad[keep], step[keep]
        x_best, grad_best, loss_best = x_best[keep], grad_best[keep], loss_best[keep]
        last_loss, n_increase = last_loss[keep], n_increase[keep]
        loss_best_at_check, reduced_at_check = loss_best_at_check[keep], reduced_at_check[keep]

    if stop_on_success:
        keep_rows(~out_success[group])

    for it in range(1, n_iter + 1):
        if group.numel() == 0:
            break
        with torch.no_grad():
            a = momentum if it > 1 else 1.0
            z = threat.project(threat.step(x_cur, grad, step), x0, eps)
            x_next = threat.project(x_cur + a * (z - x_cur) + (1 - a) * (x_cur - x_prev), x0, eps)
            x_prev, x_cur = x_cur, x_next
        loss, success, grad = loss_and_grad(objective, x_cur, group)
        with torch.no_grad():
            out_nonfinite.index_add_(0, group, (~torch.isfinite(loss)).long())
            n_increase += (loss > last_loss).to(n_increase.dtype)
            last_loss = loss
            better = loss > loss_best
            x_best[better], grad_best[better], loss_best[better] = x_cur[better], grad[better], loss[better]
            since_check += 1
            if since_check == window:
                oscillating = n_increase <= window * rho
                stalled = ~reduced_at_check & (loss_best_at_check >= loss_best)
                reduce = oscillating | stalled
                step[reduce] /= 2.0
                x_cur[reduce], grad[reduce] = x_best[reduce], grad_best[reduce]
                reduced_at_check, loss_best_at_check = reduce, loss_best.clone()
                n_increase.zero_()
                since_check, window = 0, max(window - window_decr, window_min)
            if success.any():
                record_successes(success, x_cur, loss, it)
                if stop_on_success:
                    keep_rows(~out_success[group])

    # samples never broken: report the replica that reached the highest loss
    with torch.no_grad():
        done = out_success.tolist()
        best = out_loss.tolist()
        for r, (g, value) in enumerate(zip(group.tolist(), loss_best.tolist())):
            if not done[g] and value > best[g]:
                best[g] = value
                out_loss[g], out_x[g] = loss_best[r], x_best[r]
    return AttackResult(out_x, out_success, out_loss, out_iters, out_nonfinite > 0)
