"""Classification objectives: cross-entropy, DLR and targeted DLR (Croce & Hein, 2020), as attack objectives.

Success is always "the model no longer predicts the true class" (the robust-accuracy notion), also for the
targeted losses: targeting a class is only a way to search.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from attacks.base import Objective


def dlr(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of logits ratio: −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3); needs at least 3 classes."""
    z, _ = logits.sort(dim=1, descending=True)
    true = logits.gather(1, y[:, None]).squeeze(1)
    top_is_true = logits.argmax(dim=1) == y
    best_other = torch.where(top_is_true, z[:, 1], z[:, 0])
    return -(true - best_other) / (z[:, 0] - z[:, 2] + 1e-12)


def dlr_targeted(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR: −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2); needs at least 4 classes."""
    z, _ = logits.sort(dim=1, descending=True)
    true = logits.gather(1, y[:, None]).squeeze(1)
    tgt = logits.gather(1, target[:, None]).squeeze(1)
    return -(true - tgt) / (z[:, 0] - 0.5 * (z[:, 2] + z[:, 3]) + 1e-12)


def classification_objective(model: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor, loss: str,
                             target: torch.Tensor | None = None) -> Objective:
    """Wrap a classifier and labels as an attack objective for ``loss`` in {ce, dlr, dlr-targeted}."""
    if loss == "dlr-targeted" and target is None:
        raise ValueError("dlr-targeted needs target classes")

    def objective(x_adv: torch.Tensor, idx: torch.Tensor):
        logits = model(x_adv)
        yy = y[idx]
        if loss == "ce":
            value = F.cross_entropy(logits, yy, reduction="none")
        elif loss == "dlr":
            value = dlr(logits, yy)
        elif loss == "dlr-targeted":
            value = dlr_targeted(logits, yy, target[idx])
        else:
            raise ValueError(f"unknown classification loss {loss!r}")
        return value, logits.argmax(dim=1) != yy

    return objective
