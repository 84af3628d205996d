"""The attack engine: APGD and PGD over per-sample objectives, evaluation protocols as data, reference backends.

``ENGINE_VERSION`` is part of every result cell's identity (``bench.core.config.CellConfig``): bump it in the same
change as any edit that can move an attack's numbers (a step-size rule, a stopping criterion, a loss, a random
start), so that cells computed by the old engine are never reused as if the new one had computed them.
"""

ENGINE_VERSION = "2026.12.2"  # .2: APGD keeps the point that succeeded at a checkpoint iteration
