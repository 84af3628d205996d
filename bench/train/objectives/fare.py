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

    def inner_loss(self, emb_adv, batch, idx):
        return squared_l2(emb_adv, batch.target[idx])

    def outer_loss(self, encoder, x_adv, batch):
        emb = encoder(x_adv)
        return squared_l2(emb, batch.target).mean(), emb
