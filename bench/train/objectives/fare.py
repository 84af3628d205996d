"""FARE (Schlarmann et al., ICML 2024): keep the adversarial embedding where the original put the clean one."""

from __future__ import annotations

from bench.train.objectives import Objective, register_objective, squared_l2


@register_objective
class Fare(Objective):
    name = "fare"
    label = "FARE"
    order = 10
    description = "FARE: unsupervised, ‖φ(x')−φ₀(x)‖² to the frozen original embedding"
    definition = "inner ‖φ(x')−φ₀(x)‖²; outer mean_batch Σ_d (φ(x')−φ₀(x))², unnormalised embeddings"
    # chs20/RobustVLM README.md:282 (FARE⁴ command): ViT-L-14 openai, ImageNet, 20k steps × 128, AdamW lr 1e-5 wd 1e-4
    paper_recipe = dict(steps=20_000, batch_size=128, lr=1e-5, weight_decay=1e-4, warmup_steps=1_400,
                        inner_steps=10, inner_step_size=1 / 255, inner_momentum=0.9)

    def inner_loss(self, emb_adv, batch, idx):
        return squared_l2(emb_adv, batch.target[idx])

    def outer_loss(self, encoder, x_adv, batch):
        emb = encoder(x_adv)
        return squared_l2(emb, batch.target).mean(), emb
