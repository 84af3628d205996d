"""Zero-shot classification head: class embeddings from prompt ensembles, logits = 100 · cos."""

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


class ZeroShotClassifier(nn.Module):
    """[0,1] images → class logits; what classification attacks attack."""

    def __init__(self, encoder: ClipEncoder, class_prompts: list[list[str]]):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("weights", class_embeddings(encoder, class_prompts), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return LOGIT_SCALE * F.normalize(self.encoder(x), dim=-1) @ self.weights.T
