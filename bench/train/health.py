"""Health of an adversarial fine-tuning run, step by step, and the collapse monitor.

A constant embedding minimises the Sim-CLIP paper objective (nothing anchors it), and any method can drift too far
from the original encoder for the frozen text tower (or a frozen VLM) to read it. Two figures catch both:
the mean cosine between the encoder's clean embedding and the original encoder's, and the spread of the
normalised embeddings across the batch (the mean over dimensions of their standard deviation; a collapsed encoder
maps every image to nearly the same point, so its spread goes to 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def embedding_spread(emb: torch.Tensor) -> float:
    return float(F.normalize(emb.float(), dim=-1).std(dim=0).mean())


def cosine_to_original(emb: torch.Tensor, original: torch.Tensor) -> float:
    return float(F.cosine_similarity(emb.float(), original.float(), dim=-1).mean())


@dataclass
class CollapseMonitor:
    """Flags collapse when the spread falls below ``spread_ratio`` × its value for the original encoder, or the
    cosine to the original falls below ``min_cosine``, for ``patience`` consecutive health checks; notes the first
    step whose cosine is below ``drift_cosine``. Methods that do not mean to stay near the original embedding (TeCoA)
    are watched by their spread only."""

    spread_ratio: float = 0.35
    min_cosine: float | None = 0.3  # None: the cosine to the original is not watched (a method that moves it)
    patience: int = 5
    # softer: the frozen text tower reads the embedding worse well before it collapses (micro Sim-CLIP at cosine
    # 0.74 had lost 54 points of zero-shot shape accuracy), so drifting this far is worth a warning of its own
    drift_cosine: float | None = 0.8
    reference_spread: float | None = None
    bad_steps: int = 0
    collapsed_at: int | None = None
    drifted_at: int | None = None

    def update(self, step: int, spread: float, cosine: float) -> bool:
        """Record one step; return True the first time collapse is detected."""
        if self.reference_spread is None:
            raise RuntimeError("set reference_spread (the original encoder's spread) before monitoring")
        if self.drift_cosine is not None and cosine < self.drift_cosine and self.drifted_at is None:
            self.drifted_at = step
        bad = spread < self.spread_ratio * self.reference_spread or (
            self.min_cosine is not None and cosine < self.min_cosine)
        self.bad_steps = self.bad_steps + 1 if bad else 0
        if self.bad_steps >= self.patience and self.collapsed_at is None:
            self.collapsed_at = step
            return True
        return False

    @property
    def collapsed(self) -> bool:
        return self.collapsed_at is not None
