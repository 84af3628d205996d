"""Randomised and non-differentiable models as the attacks see them: which random draw a forward pass uses, how an
attack differentiates through a test-time defence, and the expectation over transformation (EOT, Athalye et al.,
ICML 2018) of an attack objective over several draws (``attacks.losses.classification_objective``).

Draws. A randomised test-time defence (``bench.defences``) reads ``current_draw()`` once per forward pass and takes
its randomness from that index, the run seed and the image itself, so the same image under the same draw is
classified the same way every time, in any batch and on resume. Draw 0 (``VERDICT``) is what a sample is judged by:
the clean and final scoring. An attack never sees it: the engine's attack forwards use draws 1..k (k = the
protocol's ``eot``), so a success an attack claims counts only once the verdict draw confirms it (the engine's fp32
re-scoring) — as a fresh draw at test time would. A library backend's own loop (pyautoattack's EOT calls the model
repeatedly on the same image) gets a fresh draw on every call (``fresh_draws``).

Backward. How an attack differentiates through a defence is part of its protocol (``Protocol.backward``):
``autograd``, the full pipeline as autograd sees it, or ``bpda``, the differentiable stand-in the defence declares
for its non-differentiable part (Athalye et al.'s BPDA). A defence reads ``current_backward()`` in its forward.
"""

from __future__ import annotations

import contextlib
import itertools
from contextvars import ContextVar

VERDICT = 0  # the draw every scoring forward uses (clean and adversarial verdicts)
FIRST_ATTACK_DRAW = 1  # attack forwards use draws 1..k, never the verdict's
BACKWARDS = ("autograd", "bpda")

_draw: ContextVar[int | itertools.count] = ContextVar("draw", default=VERDICT)
_backward: ContextVar[str] = ContextVar("backward", default="autograd")


def current_draw() -> int:
    """The draw index of the forward pass being computed (one call per forward pass: under ``fresh_draws`` each call
    takes the next index)."""
    value = _draw.get()
    return value if isinstance(value, int) else next(value)


@contextlib.contextmanager
def drawing(index: int):
    """Forward passes inside use draw ``index``."""
    token = _draw.set(int(index))
    try:
        yield
    finally:
        _draw.reset(token)


@contextlib.contextmanager
def fresh_draws(start: int = FIRST_ATTACK_DRAW):
    """Every forward pass inside takes a new draw, counting from ``start`` (for a library's own EOT loop)."""
    token = _draw.set(itertools.count(start))
    try:
        yield
    finally:
        _draw.reset(token)


def current_backward() -> str:
    return _backward.get()


@contextlib.contextmanager
def backward(mode: str):
    """Attacks inside differentiate through a defence by ``mode`` (one of ``BACKWARDS``)."""
    if mode not in BACKWARDS:
        raise ValueError(f"unknown backward {mode!r}; expected one of {BACKWARDS}")
    token = _backward.set(mode)
    try:
        yield
    finally:
        _backward.reset(token)


def attack_draws(eot: int) -> range:
    """The draws an attack's objective averages over: 1..k, never the verdict's."""
    if eot < 1:
        raise ValueError(f"EOT needs at least one draw, got {eot}")
    return range(FIRST_ATTACK_DRAW, FIRST_ATTACK_DRAW + eot)
