"""AGFT (Cui et al., CVPR 2026): align the adversarial zero-shot prediction with the frozen original's clean one.

YuboCui/AGFT (commit 0031a8f), ``train.py`` l. 104-118: under no_grad the soft target is
p = softmax(scale_ratio · logit_scale · cos(φ₀(x), T)) from the frozen original on the clean image; the inner PGD
(``attacks/pgd.py`` l. 41-80, uniform random start, sign steps, last iterate) and the outer loss are both
``CrossEntropyLoss`` with p as a probability target on logit_scale · cos(φ(x'), T) (the model's ``train`` mode,
``clip_model.py`` l. 215-226). The README's training command sets logit_scale = 180 and scale_ratio = 0.4, so the
targets use 72 and the trained logits 180. No per-image label is read: only the class prompts (``clip_model.py``
l. 58-66), so AGFT is label-free but not text-free.
"""

from __future__ import annotations

import torch.nn.functional as F

from bench.train.objectives import Objective, register_objective, soft_cross_entropy, zero_shot_logits


@register_objective
class Agft(Objective):
    name = "agft"
    label = "AGFT"
    order = 60
    description = ("AGFT: soft-label CE of 180·cos(φ(x'), T) against softmax(72·cos(φ₀(x), T)), the frozen "
                   "original's clean prediction (no labels)")
    definition = ("p = softmax(scale_ratio·logit_scale·cos(φ₀(x), T)) from the frozen original on the clean image, "
                  "no labels; inner and outer soft-label CE(logit_scale·cos(φ(x'), T), p) (outer batch mean); "
                  "logit_scale = 180, scale_ratio = 0.4 (72 for the targets) unless set")
    needs_original_target = True
    needs_class_embeddings = True
    # it distils the original's class distribution at another temperature (72 vs 180), which moves the embedding
    # by design (the trained cosines must spread 0.4× as far over the classes); only the spread is watched
    keeps_original_embedding = False
    options = {"logit_scale": 180.0, "scale_ratio": 0.4}

    def soft_targets(self, batch):
        scale = self.opts["scale_ratio"] * self.opts["logit_scale"]
        return F.softmax(zero_shot_logits(batch.target, batch.class_embeddings, scale=scale), dim=-1)

    def inner_loss(self, emb_adv, batch, idx):
        logits = zero_shot_logits(emb_adv, batch.class_embeddings, scale=self.opts["logit_scale"])
        return soft_cross_entropy(logits, self.soft_targets(batch)[idx])

    def outer_loss(self, encoder, x_adv, batch):
        emb = encoder(x_adv)
        logits = zero_shot_logits(emb, batch.class_embeddings, scale=self.opts["logit_scale"])
        return soft_cross_entropy(logits, self.soft_targets(batch)).mean(), emb
