"""The encoder names users type, what each one is, and how a suite turns a name into weights."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from bench.core.registry import Registry


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    method: str  # clip | fare | tecoa | simclip | simclip-ref
    train_eps: Fraction | None  # None for the undefended CLIP

    @property
    def train_eps_label(self) -> str:
        return "" if self.train_eps is None else f"{self.train_eps.numerator}/{self.train_eps.denominator}"

    @property
    def robust(self) -> bool:
        return self.train_eps is not None


METHOD_DESCRIPTIONS = {
    "fare": "FARE: unsupervised, ‖φ(x')−φ_orig(x)‖² to the frozen original embedding",
    "tecoa": "TeCoA: supervised, cross-entropy over class-prompt text embeddings",
    "simclip": "Sim-CLIP as in the paper: Siamese symmetric cosine with stop-gradient, shared encoder",
    "simclip-ref": "Sim-CLIP as released: ½(1−cos) to the frozen original encoder's clean embedding",
}

ENCODERS: Registry[EncoderSpec] = Registry("encoder")
ENCODERS.register("clip", EncoderSpec("clip", "clip", None), "the undefended original CLIP image encoder")
for _method, _desc in METHOD_DESCRIPTIONS.items():
    for _k in (2, 4):
        ENCODERS.register(f"{_method}{_k}", EncoderSpec(f"{_method}{_k}", _method, Fraction(_k, 255)),
                          f"{_desc}; adversarially fine-tuned at ε = {_k}/255",
                          aliases=(_method,) if _k == 4 else ())
