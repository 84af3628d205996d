"""Training recipes as data: each objective's published recipe (in its own module, citing its source) on the paper
suites, and one shared budget on the micro suite, so that micro methods are compared at equal cost.

The micro recipe is chosen so that the README's first command (on-demand training of micro Sim-CLIP and its
evaluation) finishes within eight minutes on two CPU cores; how it was chosen and what it reaches is recorded in the
README. Users override any field with `bench train` options.
"""

from __future__ import annotations

from bench.core.errors import BenchError
from bench.train.config import TrainConfig
from bench.train.objectives import OBJECTIVES

# the paper suites train on the ImageNet train split (1,281,167 images) at the base model's resolution
PAPER_DATA = dict(suite="paper", n_train=1_281_167)

# Micro: many small steps beat few large ones here (measured: FARE-4 with 200 steps × 128, PGD-5, lr 5e-4 reached
# shape/colour/count robust 20/90/66; 450 steps × 64, PGD-3, lr 1e-3 reached 36/93/85.5 in the same wall time).
MICRO = dict(suite="micro", steps=450, batch_size=64, lr=1e-3, weight_decay=1e-4, warmup_steps=30,
             inner_steps=3, inner_step_size=1 / 255, inner_momentum=0.9, n_train=30_000)


def recipe(suite: str, method: str, eps_levels: int) -> TrainConfig:
    """``suite`` is ``micro`` or a paper suite (``paper``, ``paper-zsr``, …): every paper suite trains with the
    objective's published recipe, and its name is part of the cache key, so towers fine-tuned from different base
    models never share a cache entry."""
    objective = OBJECTIVES.get(method)
    if suite.startswith("paper"):
        base = {**PAPER_DATA, "suite": suite, **objective.paper_recipe}
    elif suite == "micro":
        base = {**MICRO, **objective.micro_recipe}
    else:
        raise BenchError(f"no training recipe for suite {suite!r}")
    cfg = TrainConfig(method=objective.name, eps_levels=eps_levels, **base)
    cfg.validate()
    return cfg
