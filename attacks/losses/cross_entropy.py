"""Cross-entropy of the true class: APGD-CE, PGD (Madry et al., 2018) and AutoAttack's first stage."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attacks.losses import LossSpec, register_loss


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


register_loss(LossSpec(
    "ce", "CE", "cross-entropy of the true class", cross_entropy, min_classes=2,
    reference={"autoattack": "apgd-ce", "torchattacks": "ce"}))
