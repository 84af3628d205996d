"""The four adversarial fine-tuning objectives, on the image tower only (the text tower is always frozen).

Each objective gives the inner loss the PGD attack maximises (per sample) and the outer loss the optimiser
minimises. Notation: φ is the encoder being trained, φ₀ the frozen original, x the clean image, x' the adversarial.

- ``fare``:        inner ‖φ(x') − φ₀(x)‖²; outer the same, summed over dimensions, mean over the batch.
- ``simclip-ref``: inner ‖φ(x') − φ₀(x)‖²; outer ½·(1 − cos(φ(x'), φ₀(x))).      (Sim-CLIP's released code)
- ``simclip``:     inner 1 − cos(φ(x'), φ(x)) (or ‖·‖², ``inner_loss="l2"``); outer
                   ½·D(φ(x'), sg φ(x)) + ½·D(φ(x), sg φ(x')), D = −cos.          (Sim-CLIP's paper)
- ``tecoa``:       inner and outer cross-entropy of 100·cos(φ(x'), T_c) over frozen class-prompt embeddings T.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

METHODS = ("simclip", "simclip-ref", "fare", "tecoa")


@dataclass
class Batch:
    """What an objective may look at for one batch (all tensors on the training device)."""

    x: torch.Tensor
    target: torch.Tensor | None = None  # φ₀(x), frozen original on the clean image
    clean: torch.Tensor | None = None  # φ(x) of the current encoder, detached (Sim-CLIP paper variant)
    labels: torch.Tensor | None = None
    class_embeddings: torch.Tensor | None = None  # (C, D) unit text embeddings (TeCoA)


def squared_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2).sum(dim=-1)


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 1.0 - F.cosine_similarity(a, b, dim=-1)


class Objective:
    name: str
    needs_original_target = True  # whether φ₀(x) is part of the loss
    needs_labels = False
    needs_clean_current = False  # whether the inner loss needs φ(x) of the current encoder
    # whether the method means to keep the clean embedding near the original one (so that a falling cosine to it is
    # drift); TeCoA does not: it pulls embeddings toward the class text embeddings instead
    keeps_original_embedding = True

    def __init__(self, inner_loss: str = "default"):
        self.inner = inner_loss

    def inner_loss(self, emb_adv: torch.Tensor, batch: Batch, idx: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def outer_loss(self, encoder, x_adv: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(scalar loss to minimise, the adversarial embeddings it was computed from)."""
        raise NotImplementedError


class Fare(Objective):
    name = "fare"

    def inner_loss(self, emb_adv, batch, idx):
        return squared_l2(emb_adv, batch.target[idx])

    def outer_loss(self, encoder, x_adv, batch):
        emb = encoder(x_adv)
        return squared_l2(emb, batch.target).mean(), emb


class SimClipReleased(Objective):
    name = "simclip-ref"

    def inner_loss(self, emb_adv, batch, idx):
        return squared_l2(emb_adv, batch.target[idx])

    def outer_loss(self, encoder, x_adv, batch):
        emb = encoder(x_adv)
        return 0.5 * cosine_distance(emb, batch.target).mean(), emb


class SimClipPaper(Objective):
    name = "simclip"
    needs_original_target = False
    needs_clean_current = True

    def inner_loss(self, emb_adv, batch, idx):
        ref = batch.clean[idx]
        return squared_l2(emb_adv, ref) if self.inner == "l2" else cosine_distance(emb_adv, ref)

    def outer_loss(self, encoder, x_adv, batch):
        # both views through the shared encoder; each is pulled toward the other's stopped-gradient copy
        both = encoder(torch.cat([batch.x, x_adv]))
        clean, adv = both[: len(batch.x)], both[len(batch.x):]
        d1 = -F.cosine_similarity(adv, clean.detach(), dim=-1)
        d2 = -F.cosine_similarity(clean, adv.detach(), dim=-1)
        return (0.5 * d1 + 0.5 * d2).mean(), adv


class TeCoA(Objective):
    name = "tecoa"
    needs_original_target = False
    needs_labels = True
    # measured on micro TeCoA-4: cosine to the original 0.30 at the end, zero-shot clean accuracy 90-100 %
    keeps_original_embedding = False

    @staticmethod
    def _logits(emb, class_embeddings):
        return 100.0 * F.normalize(emb, dim=-1) @ class_embeddings.T

    def inner_loss(self, emb_adv, batch, idx):
        return F.cross_entropy(self._logits(emb_adv, batch.class_embeddings), batch.labels[idx], reduction="none")

    def outer_loss(self, encoder, x_adv, batch):
        emb = encoder(x_adv)
        return F.cross_entropy(self._logits(emb, batch.class_embeddings), batch.labels), emb


OBJECTIVES = {cls.name: cls for cls in (Fare, SimClipReleased, SimClipPaper, TeCoA)}


def make_objective(method: str, inner_loss: str = "default") -> Objective:
    if method not in OBJECTIVES:
        raise ValueError(f"unknown training method {method!r}; expected one of {METHODS}")
    if inner_loss not in ("default", "cos", "l2"):
        raise ValueError(f"unknown inner loss {inner_loss!r}; expected default, cos or l2")
    return OBJECTIVES[method](inner_loss)
