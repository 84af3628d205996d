"""What every attack shares: threat models (ℓ∞ and ℓ2 balls intersected with [0,1]), seeded per-sample noise and
the result type.

An *objective* is any differentiable per-sample function of the images: ``objective(x_adv, idx) -> (loss, success)``
where ``idx`` says which original samples the rows of ``x_adv`` belong to (attacks drop finished samples and batch
restarts, so rows and samples differ), ``loss`` (B,) is maximised and ``success`` (B,) marks rows that already
reach the attacker's goal. Classification, captioning and training attacks are all objectives over the same engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Objective = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (B,) tensor viewed so that it broadcasts over the rows of ``like`` (B, ...)."""
    return v.view(-1, *([1] * (like.ndim - 1)))


def first_per_group(group: torch.Tensor) -> torch.Tensor:
    """Positions of the first occurrence of each value in ``group`` (deterministic on every device)."""
    if group.numel() == 0:
        return group
    order = torch.argsort(group, stable=True)
    g = group[order]
    first = torch.ones_like(g, dtype=torch.bool)
    first[1:] = g[1:] != g[:-1]
    return order[first]


class LinfBall:
    name = "linf"

    @staticmethod
    def start(x: torch.Tensor, eps: float, noise: torch.Tensor) -> torch.Tensor:
        """Random start from uniform noise in [-1,1], scaled so its largest coordinate is on the sphere (APGD)."""
        scale = noise.abs().flatten(1).amax(dim=1).clamp_min(1e-12)
        return (x + eps * noise / per_sample(scale, x)).clamp(0.0, 1.0)

    @staticmethod
    def step(x: torch.Tensor, grad: torch.Tensor, size: torch.Tensor | float) -> torch.Tensor:
        return x + size * grad.sign()

    @staticmethod
    def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
        return torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp(0.0, 1.0)

    @staticmethod
    def norm(delta: torch.Tensor) -> torch.Tensor:
        return delta.abs().flatten(1).amax(dim=1)


class L2Ball:
    name = "l2"

    @staticmethod
    def start(x: torch.Tensor, eps: float, noise: torch.Tensor) -> torch.Tensor:
        scale = noise.flatten(1).norm(dim=1).clamp_min(1e-12)
        return L2Ball.project(x + eps * noise / per_sample(scale, x), x, eps)

    @staticmethod
    def step(x: torch.Tensor, grad: torch.Tensor, size: torch.Tensor | float) -> torch.Tensor:
        g = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
        return x + size * grad / per_sample(g, grad)

    @staticmethod
    def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
        delta = x_adv - x
        n = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        delta = delta * per_sample(torch.clamp(eps / n, max=1.0), delta)
        # clamping to [0,1] after the ball projection can only shrink the perturbation, so it stays inside the ball
        return (x + delta).clamp(0.0, 1.0)

    @staticmethod
    def norm(delta: torch.Tensor) -> torch.Tensor:
        return delta.flatten(1).norm(dim=1)


BALLS = {"linf": LinfBall, "l2": L2Ball}


def ball(norm: str):
    try:
        return BALLS[norm]
    except KeyError:
        raise ValueError(f"unknown threat model {norm!r}; expected one of {sorted(BALLS)}") from None


def sample_noise(shape: tuple[int, ...], seeds: torch.Tensor, stream: int, dtype=torch.float32) -> torch.Tensor:
    """Uniform [-1,1] noise, one independent generator per sample seeded by ``(seed, stream)``.

    Each sample's random start depends only on its own seed, never on which other samples share its batch, so a run
    split into batches, shards or resumed halfway gives exactly the same perturbations as one uninterrupted run.
    """
    out = torch.empty((len(seeds), *shape), dtype=dtype)
    gen = torch.Generator()
    for i, s in enumerate(seeds.tolist()):
        gen.manual_seed(sample_seed(s, stream))
        out[i] = torch.rand(shape, generator=gen, dtype=dtype) * 2 - 1
    return out


def sample_seed(seed: int, stream: int) -> int:
    """The generator seed of one sample's random stream ``stream`` (its random starts, a library attack's seed)."""
    return (int(seed) * 1_000_003 + stream * 7_919) % (2**63 - 1)


@dataclass
class AttackResult:
    """Per-sample outcome of one attack call. ``x_adv`` is the first successful point where there is one,
    otherwise the point of highest loss."""

    x_adv: torch.Tensor
    success: torch.Tensor  # bool (B,)
    loss: torch.Tensor  # best loss reached (B,)
    iterations: torch.Tensor  # iteration of first success, or iterations run (B,)
    nonfinite: torch.Tensor  # bool (B,): the objective returned NaN/Inf for this sample at some point


def loss_and_grad(objective: Objective, x: torch.Tensor, idx: torch.Tensor):
    """One forward/backward with respect to the input only (parameters are never differentiated)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss, success = objective(x, idx)
        (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), success.detach(), grad.detach()
