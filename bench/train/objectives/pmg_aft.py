"""PMG-AFT (Wang et al., CVPR 2024), as its released code trains it.

serendipity1122/Pre-trained-Model-Guided-Fine-Tuning-for-Zero-Shot-Adversarial-Robustness, ``PMG_AFT.py`` (commit
a53fdd8):

- logits are *plain cosines*, no logit scale: the model returns the normalised image embedding and logit_scale·text
  (``replace/model.py`` l. 387-397) and ``multiGPU_CLIP`` normalises both again before the product (l. 659-669);
- three passes (l. 727-734): the trained model on x', the frozen original on x', the trained model on x;
- loss = CE(out_adv, y) + KL(softmax(out_ori_adv) ‖ softmax(out_adv)) + KL(softmax(out_clean) ‖ softmax(out_adv))
  (l. 736-738), with ``nn.KLDivLoss(reduction="sum")`` (l. 215): summed over the batch and the classes, not
  averaged; CE is the batch mean. The clean branch's softmax is the KL's *target* and is not detached, so its
  gradient reaches the trained weights through the clean image as well. The released code sums over the whole
  batch of 256 on one process (``DataParallel``); here, under DDP or gradient accumulation, each micro-batch's sum is
  scaled by (images per step) / (its images), so that the averaged gradient is that of the sum over the whole step
  (``tests/test_train_ddp.py``);
- the inner PGD maximises CE on the same plain-cosine logits (``attack_pgd``, l. 576-616): uniform random start,
  sign steps, last iterate, no momentum.

The paper's text writes L = L_robust + α·L_general + β·L_clean; AGFT's re-implementation "following the original
paper" (YuboCui/AGFT ``train.py`` l. 35-58, 197-198) uses weights α, β and ``KLDivLoss(reduction="batchmean")``.
Those are options here (``--objective-option alpha=…, beta=…, kl=batchmean``); the defaults are the released code.

Not carried over: the released code normalises pixels with ImageNet's mean and std instead of CLIP's (l. 119-127);
here every encoder normalises with its own base model's statistics, so the fine-tuned tower stays a drop-in
replacement for the original.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.train.objectives import Objective, register_objective, zero_shot_logits


def plain_cosine_logits(emb: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
    """cos(φ, T_c) with no logit scale: the released code's ``multiGPU_CLIP``."""
    return zero_shot_logits(emb, class_embeddings, scale=1.0)


def kl_to(target_logits: torch.Tensor, logits: torch.Tensor, reduction: str) -> torch.Tensor:
    """``nn.KLDivLoss(reduction)(log_softmax(logits), softmax(target_logits))`` = KL(p_target ‖ p); the target is
    not detached, as in the released code."""
    return F.kl_div(F.log_softmax(logits, dim=1), F.softmax(target_logits, dim=1), reduction=reduction)


@register_objective
class PmgAft(Objective):
    name = "pmg-aft"
    label = "PMG-AFT"
    order = 40
    description = ("PMG-AFT: supervised, CE on plain cosines + KL to the frozen original on x' + KL to the "
                   "trained model on x (released code)")
    definition = ("logits cos(φ(·), T) with no logit scale; inner CE(cos(φ(x'), T), y); outer "
                  "CE(cos(φ(x'), T), y) [batch mean] + α·KL(softmax(cos(φ₀(x'), T)) ‖ softmax(cos(φ(x'), T))) + "
                  "β·KL(softmax(cos(φ(x), T)) ‖ softmax(cos(φ(x'), T))), KL reduction 'sum' over the classes and "
                  "the optimiser step's whole batch (option kl=batchmean: the batch mean), φ(x) not detached, φ₀ "
                  "frozen; α = β = 1 unless set")
    needs_original_target = False
    needs_labels = True
    # supervised: the cross-entropy pulls embeddings toward the class text embeddings, and the KL terms anchor the
    # *predictions* (over plain cosines, nearly flat distributions) rather than the embedding, so a falling cosine
    # to the original embedding is the method working as designed, as for TeCoA; only the spread is watched
    keeps_original_embedding = False
    extra_passes = 1  # the clean image also goes through the trained encoder (and x' once through the original)
    options = {"alpha": 1.0, "beta": 1.0, "kl": "sum"}
    option_choices = {"kl": ("sum", "batchmean")}

    def inner_loss(self, emb_adv, batch, idx):
        logits = plain_cosine_logits(emb_adv, batch.class_embeddings)
        return F.cross_entropy(logits, batch.labels[idx], reduction="none")

    def outer_loss(self, encoder, x_adv, batch):
        n = len(x_adv)
        both = encoder(torch.cat([x_adv, batch.x]))  # one forward: a DDP-wrapped encoder sees one call per step
        emb_adv, emb_clean = both[:n], both[n:]
        with torch.no_grad():
            emb_original_adv = batch.original(x_adv)
        out_adv = plain_cosine_logits(emb_adv, batch.class_embeddings)
        out_clean = plain_cosine_logits(emb_clean, batch.class_embeddings)
        out_original_adv = plain_cosine_logits(emb_original_adv, batch.class_embeddings)
        reduction = self.opts["kl"]
        # a sum over this batch stands for its share of the sum over the whole step (DDP averages the processes'
        # gradients, accumulation divides by the micro-batches): the released code sums over all 256 images at once
        share = (batch.images_per_step or n) / n if reduction == "sum" else 1.0
        loss = (F.cross_entropy(out_adv, batch.labels)
                + share * self.opts["alpha"] * kl_to(out_original_adv, out_adv, reduction)
                + share * self.opts["beta"] * kl_to(out_clean, out_adv, reduction))
        return loss, emb_adv
