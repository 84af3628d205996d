"""Logit margin (Carlini & Wagner, S&P 2017): what Square Attack searches on (Andriushchenko et al., ECCV 2020)."""

from __future__ import annotations

import torch

from attacks.losses import LossSpec, register_loss


def margin(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """max_{i≠y} z_i − z_y: positive once the sample is misclassified."""
    others = logits.masked_fill(torch.nn.functional.one_hot(y, logits.shape[1]).bool(), -float("inf"))
    return others.amax(dim=1) - logits.gather(1, y[:, None]).squeeze(1)


# no reference library runs APGD on it; pyautoattack's Square searches on it ("margin", its default loss)
register_loss(LossSpec(
    "margin", "margin", "logit margin max_{i≠y} z_i − z_y (Carlini & Wagner, 2017); Square Attack's loss",
    margin, min_classes=2))
