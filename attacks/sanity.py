"""Sanity checks against gradient masking, reported with every attacked result (AutoAttack's advice: a robust
accuracy is not trusted before these pass). Each check is a pass/fail flag plus the evidence behind it; a failed
check is stored and shown, never hidden, and never changes the reported accuracy.

Per cell:
- ``robust-le-clean``: no sample is robust without being correct on the clean image (the whole cell);
and on the points the protocol left robust among the first ``SanityConfig.samples`` clean-correct samples:
- ``more-iterations``: the protocol's first stage cut to a fraction of its iterations (one restart, the same random
  start) breaks none of them — fewer iterations never help the attacker;
- ``gradient-free``: Square (pyautoattack; a random search that never sees a gradient) breaks none of them.
Across the cells of one ``bench run`` (``eps_monotone``):
- ``eps-monotone``: accuracy never rises with ε, the clean cell counting as ε = 0 (so robust ≤ clean across cells).
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import asdict, dataclass, replace

import pandas as pd
import torch
from pyautoattack.square import SquareAttack

from attacks.eot import FIRST_ATTACK_DRAW, drawing
from attacks.library_stages import LIBRARY_NORM
from attacks.protocols import Protocol, run_protocol

PREFIX = "sanity:"  # result rows carry metric "sanity:<check>" with value 1.0 (passed) or 0.0 (failed)


@dataclass(frozen=True)
class SanityConfig:
    samples: int = 16  # clean-correct samples looked at again per cell (their robust ones are attacked)
    square_queries: int = 250  # Square's budget per sample (its schedule is rescaled to it)
    fractions: tuple[float, ...] = (0.1, 0.25)  # shorter budgets, as fractions of the first stage's iterations

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    details: dict

    @property
    def metric(self) -> str:
        return PREFIX + self.name

    def as_dict(self) -> dict:
        return asdict(self)


def robust_le_clean(clean_correct: torch.Tensor, robust: torch.Tensor) -> CheckResult:
    bad = int((robust & ~clean_correct).sum())
    n_clean, n_robust = int(clean_correct.sum()), int(robust.sum())
    return CheckResult("robust-le-clean", bad == 0 and n_robust <= n_clean,
                       {"clean": n_clean, "robust": n_robust, "robust_but_clean_wrong": bad})


def more_iterations(model, x, y, eps: float, protocol: Protocol, seeds: torch.Tensor,
                    config: SanityConfig, craft_model=None) -> CheckResult:
    """``x``: points the full protocol left robust. Its first stage, cut short (and crafted, drawn and differentiated
    as the protocol's), must not break any of them."""
    first = protocol.stages[0]
    budgets = sorted({max(1, int(f * first.iterations)) for f in config.fractions} - {first.iterations})
    broken = {}
    for n_iter in budgets:
        short = replace(first, iterations=n_iter, restarts=1, targets=min(first.targets, 1))
        cut = replace(protocol, name=short.label(), description="sanity", stages=(short,))
        out = run_protocol(model, x, y, eps, cut, seeds, craft_model=craft_model)
        broken[short.label()] = int((~out.robust).sum())
    return CheckResult("more-iterations", not any(broken.values()), {"attacked": len(x), "broken_by": broken})


def gradient_free(model, x, y, eps: float, protocol: Protocol, seed: int, config: SanityConfig) -> CheckResult:
    """``x``: points the gradient protocol left robust. Square, which never sees a gradient, must not break any."""
    square = SquareAttack(model, norm=LIBRARY_NORM[protocol.norm], n_queries=config.square_queries, eps=eps,
                          p_init=0.8, n_restarts=1, seed=seed, resc_schedule=True, device=x.device)
    cuda = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), torch.no_grad():
        with drawing(FIRST_ATTACK_DRAW):  # a randomised model: Square searches on an attack draw, judged on the verdict
            x_adv = square.perturb(x, y)
        broken = model(x_adv).argmax(dim=1) != y
    return CheckResult("gradient-free", not bool(broken.any()), {
        "attacked": len(x), "queries": config.square_queries, "square_broken": int(broken.sum())})


def subset(clean_correct: torch.Tensor, config: SanityConfig) -> torch.Tensor:
    """Positions of the samples the per-cell checks look at again: the first clean-correct ones."""
    return torch.nonzero(clean_correct).flatten()[:config.samples]


def attack_checks(model, x: torch.Tensor, y: torch.Tensor, eps: float, protocol: Protocol, seeds: torch.Tensor,
                  seed: int, robust: torch.Tensor, config: SanityConfig, craft_model=None) -> list[CheckResult]:
    """The checks that attack again, on clean-correct samples ``x`` whose protocol verdict is ``robust``. Only the
    robust ones are attacked: a point the protocol broke cannot be evidence against it (and an undefended model
    costs nothing to check). ``craft_model``: a transfer protocol's base (see ``run_protocol``); Square attacks the
    model judged, so it also tells how much a transfer protocol leaves unbroken."""
    if not len(x) or not protocol.stages:
        return []
    keep = torch.nonzero(robust).flatten()
    if keep.numel() == 0:
        return [CheckResult(name, True, {"attacked": 0}) for name in ("more-iterations", "gradient-free")]
    xs, ys, ss = x[keep], y[keep], seeds[keep.cpu()]
    with one_cpu_thread(x.device):
        return [more_iterations(model, xs, ys, eps, protocol, ss, config, craft_model),
                gradient_free(model, xs, ys, eps, protocol, seed, config)]


@contextlib.contextmanager
def one_cpu_thread(device: torch.device):
    """A handful of images per call (Square's queries are many tiny operations): on a CPU, handing them to a second
    thread costs more than it saves — measured 2.3 s with one thread against 195 s with two on a busy machine."""
    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def eps_monotone(points: list[tuple[float, str, float]]) -> list[tuple[str, CheckResult]]:
    """``points``: (ε, ε label, accuracy) of one (encoder, dataset, protocol), the clean cell at ε = 0 included.
    One result per ε > 0: its accuracy is no higher than at the next smaller ε."""
    points = sorted(points)
    out = []
    for (_, l0, a0), (e1, l1, a1) in zip(points, points[1:]):
        if e1 > 0:
            out.append((l1, CheckResult("eps-monotone", a1 <= a0, {"eps": l1, "accuracy": a1, "previous_eps": l0,
                                                                    "previous_accuracy": a0})))
    return out


@dataclass(frozen=True)
class DerivedRun:
    """A result computed from other runs' rows (no samples of its own): a run card and tidy rows."""

    run_id: str
    card: dict
    rows: list[dict]


SWEEP_KEY = ["suite", "encoder", "task", "dataset", "seed", "n_samples"]
PROTOCOL_KEY = ["attack", "protocol", "precision"]  # the protocol text names a reference backend


def eps_sweeps(rows: pd.DataFrame, git_sha: str, now: str) -> list[DerivedRun]:
    """The ``eps-monotone`` check over the tidy rows of one ``bench run``: for each attacked cell, one derived run
    whose single row copies the cell's accuracy row (so a report attaches it to that cell) with metric
    ``sanity:eps-monotone``; its card names the two cells compared and holds the details under "sanity"."""
    acc = rows[rows["metric"] == "accuracy"]
    out = []
    # two checkpoints under one name (``fare4`` and ``fare4=my.pt``) are two sweeps, never one
    key = SWEEP_KEY + [c for c in ("encoder_sha256",) if c in acc.columns]
    for _, group in acc.groupby(key, sort=False):
        clean = group[group["attack"] == "none"]
        for _, attacked in group[group["attack"] != "none"].groupby(PROTOCOL_KEY, sort=False):
            cells = pd.concat([clean, attacked]).drop_duplicates("run_id")
            by_label = {str(r.eps_str): r for r in cells.itertuples(index=False)}
            points = [(float(r.eps), str(r.eps_str), float(r.value)) for r in cells.itertuples(index=False)]
            for label, check in eps_monotone(points):
                cell = by_label[label]._asdict()
                previous = by_label[check.details["previous_eps"]].run_id
                run_id = f"sanity-{cell['run_id']}-{hashlib.sha256(previous.encode()).hexdigest()[:6]}"
                row = {**cell, "run_id": run_id, "metric": check.metric, "value": float(check.passed),
                       "ci_low": float("nan"), "ci_high": float("nan"), "git_sha": git_sha, "started_at": now,
                       "seconds": 0.0}
                card = {"run_id": run_id, "kind": "sanity", "status": "complete", "check": check.name,
                        "cells": [previous, cell["run_id"]], "sanity": [check.as_dict()], "git_sha": git_sha,
                        "started_at": now, "finished_at": now}
                out.append(DerivedRun(run_id, card, [row]))
    return out
