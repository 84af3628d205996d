"""Which training images a step reads, by index, so every process of a DDP run (and a resumed run) reads exactly the
images a single uninterrupted run would. The images themselves belong to the suites (``bench.micro.train_data``,
``bench.paper.train_data``), which hand them over through ``Suite.train_data``."""

from __future__ import annotations

import numpy as np


def batch_indices(step: int, micro: int, accum: int, global_batch: int, n: int, seed: int) -> np.ndarray:
    """Dataset indices of one micro-batch of the global batch: epoch-wise seeded permutations, no repeats within an
    epoch. A pure function of its arguments, which is what makes resume and DDP exact."""
    micro_size = global_batch // accum
    start = (step * accum + micro) * micro_size
    positions = np.arange(start, start + micro_size)
    out = np.empty(micro_size, dtype=np.int64)
    for epoch in np.unique(positions // n):
        perm = np.random.default_rng([seed, 11, int(epoch)]).permutation(n)
        sel = positions // n == epoch
        out[sel] = perm[positions[sel] % n]
    return out
