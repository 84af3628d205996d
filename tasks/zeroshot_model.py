"""Zero-shot classification head: class embeddings from prompt ensembles, logits = 100 · cos.

Two ways to combine a class's prompts, chosen by the dataset:
- ``mean`` (CLIP's recipe, the paper protocol): the class embedding is the normalised mean of its prompt
  embeddings; logit = 100 · cos(image, class embedding).
- ``logsumexp``: for prompt lists that enumerate complete descriptions of a class in every context (the micro
  world's "three red rings.", "one blue ring.", ...), the class logit is log Σ_p exp(100 · cos(image, prompt p)),
  so the softmax over classes is the total probability CLIP gives to the class's descriptions. Averaging such
  descriptions blurs the class direction with the nuisance attributes; summing their probabilities does not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.encoders.base import ClipEncoder

LOGIT_SCALE = 100.0


@torch.no_grad()
def class_embeddings(encoder: ClipEncoder, class_prompts: list[list[str]]) -> torch.Tensor:
    """(C, D) unit class embeddings: each class's prompt embeddings averaged, then re-normalised (CLIP's recipe).

    Computed once per run under no_grad; attacks then only differentiate through the image tower.
    """
    rows = [F.normalize(encoder.encode_text(prompts).mean(dim=0), dim=-1) for prompts in class_prompts]
    return torch.stack(rows)


ENSEMBLES = ("mean", "logsumexp")


class ZeroShotClassifier(nn.Module):
    """[0,1] images → class logits; what classification attacks attack."""

    def __init__(self, encoder: ClipEncoder, class_prompts: list[list[str]], ensemble: str = "mean",
                 class_weights: torch.Tensor | None = None):
        """``class_weights``: (C, D) class embeddings given instead of prompts (normalised here), mean mode."""
        super().__init__()
        if ensemble not in ENSEMBLES:
            raise ValueError(f"unknown prompt ensemble {ensemble!r}; expected one of {ENSEMBLES}")
        self.encoder = encoder
        self.ensemble = ensemble
        if class_weights is not None:
            self.ensemble = "mean"
            self.register_buffer("weights", F.normalize(class_weights.detach().float(), dim=-1), persistent=False)
        elif ensemble == "mean":
            self.register_buffer("weights", class_embeddings(encoder, class_prompts), persistent=False)
        else:
            with torch.no_grad():
                prompts = torch.cat([encoder.encode_text(p) for p in class_prompts])
            owner = torch.cat([torch.full((len(p),), c) for c, p in enumerate(class_prompts)])
            self.register_buffer("weights", prompts, persistent=False)  # (P, D) one row per prompt
            # (C, P) mask: 0 where prompt p describes class c, -inf elsewhere
            mask = torch.full((len(class_prompts), len(owner)), -float("inf"))
            mask[owner, torch.arange(len(owner))] = 0.0
            self.register_buffer("class_mask", mask, persistent=False)

    @classmethod
    def for_data(cls, encoder: ClipEncoder, data) -> ZeroShotClassifier:
        """The head for a ``ClassificationData`` (its prompts and its ensemble mode); an encoder that brings its
        own class embeddings for the dataset (``class_embeddings_for``, the Python API's) uses those instead."""
        given = getattr(encoder, "class_embeddings_for", None)
        weights = given(data) if given is not None else None
        if weights is not None:
            return cls(encoder, [], "mean", class_weights=weights)
        return cls(encoder, data.class_prompts, getattr(data, "ensemble", "mean"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sims = LOGIT_SCALE * F.normalize(self.encoder(x), dim=-1) @ self.weights.T
        if self.ensemble == "mean":
            return sims
        return torch.logsumexp(sims[:, None, :] + self.class_mask[None], dim=-1)
