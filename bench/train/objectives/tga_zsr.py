"""TGA-ZSR (Yu et al., NeurIPS 2024): TeCoA's cross-entropy plus two text-guided attention-map terms.

Ported from zhyblue424/TGA-ZSR at commit 5f2b31c (the NeurIPS-era code; the current HEAD's ``train`` reads an
undefined ``logit_scale`` and raises a NameError):

- the image tower keeps every token: ``ln_post`` and ``proj`` are applied to all of them (``replace/model.py``
  l. 244-250) and the embedding is token 0 (l. 375);
- logits = logit_scale · cos with logit_scale = exp(4.6052) = 100 (``models/model.py`` l. 36-52, clamped at
  ``TGA-ZSR.py`` l. 341);
- the text-guided attention map A(φ, x) (``attention_map.py`` l. 4-19): the tokens normalised over the *token*
  axis (``norm(dim=1)`` of a (B, L, D) tensor, the class token included), the class token dropped, the dot product
  of each patch token with the true class's text embedding, min-max over the patches (no ε in the denominator),
  reshaped to the patch grid and bilinearly upsampled to the input size, flattened;
- loss (``TGA-ZSR.py`` l. 327-336, ``criterion`` l. 464-480, ``--Distance_metric l2``):
  CE(100·cos(φ(x'), T), y) + 0.08·mean_b ‖A(φ, x') − A(φ₀, x)‖₂ + 0.05·mean_b ‖A(φ, x) − A(φ₀, x)‖₂ (``--Alpha``,
  ``--Beta``, l. 92-93), the text embedding in A being the true class's;
- the inner PGD maximises the CE alone (``attacks.py`` l. 13-53): uniform random start, sign steps, last iterate.

The released code multiplies the text embedding in A by the logit scale; min-max over the patches cancels any
positive factor, so the unit class embedding is used here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.train.objectives import Objective, register_objective, zero_shot_logits


def text_guided_attention(tokens: torch.Tensor, text: torch.Tensor, image_size: int) -> torch.Tensor:
    """A(φ, x) flattened to (B, image_size²), from the final projected tokens (B, 1 + N, D) (class token first) and
    each sample's true-class text embedding (B, D)."""
    tokens = tokens / tokens.norm(dim=1, keepdim=True)  # over the token axis, as the released code does
    patches = tokens[:, 1:, :]
    am = patches @ text.unsqueeze(-1)  # (B, N, 1)
    low, high = am.min(dim=1, keepdim=True)[0], am.max(dim=1, keepdim=True)[0]
    am = (am - low) / (high - low)
    side = int(am.shape[1] ** 0.5)
    am = am.reshape(am.shape[0], side, side, -1).permute(0, 3, 1, 2)  # (B, 1, side, side)
    am = F.interpolate(am, size=image_size, mode="bilinear")
    return am.reshape(am.shape[0], -1)


def attention_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """mean over the batch of the ℓ2 distance between flattened maps (``--Distance_metric l2``)."""
    return torch.norm(a - b, dim=1, p=2).mean()


@register_objective
class TgaZsr(Objective):
    name = "tga-zsr"
    label = "TGA-ZSR"
    order = 50
    description = ("TGA-ZSR: TeCoA's cross-entropy + ℓ2 alignment of text-guided attention maps to the frozen "
                   "original's on the clean image")
    definition = ("inner CE(100·cos(φ(x'), T), y); outer CE(100·cos(φ(x'), T), y) + α·mean_b ‖A(φ, x') − A(φ₀, x)‖₂ "
                  "+ β·mean_b ‖A(φ, x) − A(φ₀, x)‖₂, α = 0.08, β = 0.05 unless set; A(φ, x): final tokens after "
                  "ln_post and proj, normalised over the token axis (class token included), class token dropped, "
                  "dot product with the true class's text embedding, min-max over patches, grid, bilinear upsample "
                  "to the input size, flattened; φ(x) not detached, φ₀ frozen")
    needs_original_target = False
    needs_labels = True
    # supervised like TeCoA: the cross-entropy moves the embedding toward the class text embeddings by design; the
    # attention terms constrain min-max-normalised patch-text similarity patterns, not the embedding, so only the
    # spread is watched
    keeps_original_embedding = False
    extra_passes = 1  # the clean image also goes through the trained encoder (and once through the original)
    options = {"alpha": 0.08, "beta": 0.05}

    def inner_loss(self, emb_adv, batch, idx):
        return F.cross_entropy(zero_shot_logits(emb_adv, batch.class_embeddings), batch.labels[idx], reduction="none")

    def outer_loss(self, encoder, x_adv, batch):
        n = len(x_adv)
        size = batch.original.image_size
        emb, tokens = encoder(torch.cat([x_adv, batch.x]), with_tokens=True)  # one forward per step under DDP
        with torch.no_grad():
            _, tokens_original = batch.original(batch.x, with_tokens=True)
        text = batch.class_embeddings[batch.labels]
        map_adv = text_guided_attention(tokens[:n], text, size)
        map_clean = text_guided_attention(tokens[n:], text, size)
        map_original = text_guided_attention(tokens_original, text, size)
        loss = (F.cross_entropy(zero_shot_logits(emb[:n], batch.class_embeddings), batch.labels)
                + self.opts["alpha"] * attention_distance(map_adv, map_original)
                + self.opts["beta"] * attention_distance(map_clean, map_original))
        return loss, emb[:n]
