"""Sim-CLIP as its users know it: the released code that trained the published ``simclip2.pt`` / ``simclip4.pt``.

speedlab-git/SimCLIP, train/adversarial_training_simclip.py: the clean branch is the frozen ``model_orig`` under
no_grad (l. 317-318); the inner PGD maximises ``attack_loss l2``, ‖φ(x') − φ₀(x)‖² (l. 322-341, l2 at l. 549-560);
the outer loss is ``forward(p, z) = −cos(p, sg z)`` applied both ways and averaged (l. 68-71, 392-394). Its second
half, −cos(φ₀(x), sg φ(x')), has no path to the trained weights, so the gradient is that of −½·cos(φ(x'), φ₀(x)).
"""

from __future__ import annotations

import torch.nn.functional as F

from bench.train.objectives import Objective, register_objective, squared_l2


def negative_cosine_to_stopped(p, z):
    """The released code's ``forward(p, z)``: −cos(p, sg z), batch mean."""
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


@register_objective
class SimClip(Objective):
    name = "simclip"
    label = "Sim-CLIP (released code: cosine to the frozen original encoder)"
    order = 30
    description = ("Sim-CLIP as released (code and checkpoints): −cos(φ(x'), φ₀(x)) to the frozen original "
                   "encoder, inner PGD on ‖φ(x')−φ₀(x)‖²")
    definition = ("inner ‖φ(x')−φ₀(x)‖²; outer ½·(−cos(φ(x'), sg φ₀(x))) + ½·(−cos(φ₀(x), sg φ(x'))), "
                  "φ₀ frozen under no_grad, unnormalised embeddings")

    def inner_loss(self, emb_adv, batch, idx):
        return squared_l2(emb_adv, batch.target[idx])

    def outer_loss(self, encoder, x_adv, batch):
        emb = encoder(x_adv)
        loss = 0.5 * negative_cosine_to_stopped(emb, batch.target) + 0.5 * negative_cosine_to_stopped(batch.target,
                                                                                                    emb)
        return loss, emb
