"""Targeted difference of logits ratio (Croce & Hein, ICML 2020): APGD-T, AutoAttack's second stage."""

from __future__ import annotations

import torch

from attacks.losses import LossSpec, register_loss


def dlr_targeted(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR: −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2); needs at least 4 classes."""
    z, _ = logits.sort(dim=1, descending=True)
    true = logits.gather(1, y[:, None]).squeeze(1)
    tgt = logits.gather(1, target[:, None]).squeeze(1)
    return -(true - tgt) / (z[:, 0] - 0.5 * (z[:, 2] + z[:, 3]) + 1e-12)


# the libraries' targeted APGD (pyautoattack's "apgd-t", torchattacks' APGDT) run exactly this loss
register_loss(LossSpec(
    "dlr-targeted", "T", "targeted DLR −(z_y − z_t)/(z_π1 − (z_π3 + z_π4)/2), one run per target class t "
    "(Croce & Hein, 2020)", dlr_targeted, min_classes=4, targeted=True,
    reference={"autoattack": "apgd-t", "torchattacks": "dlr-targeted"}))
