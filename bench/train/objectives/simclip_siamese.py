"""Sim-CLIP as the paper's text writes it (arXiv 2407.14971): one shared trainable encoder sees both the
clean and the adversarial view, a symmetric stop-gradient cosine pulls each toward the other, and nothing anchors
either to the original encoder. Kept under its own name: measured here, it drifts away from the frozen text tower
(see the README's training section), which is not what the published checkpoints do."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.train.objectives import Objective, cosine_distance, register_objective, squared_l2


@register_objective
class SimClipSiamese(Objective):
    name = "simclip-siamese"
    label = "Sim-CLIP, paper objective (no anchor to the original encoder)"
    order = 31
    description = ("Sim-CLIP, paper objective (no anchor to the original encoder): Siamese symmetric stop-gradient "
                   "cosine between φ(x) and φ(x'), one shared trainable encoder")
    definition = ("inner 1−cos(φ(x'), sg φ(x)) (or ‖φ(x')−sg φ(x)‖²); outer ½·(−cos(φ(x'), sg φ(x))) + "
                  "½·(−cos(φ(x), sg φ(x'))), both views through the trained encoder")
    # without an anchor, lr 5e-5 drifts (cosine to the original 0.74 after 50 micro steps, shape accuracy 94 → 40);
    # 1e-5 is the largest rate measured that keeps it near the original for a while (README, "Training")
    micro_recipe = {"lr": 1e-5}
    needs_original_target = False
    needs_clean_current = True
    inner_losses = ("cos", "l2")
    extra_passes = 1  # the clean view also goes through the trained encoder

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
