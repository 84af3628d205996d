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

from dataclasses import dataclass, fields

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


@dataclass
class _LoopState:
    """The APGD loop's state, one row per (sample, restart) still attacked; every tensor's first dimension is the row.

    ``x`` is the current iterate and ``x_prev`` the one before it (for the momentum); ``step`` the per-row step
    size; ``*_best`` the point of highest loss so far and its gradient (where a halving restarts from);
    ``last_loss`` and ``n_increase`` count the steps that increased the loss since the last checkpoint;
    ``loss_best_at_check`` and ``reduced_at_check`` are the best loss and the halving decision at the last one.
    """

    group: torch.Tensor  # which sample each row attacks
    x0: torch.Tensor  # the clean image (the centre of the ball)
    x: torch.Tensor
    x_prev: torch.Tensor
    grad: torch.Tensor
    step: torch.Tensor
    x_best: torch.Tensor
    grad_best: torch.Tensor
    loss_best: torch.Tensor
    last_loss: torch.Tensor
    n_increase: torch.Tensor
    loss_best_at_check: torch.Tensor
    reduced_at_check: torch.Tensor

    @classmethod
    def start(cls, group, x0, x, loss, grad, eps: float) -> _LoopState:
        """The state after evaluating the starting points: every row starts at step size 2ε, best = start."""
        step = torch.full((x.shape[0],), 2.0 * eps, device=x.device, dtype=x.dtype)
        return cls(group, x0, x, x.clone(), grad, step, x.clone(), grad.clone(), loss.clone(), loss.clone(),
                   torch.zeros_like(loss), loss.clone(), torch.ones_like(loss, dtype=torch.bool))

    def keep(self, rows: torch.Tensor) -> _LoopState:
        return _LoopState(*(getattr(self, f.name)[rows] for f in fields(self)))


@dataclass
class _Checkpoints:
    """When the step size is reconsidered: after a window of iterations that shrinks at every checkpoint."""

    window: int
    window_min: int
    window_decr: int
    since_check: int = 0

    @classmethod
    def for_budget(cls, n_iter: int) -> _Checkpoints:
        return cls(*checkpoint_schedule(n_iter))

    def tick(self) -> int | None:
        """Count one iteration; the length of the window it closes, if it closes one (the next one is shorter)."""
        self.since_check += 1
        if self.since_check < self.window:
            return None
        closed = self.window
        self.since_check, self.window = 0, max(self.window - self.window_decr, self.window_min)
        return closed


def _run(objective, x0, x_start, group, eps, threat, n_iter, rho, momentum, stop_on_success, out: _Outcome) -> None:
    """One APGD run of ``n_iter`` iterations for every row (a sample × restart), updating ``out``."""
    loss, success, grad = loss_and_grad(objective, x_start, group)
    out.count_nonfinite(group, loss)
    out.record_successes(group, success, x_start, loss, 0)
    state = _LoopState.start(group, x0, x_start, loss, grad, eps)
    if stop_on_success and success.any():
        state = _drop_finished(state, out)
    checkpoints = _Checkpoints.for_budget(n_iter)
    for it in range(1, n_iter + 1):
        if state.group.numel() == 0:
            return
        with torch.no_grad():
            _momentum_step(state, threat, eps, momentum if it > 1 else 1.0)
        loss, success, grad = loss_and_grad(objective, state.x, state.group)
        with torch.no_grad():
            out.count_nonfinite(state.group, loss)
            _track_best(state, loss, grad)
            any_success = bool(success.any())
            if any_success:  # the point just evaluated, before a checkpoint may send its row back to the best one
                out.record_successes(state.group, success, state.x, loss, it)
            window = checkpoints.tick()
            if window is not None:
                _checkpoint(state, window, rho)
            if any_success and stop_on_success:
                state = _drop_finished(state, out)
    with torch.no_grad():
        out.offer_best(state.group, state.x_best, state.loss_best)


def _drop_finished(state: _LoopState, out: _Outcome) -> _LoopState:
    """Rows whose sample has succeeded (in this row or another replica) leave the batch."""
    return state.keep(torch.nonzero(~out.success[state.group]).flatten())


def _momentum_step(state: _LoopState, threat, eps: float, a: float) -> None:
    """A gradient step from ``x``, then the momentum average with the previous iterate, both projected onto the
    ball (``a`` = 1 on the first iteration: no momentum yet)."""
    x = state.x
    z = threat.project(threat.step(x, state.grad, per_sample(state.step, x)), state.x0, eps)
    state.x_prev, state.x = x, threat.project(x + a * (z - x) + (1 - a) * (x - state.x_prev), state.x0, eps)


def _track_best(state: _LoopState, loss: torch.Tensor, grad: torch.Tensor) -> None:
    """Count a loss increase and keep the point of highest loss with its gradient."""
    state.grad = grad
    state.n_increase += (loss > state.last_loss).to(state.n_increase.dtype)
    state.last_loss = loss
    better = loss > state.loss_best
    rows_better = per_sample(better, state.x)
    state.x_best = torch.where(rows_better, state.x, state.x_best)
    state.grad_best = torch.where(rows_better, grad, state.grad_best)
    state.loss_best = torch.where(better, loss, state.loss_best)


def _checkpoint(state: _LoopState, window: int, rho: float) -> None:
    """Halve the step (and restart from the best point) where at most ρ of the window's steps increased the loss,
    or where the last checkpoint did not halve it and the best loss has not improved since."""
    oscillating = state.n_increase <= window * rho
    stalled = ~state.reduced_at_check & (state.loss_best_at_check >= state.loss_best)
    reduce = oscillating | stalled
    state.step = torch.where(reduce, state.step / 2.0, state.step)
    rows_reduce = per_sample(reduce, state.x)
    state.x = torch.where(rows_reduce, state.x_best, state.x)
    state.grad = torch.where(rows_reduce, state.grad_best, state.grad)
    state.reduced_at_check, state.loss_best_at_check = reduce, state.loss_best.clone()
    state.n_increase = torch.zeros_like(state.n_increase)
