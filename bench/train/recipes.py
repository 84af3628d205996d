"""Training recipes as data: the published (paper) recipe and the micro suite's, per method and ε.

The micro recipes are chosen so that each encoder trains in under ten minutes on two CPU cores; how they were
chosen (and what they reach) is recorded in the README. Users override any field with `bench train` options.
"""

from __future__ import annotations

from bench.errors import BenchError
from bench.train.config import TrainConfig

# FARE's recipe, reused by Sim-CLIP: ViT-L/14 at 224 px on ImageNet, PGD-10 (step 1/255, momentum 0.9),
# AdamW lr 1e-5, wd 1e-4, 1,400 warmup steps then cosine, 20,000 steps × batch 128 (≈ 2 epochs), fp32.
PAPER = dict(suite="paper", steps=20_000, batch_size=128, lr=1e-5, weight_decay=1e-4, warmup_steps=1_400,
             inner_steps=10, inner_step_size=1 / 255, inner_momentum=0.9, n_train=1_281_167)

MICRO = dict(suite="micro", steps=200, batch_size=128, lr=5e-4, weight_decay=1e-4, warmup_steps=20,
             inner_steps=5, inner_step_size=1 / 255, inner_momentum=0.9, n_train=30_000)

# per-method adjustments of the micro recipe
MICRO_METHOD = {
    "fare": {},
    "simclip-ref": {},
    "tecoa": {},
    "simclip": {},
}


def recipe(suite: str, method: str, eps_levels: int) -> TrainConfig:
    if suite == "paper":
        base = dict(PAPER)
    elif suite == "micro":
        base = {**MICRO, **MICRO_METHOD.get(method, {})}
    else:
        raise BenchError(f"no training recipe for suite {suite!r}")
    cfg = TrainConfig(method=method, eps_levels=eps_levels, **base)
    cfg.validate()
    return cfg
