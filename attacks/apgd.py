"""Auto-PGD (Croce & Hein, ICML 2020) over any per-sample objective.

The published algorithm: step size 2ε, momentum 0.75, checkpoints w_j at p_0 = 0, p_1 = 0.22 and
p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06) of the budget; at each checkpoint the step size halves (and the
iterate restarts from the best point) where at most ρ = 75 % of the steps since the last checkpoint increased
the loss, or where the step size was not halved last time and the best loss has not improved since.

Engine choices (they change speed, never the outcome of a sample):
- samples are independent, so a sample leaves the batch the moment it succeeds (the reference keeps iterating on
  it until the end of the run);
- the first restart runs alone; the remaining ones run side by side as replicas of the points it left robust, and
  a sample leaves when any replica succeeds — an undefended model is broken cheaply by the first restart, a robust
  one gets large batches;
- every random start comes from the sample's own seed and restart number (see ``sample_noise``), so neither the
  batch composition nor the grouping of restarts changes any sample's outcome;
- the loop keeps all its state on the device; the only host synchronisation per iteration is the check whether a
  sample succeeded (needed to drop it).
"""

from __future__ import annotations

import torch

from attacks.base import AttackResult, Objective, ball, first_per_group, loss_and_grad, per_sample, sample_noise


def checkpoint_schedule(n_iter: int) -> tuple[int, int, int]:
    """(first window length, minimum window length, window decrement) in iterations, as in the reference code."""
    return max(int(0.22 * n_iter), 1), max(int(0.06 * n_iter), 1), max(int(0.03 * n_iter), 1)


class _Outcome:
    """Per-sample results accumulated over restarts: the first success, else the highest loss reached."""

    def __init__(self, x: torch.Tensor, n_iter: int):
        n, device = x.shape[0], x.device
        self.x = x.detach().clone()
        self.loss = torch.full((n,), -float("inf"), device=device)
        self.success = torch.zeros(n, dtype=torch.bool, device=device)
        self.iterations = torch.full((n,), n_iter, dtype=torch.long, device=device)
        self.nonfinite_count = torch.zeros(n, dtype=torch.long, device=device)

    def count_nonfinite(self, group: torch.Tensor, loss: torch.Tensor) -> None:
        self.nonfinite_count.index_add_(0, group, (~torch.isfinite(loss)).long())  # no host synchronisation

    def record_successes(self, group: torch.Tensor, hit: torch.Tensor, x_rows, loss_rows, it: int) -> None:
        rows = torch.nonzero(hit & ~self.success[group]).flatten()
        rows = rows[first_per_group(group[rows])]  # a sample broken by two replicas at once keeps the first
        g = group[rows]
        self.success[g], self.x[g], self.loss[g], self.iterations[g] = True, x_rows[rows], loss_rows[rows], it

    def offer_best(self, group: torch.Tensor, x_rows: torch.Tensor, loss_rows: torch.Tensor) -> None:
        """Unbroken samples keep the replica of highest loss over all restarts."""
        open_ = ~self.success[group]
        loss_rows = torch.nan_to_num(loss_rows, nan=-float("inf"))  # a NaN replica never hides a finite one
        best = self.loss.clone().scatter_reduce_(0, group[open_], loss_rows[open_], "amax")
        rows = torch.nonzero(open_ & (loss_rows == best[group]) & (loss_rows > self.loss[group])).flatten()
        rows = rows[first_per_group(group[rows])]
        g = group[rows]
        self.x[g], self.loss[g] = x_rows[rows], loss_rows[rows]


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
    first_restart_alone: bool = True,
) -> AttackResult:
    """Maximise ``objective`` in the ε-ball around ``x`` (images in [0,1]); see the module docstring.

    ``x_init`` replaces the random start (every restart then starts there); ``first_restart_alone=False`` runs all
    restarts as replicas from the start (better use of a large device when most points are robust).
    """
    if n_iter < 1 or restarts < 1:
        raise ValueError(f"n_iter and restarts must be >= 1, got {n_iter} and {restarts}")
    threat = ball(norm)
    n, device = x.shape[0], x.device
    seeds = torch.arange(n) if seeds is None else seeds.cpu()
    out = _Outcome(x, n_iter)
    chunks = [1, restarts - 1] if first_restart_alone and restarts > 1 else [restarts]
    first = 0
    for width in chunks:
        todo = torch.nonzero(~out.success).flatten() if stop_on_success else torch.arange(n, device=device)
        if todo.numel() == 0:
            break
        group = todo.repeat(width)  # which sample each working row attacks, restart-major
        x0 = x.detach()[group]
        if x_init is not None:
            start = threat.project(x_init.detach()[group], x0, eps)
        else:
            todo_seeds = seeds[todo.cpu()]
            noise = torch.cat([sample_noise(tuple(x.shape[1:]), todo_seeds, stream * 1000 + r)
                               for r in range(first, first + width)])
            start = threat.start(x0, eps, noise.to(device=device, dtype=x.dtype))
        _run(objective, x0, start, group, eps, threat, n_iter, rho, momentum, stop_on_success, out)
        first += width
    return AttackResult(out.x, out.success, out.loss, out.iterations, out.nonfinite_count > 0)


def _run(objective, x0, x_cur, group, eps, threat, n_iter, rho, momentum, stop_on_success, out: _Outcome) -> None:
    """One APGD run of ``n_iter`` iterations for every row (a sample × restart), updating ``out``."""
    loss, success, grad = loss_and_grad(objective, x_cur, group)
    out.count_nonfinite(group, loss)
    out.record_successes(group, success, x_cur, loss, 0)

    step = torch.full((x_cur.shape[0],), 2.0 * eps, device=x_cur.device, dtype=x_cur.dtype)
    x_prev = x_cur.clone()
    x_best, grad_best, loss_best = x_cur.clone(), grad.clone(), loss.clone()
    last_loss, n_increase = loss.clone(), torch.zeros_like(loss)
    loss_best_at_check = loss_best.clone()
    reduced_at_check = torch.ones_like(loss, dtype=torch.bool)
    window, window_min, window_decr = checkpoint_schedule(n_iter)
    since_check = 0
    state = [x0, x_cur, x_prev, grad, step, x_best, grad_best, loss_best, last_loss, n_increase,
             loss_best_at_check, reduced_at_check]

    def drop_finished():
        nonlocal group, state
        keep = torch.nonzero(~out.success[group]).flatten()
        group, state = group[keep], [t[keep] for t in state]

    if stop_on_success and success.any():
        drop_finished()

    for it in range(1, n_iter + 1):
        if group.numel() == 0:
            return
        (x0, x_cur, x_prev, grad, step, x_best, grad_best, loss_best, last_loss, n_increase,
         loss_best_at_check, reduced_at_check) = state
        with torch.no_grad():
            a = momentum if it > 1 else 1.0
            size = per_sample(step, x_cur)
            z = threat.project(threat.step(x_cur, grad, size), x0, eps)
            x_prev, x_cur = x_cur, threat.project(x_cur + a * (z - x_cur) + (1 - a) * (x_cur - x_prev), x0, eps)
        loss, success, grad = loss_and_grad(objective, x_cur, group)
        with torch.no_grad():
            out.count_nonfinite(group, loss)
            n_increase += (loss > last_loss).to(n_increase.dtype)
            last_loss = loss
            better = loss > loss_best
            rows_better = per_sample(better, x_cur)
            x_best = torch.where(rows_better, x_cur, x_best)
            grad_best = torch.where(rows_better, grad, grad_best)
            loss_best = torch.where(better, loss, loss_best)
            since_check += 1
            if since_check == window:
                oscillating = n_increase <= window * rho
                stalled = ~reduced_at_check & (loss_best_at_check >= loss_best)
                reduce = oscillating | stalled
                step = torch.where(reduce, step / 2.0, step)
                rows_reduce = per_sample(reduce, x_cur)
                x_cur = torch.where(rows_reduce, x_best, x_cur)
                grad = torch.where(rows_reduce, grad_best, grad)
                reduced_at_check, loss_best_at_check = reduce, loss_best.clone()
                n_increase = torch.zeros_like(n_increase)
                since_check, window = 0, max(window - window_decr, window_min)
            state = [x0, x_cur, x_prev, grad, step, x_best, grad_best, loss_best, last_loss, n_increase,
                     loss_best_at_check, reduced_at_check]
            if success.any():
                out.record_successes(group, success, x_cur, loss, it)
                if stop_on_success:
                    drop_finished()

    x_best, loss_best = state[5], state[7]
    with torch.no_grad():
        out.offer_best(group, x_best, loss_best)
