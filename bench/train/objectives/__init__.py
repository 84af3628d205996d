"""Adversarial fine-tuning objectives, on the image tower only (the text tower is always frozen).

An objective gives the inner loss the PGD attack maximises (per sample) and the outer loss the optimiser minimises,
says what it needs (the frozen original's embedding, labels, ...); its paper recipe is data (``paper_recipes.toml``).
Each lives in its own module of this package and registers itself; a plugin adds one through the entry point group
``clip_robust_bench.objectives``. Notation: φ is the encoder being trained, φ₀ the frozen original, x the clean
image, x' the adversarial one, T the frozen class-prompt text embeddings.

Every encoder name ``{method}{k}`` (k = 1, 2, 4: the training ε in /255) comes from this registry (registered into
``bench.encoders.registry.ENCODERS`` from here, the layer above it), and the
objective's ``definition`` is part of the training configuration's hash: an objective whose formulas change never
picks up a checkpoint trained under its old meaning, even under the same name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

import torch
import torch.nn.functional as F

from bench.core.errors import BenchError
from bench.core.options import canonical_options, parse_option
from bench.core.registry import Registry
from bench.encoders.registry import DEFAULT_EPS_LEVEL, ENCODERS, TRAIN_EPS_LEVELS, EncoderSpec


@dataclass
class Batch:
    """What an objective may look at for one batch (all tensors on the training device)."""

    x: torch.Tensor
    target: torch.Tensor | None = None  # φ₀(x), frozen original on the clean image
    clean: torch.Tensor | None = None  # φ(x) of the current encoder, detached (Sim-CLIP paper variant)
    labels: torch.Tensor | None = None
    class_embeddings: torch.Tensor | None = None  # (C, D) unit class-prompt text embeddings (objectives reading T)
    original: torch.nn.Module | None = None  # φ₀ itself, frozen, for objectives that read it on other images
    # images in the whole optimiser step (all processes and accumulated micro-batches); None: this batch is the step.
    # A loss *summed* over the batch (PMG-AFT's KL) scales its share by it, so that after DDP's mean over processes
    # and the accumulation's division the gradient is that of the sum over the global batch, as in one process
    images_per_step: int | None = None


def squared_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2).sum(dim=-1)


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 1.0 - F.cosine_similarity(a, b, dim=-1)


def zero_shot_logits(emb: torch.Tensor, class_embeddings: torch.Tensor, scale: float = 100.0) -> torch.Tensor:
    """scale · cos(φ, T_c): CLIP's zero-shot logits over the class-prompt embeddings."""
    return scale * F.normalize(emb, dim=-1) @ class_embeddings.T


class Objective:
    """Base class of a training objective; subclasses set the class attributes and the two losses."""

    name: ClassVar[str]  # the method name, e.g. "fare"; encoders are "{name}{k}"
    label: ClassVar[str]  # what result rows and cards call the method
    description: ClassVar[str]  # one line for `bench list`
    definition: ClassVar[str]  # the formulas, hashed into the training configuration
    # a plugin's published recipe (TrainConfig fields); the built-in objectives' are in paper_recipes.toml
    paper_recipe: ClassVar[dict | None] = None
    micro_recipe: ClassVar[dict] = {}  # adjustments of the shared micro recipe, if any
    needs_original_target: ClassVar[bool] = True  # whether φ₀(x) is part of the loss
    needs_labels: ClassVar[bool] = False  # whether the loss reads class labels and class-prompt embeddings
    needs_clean_current: ClassVar[bool] = False  # whether the inner loss needs φ(x) of the current encoder
    # whether the loss reads the class-prompt embeddings without labels (AGFT's soft targets over the classes)
    needs_class_embeddings: ClassVar[bool] = False
    # whether the method means to keep the clean embedding near the original one (so that a falling cosine to it is
    # drift); supervised methods do not: they pull embeddings toward the class text embeddings instead
    keeps_original_embedding: ClassVar[bool] = True
    inner_losses: ClassVar[tuple[str, ...]] = ()  # alternatives to the default inner loss (``--inner-loss``)
    extra_passes: ClassVar[int] = 0  # forward+backward passes per image beyond the released one (time estimate)
    order: ClassVar[int] = 100  # position in listings and tables (the seeds of the field first)
    # named options and their defaults (the released code's values); `bench train --objective-option NAME=VALUE`
    options: ClassVar[dict[str, float | str]] = {}
    option_choices: ClassVar[dict[str, tuple[str, ...]]] = {}  # allowed values of the text options

    def __init__(self, inner_loss: str = "default", options: Iterable = ()):
        self.inner = inner_loss
        self.opts = {**self.options, **{k: self._parse(k, v) for k, v in self.canonical_options(options)}}

    @classmethod
    def _parse(cls, name: str, value) -> float | str:
        return parse_option("objective", cls.name, cls.options, cls.option_choices, name, value)

    @classmethod
    def canonical_options(cls, options: Iterable) -> tuple[tuple[str, str], ...]:
        """``options`` ("name=value" strings or (name, value) pairs) as sorted pairs of text, defaults dropped, so
        that equal settings hash equally (``alpha=1`` and ``alpha=1.0`` and nothing at all are one configuration)."""
        return canonical_options("objective", cls.name, cls.options, cls.option_choices, options)

    def inner_loss(self, emb_adv: torch.Tensor, batch: Batch, idx: torch.Tensor) -> torch.Tensor:
        """Per-sample loss the inner PGD maximises; ``idx`` selects the rows of ``batch`` still attacked."""
        raise NotImplementedError

    def outer_loss(self, encoder, x_adv: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(scalar loss to minimise, the adversarial embeddings it was computed from)."""
        raise NotImplementedError


OBJECTIVES: Registry[type[Objective]] = Registry("training objective", discover=("bench.train.objectives",),
                                                 plugin_group="objectives")


def register_objective(cls: type[Objective]) -> type[Objective]:
    """Class decorator: register an objective under its ``name``."""
    OBJECTIVES.register(cls.name, cls, cls.description)
    return cls


def make_objective(method: str, inner_loss: str = "default", options: Iterable = ()) -> Objective:
    cls = OBJECTIVES.get(method)
    if inner_loss != "default" and inner_loss not in cls.inner_losses:
        allowed = ", ".join(cls.inner_losses) or "none"
        raise BenchError(f"--inner-loss {inner_loss} does not apply to {method} (its alternatives: {allowed})")
    options = tuple(options)
    return cls(inner_loss, options) if options else cls(inner_loss)  # plugins written before options still load


def soft_cross_entropy(logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Per-sample −Σ_c p_c log softmax(logits)_c: cross-entropy against soft targets (what ``F.cross_entropy`` does
    with probabilities as the target, per sample)."""
    return -(probs * F.log_softmax(logits, dim=-1)).sum(dim=-1)


def methods() -> list[str]:
    return OBJECTIVES.names()


def method_label(method: str) -> str:
    """What rows and cards call a method ("CLIP", "FARE", "Sim-CLIP, paper objective (…)", …)."""
    if method == "clip":
        return "CLIP (undefended)"
    return OBJECTIVES.get(method).label if method in OBJECTIVES else method


def register_robust_encoders(encoders) -> None:
    """The robust encoders ``{method}{k}`` of every objective (``{method}`` = ``{method}4``), into ``ENCODERS``."""
    for objective in sorted(OBJECTIVES, key=lambda e: (e.value.order, e.name)):
        for k in TRAIN_EPS_LEVELS:
            name = f"{objective.name}{k}"
            encoders.register(name, EncoderSpec(name, objective.name, Fraction(k, 255)),
                              f"{objective.value.description}; fine-tuned at ε = {k}/255",
                              aliases=(objective.name,) if k == DEFAULT_EPS_LEVEL else ())


ENCODERS.extend(register_robust_encoders)
