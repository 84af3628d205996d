"""Classification losses as attack objectives: a registry of specs, one module per loss.

A loss spec carries everything the engine, the protocols, the reference backends and the cost estimate need to know
about a loss, so that none of them switches on its name: adding a loss is one new module in this package (it
registers itself when the registry is first read) plus its test. A plugin adds one through the entry point group
``clip_robust_bench.losses``.

Success is always "the model no longer predicts the true class" (the robust-accuracy notion), also for the
targeted losses: targeting a class is only a way to search.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from attacks.base import Objective
from attacks.eot import attack_draws, drawing
from bench.core.registry import Registry

UNSUPPORTED = "unsupported"  # a reference library has no attack on this loss

# (logits (B, C), true labels (B,), target classes (B,) or None) -> per-sample loss (B,), maximised by the attack
PerSampleLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass(frozen=True)
class LossSpec:
    name: str  # what a protocol stage names (``Stage.loss``)
    label: str  # what a protocol summary calls it: "APGD-{label}"
    description: str  # one line: the formula and its source
    per_sample: PerSampleLoss
    min_classes: int  # fewer classes leave the loss undefined (DLR divides by the gap to the 3rd logit)
    # targeted losses are run once per target class (AutoAttack's APGD-T): the (k+2)-th most likely clean class for
    # k < the stage's ``targets``, at most C − 1 of them
    targeted: bool = False
    # the loss's name in each reference library (``attacks.backends``); a library not listed lacks it
    reference: Mapping[str, str] = field(default_factory=dict)

    def reference_name(self, backend: str) -> str:
        return self.reference.get(backend, UNSUPPORTED)


LOSSES: Registry[LossSpec] = Registry("classification loss", discover=("attacks.losses",), plugin_group="losses")


def register_loss(spec: LossSpec) -> LossSpec:
    return LOSSES.register(spec.name, spec, spec.description)


def classification_objective(model: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor, loss: str,
                             target: torch.Tensor | None = None, draws: int | None = None) -> Objective:
    """Wrap a classifier and labels as an attack objective for the registered loss ``loss``.

    ``draws``: a randomised model is seen through that many of its attack draws (``attacks.eot``): the loss is the
    mean over the draws (EOT: its gradient is the mean gradient) and a success is claimed where the mean logits
    misclassify. None: the model is called once, in whatever draw the caller set."""
    spec = LOSSES.get(loss)
    if spec.targeted and target is None:
        raise ValueError(f"{loss} needs target classes")

    def objective(x_adv: torch.Tensor, idx: torch.Tensor):
        yy = y[idx]
        tt = None if target is None else target[idx]
        if draws is None:
            logits = model(x_adv)
            return spec.per_sample(logits, yy, tt), logits.argmax(dim=1) != yy
        value, mean_logits = 0.0, 0.0
        for d in attack_draws(draws):
            with drawing(d):
                logits = model(x_adv)
            value = value + spec.per_sample(logits, yy, tt) / draws
            mean_logits = mean_logits + logits.detach() / draws
        return value, mean_logits.argmax(dim=1) != yy

    return objective


def dlr(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The registered DLR loss (``logits_ratio``), as importable from this package before losses were modules."""
    return LOSSES.get("dlr").per_sample(logits, y, None)


def dlr_targeted(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The registered targeted DLR loss (``targeted_logits_ratio``), as importable from this package before."""
    return LOSSES.get("dlr-targeted").per_sample(logits, y, target)
