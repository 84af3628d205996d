"""FAB-T and Square as stages of the native engine, run by pyautoattack (Croce & Hein's AutoAttack, packaged), with
AutoAttack's standard-version settings (pyautoattack 0.2 ``autoattack.py`` ``AutoAttack.__init__`` and
``_set_version('standard')``): FAB-T one restart, 100 iterations, one run per target class; Square 5,000 queries,
p_init 0.8, one restart, its margin loss, the query schedule not rescaled.

Why the library and how it is called:
- Square is a random search that never reads a gradient, so gradient masking cannot hide from it. pyautoattack draws
  one square position per iteration for the whole batch and the random start from the global generator, so a
  sample's search would depend on which other samples share its batch. Here each sample runs alone, seeded by its
  own seed and the stage (``attacks.base.sample_seed``): its result depends on nothing else, as every random start of
  the native engine — at the price of batching (one image per query).
- FAB-T with one restart draws nothing at random (its first restart starts at the clean image), so a batch gives
  every sample the result it would get alone; it runs batched.
- Every call runs inside a forked generator state: the library reseeds the global generators.
The adversarial images come back inside the ε-ball and [0,1] (Square projects every query; FAB keeps only points
within ε), and the engine projects them once more before scoring.
"""

from __future__ import annotations

import torch
from pyautoattack.fab_pt import FABAttack_PT
from pyautoattack.square import SquareAttack

from attacks.base import AttackResult, ball, sample_seed
from attacks.losses import LOSSES

LIBRARY_NORM = {"linf": "Linf", "l2": "L2"}  # the threat models' names in the reference libraries
SQUARE_P_INIT = 0.8  # AutoAttack standard: SquareAttack(p_init=.8, ..., resc_schedule=False)
SQUARE_RESCALE_SCHEDULE = False


def _forked(device: torch.device):
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def square(forward, x: torch.Tensor, y: torch.Tensor, eps: float, *, queries: int, restarts: int, norm: str,
           seeds: torch.Tensor, stream: int) -> AttackResult:
    """Square Attack on each sample alone (see the module docstring); ``forward`` maps images to logits."""
    out = x.detach().clone()
    for i, seed in enumerate(seeds.tolist()):
        attack = SquareAttack(forward, norm=LIBRARY_NORM[norm], n_queries=queries, eps=eps, p_init=SQUARE_P_INIT,
                              n_restarts=restarts, seed=sample_seed(seed, stream), loss="margin",
                              resc_schedule=SQUARE_RESCALE_SCHEDULE, device=x.device)
        with _forked(x.device), torch.no_grad():
            out[i:i + 1] = attack.perturb(x[i:i + 1].detach(), y[i:i + 1])
    return _result(forward, x, out, y, eps, norm)


def fab_targeted(forward, x: torch.Tensor, y: torch.Tensor, eps: float, *, iterations: int, targets: int,
                 norm: str, seed: int) -> AttackResult:
    """FAB-T over ``targets`` target classes (the 2nd to the (targets+1)-th most likely), batched."""
    attack = FABAttack_PT(forward, norm=LIBRARY_NORM[norm], n_restarts=1, n_iter=iterations, eps=eps, seed=seed,
                          targeted=True, n_target_classes=targets, device=x.device)
    with _forked(x.device):
        adv = attack.perturb(x.detach(), y).detach()
    return _result(forward, x, adv, y, eps, norm)


def _result(forward, x: torch.Tensor, adv: torch.Tensor, y: torch.Tensor, eps: float, norm: str) -> AttackResult:
    """The library's points, projected onto the threat model (a safety net for rounding), with the success the
    attack claims (its own forward: the caller's draw) and the margin it reached."""
    adv = ball(norm).project(adv.to(x.dtype), x.detach(), eps)
    with torch.no_grad():
        logits = forward(adv).float()
    margin = LOSSES.get("margin").per_sample(logits, y, None)
    finite = torch.isfinite(logits).all(dim=1)
    # the libraries do not say when a point broke: iterations -1 (unknown), as for the reference backends
    return AttackResult(adv, (logits.argmax(dim=1) != y) | ~finite, margin,
                        torch.full((len(x),), -1, dtype=torch.long, device=x.device), ~finite)
