"""Difference of logits ratio (Croce & Hein, ICML 2020): APGD-DLR, invariant to shifting and rescaling the logits."""

from __future__ import annotations

import torch

from attacks.losses import LossSpec, register_loss


def dlr(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Difference of logits ratio: −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3); needs at least 3 classes."""
    z, _ = logits.sort(dim=1, descending=True)
    true = logits.gather(1, y[:, None]).squeeze(1)
    top_is_true = logits.argmax(dim=1) == y
    best_other = torch.where(top_is_true, z[:, 1], z[:, 0])
    return -(true - best_other) / (z[:, 0] - z[:, 2] + 1e-12)


register_loss(LossSpec(
    "dlr", "DLR", "difference of logits ratio −(z_y − max_{i≠y} z_i)/(z_π1 − z_π3) (Croce & Hein, 2020)", dlr,
    min_classes=3, reference={"autoattack": "apgd-dlr", "torchattacks": "dlr"}))
