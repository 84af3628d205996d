"""Targeted logit margin: the decision boundary FAB-T moves towards, one target class at a time (Croce & Hein,
ICML 2020), as AutoAttack's third stage runs it."""

from __future__ import annotations

import torch

from attacks.losses import LossSpec, register_loss


def targeted_margin(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """z_t − z_y: positive once the target class outscores the true one."""
    return logits.gather(1, target[:, None]).squeeze(1) - logits.gather(1, y[:, None]).squeeze(1)


register_loss(LossSpec(
    "margin-targeted", "margin-T", "targeted logit margin z_t − z_y, one run per target class t; the boundary "
    "FAB-T approaches", targeted_margin, min_classes=2, targeted=True))
