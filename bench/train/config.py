"""Training configuration: one frozen dataclass, built from a suite's recipe plus user overrides.

Its hash (over every field that changes the weights) names the cached checkpoint, so the same recipe is trained
once and reused, and any change to it trains a new encoder instead of silently reusing an old one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from fractions import Fraction

from bench.core.config import config_hash
from bench.core.errors import BenchError
from bench.train.objectives import OBJECTIVES

# fields that change how a run is carried out but not the weights it produces
OPERATIONAL_FIELDS = ("checkpoint_every", "grad_checkpointing", "health_every")
# fields added after checkpoints were cached: at these values they are left out of the hash, so every configuration
# that existed before them keeps its cache key (and its trained checkpoint)
LATER_FIELD_DEFAULTS = {"optimizer": "adamw", "sgd_momentum": 0.9, "objective_options": (), "train_set": "default",
                        "data_identity": ""}
OPTIMIZERS = ("adamw", "sgd")
TRAIN_SETS = ("default", "tinyimagenet")  # default: the suite's own (micro world, ImageNet train)


# fields a ``train:FIELD=VALUE`` encoder source may set: the scalar ones (objective options and the operational fields
# are set with `bench train`); ``method`` swaps the objective under the name (how a test drops Sim-CLIP's anchor)
TEXT_SETTABLE = ("method", "steps", "batch_size", "lr", "weight_decay", "warmup_steps", "inner_steps",
                 "inner_step_size", "inner_momentum", "inner_loss", "grad_accum", "n_train", "seed", "optimizer",
                 "sgd_momentum")


def _typed(name: str, text: str, current):
    """``text`` as the type of the field's current value."""
    kind = type(current)
    try:
        return kind(text) if kind in (int, float) else str(text)
    except ValueError:
        raise BenchError(f"train:{name}={text}: {name} takes {'an integer' if kind is int else 'a number'}") from None


@dataclass(frozen=True)
class TrainConfig:
    method: str  # a registered objective: fare | tecoa | simclip | simclip-siamese | …
    eps_levels: int  # ε = eps_levels / 255
    suite: str  # base model and data come from the suite: micro | paper
    steps: int
    batch_size: int  # global batch per optimiser step (across processes and accumulation)
    lr: float
    weight_decay: float
    warmup_steps: int
    inner_steps: int = 10
    inner_step_size: float = 1 / 255
    inner_momentum: float = 0.9
    inner_loss: str = "default"  # an objective's alternative inner loss (simclip-siamese: cos or l2)
    grad_accum: int = 1
    n_train: int = 30_000  # training images (micro: generated scenes; paper: a deterministic ImageNet subset)
    seed: int = 0
    grad_checkpointing: bool = False
    checkpoint_every: int = 50
    # steps between health figures (cosine to the original, spread): one extra forward pass of the batch each time
    health_every: int = 1
    optimizer: str = "adamw"  # adamw | sgd (PMG-AFT, TGA-ZSR and AGFT train with SGD, momentum 0.9)
    sgd_momentum: float = 0.9  # SGD only
    # an objective's options as sorted (name, value) pairs, e.g. PMG-AFT's (("alpha", "0.5"),); see its module
    objective_options: tuple[tuple[str, str], ...] = ()
    train_set: str = "default"  # the paper suites' training images: default (ImageNet train) or tinyimagenet
    # a hash of what the suite trains on and from, where the suite defines it (micro: the fine-tuning set's
    # definition and the base CLIP's sha256): a redefined training set or base never reuses a checkpoint
    data_identity: str = ""

    @property
    def eps(self) -> float:
        return float(Fraction(self.eps_levels, 255))

    @property
    def encoder_name(self) -> str:
        return f"{self.method}{self.eps_levels}"

    def weights_dict(self) -> dict:
        """Every field that changes the weights, and the objective's definition (its formulas): a method whose
        meaning changes under the same name never matches a checkpoint trained under the old one."""
        out = {k: v for k, v in asdict(self).items() if k not in OPERATIONAL_FIELDS
               and not (k in LATER_FIELD_DEFAULTS and v == LATER_FIELD_DEFAULTS[k])}
        if self.optimizer == "sgd":
            out["sgd_momentum"] = self.sgd_momentum  # recorded whenever it is read (no SGD key predates it)
        else:
            out.pop("sgd_momentum", None)  # AdamW never reads it
        if "objective_options" in out:
            out["objective_options"] = [list(pair) for pair in self.objective_options]
        out["objective"] = OBJECTIVES.get(self.method).definition
        return out

    @property
    def hash(self) -> str:
        return config_hash(self.weights_dict(), length=12)

    def with_overrides(self, **overrides) -> TrainConfig:
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise BenchError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        given = {k: v for k, v in overrides.items() if v is not None}
        if "objective_options" in given:  # "name=value" strings or pairs, in any order: one canonical form
            given["objective_options"] = OBJECTIVES.get(self.method).canonical_options(given["objective_options"])
        cfg = replace(self, **given)
        cfg.validate()
        return cfg

    def with_text_overrides(self, pairs) -> tuple[TrainConfig, tuple[tuple[str, str], ...]]:
        """This configuration with ``(field, value text)`` pairs applied (a ``train:FIELD=VALUE`` source's), each
        value read as its field's type; and the pairs that changed something (a field set to its recipe value is no
        change, so ``train:seed=0`` is the recipe's own encoder and is labelled as such)."""
        given, changed = {}, []
        for name, text in pairs:
            if name not in {f.name for f in fields(self)}:
                raise BenchError(f"train:{name}={text}: unknown training option {name!r} (known: "
                                 f"{', '.join(sorted(TEXT_SETTABLE))})")
            if name not in TEXT_SETTABLE:
                raise BenchError(f"train:{name}={text}: {name} cannot be set in an encoder source; use bench train")
            given[name] = _typed(name, text, getattr(self, name))
            if given[name] != getattr(self, name):
                changed.append((name, text))
        return self.with_overrides(**given), tuple(changed)

    def validate(self) -> None:
        OBJECTIVES.canonical(self.method)  # a one-line "unknown training objective … did you mean" otherwise
        for name in ("steps", "batch_size", "inner_steps", "grad_accum", "n_train", "checkpoint_every", "health_every"):
            if getattr(self, name) < 1:
                raise BenchError(f"training option {name} must be at least 1, got {getattr(self, name)}")
        if self.batch_size % self.grad_accum:
            raise BenchError(f"batch size {self.batch_size} is not divisible by --grad-accum {self.grad_accum}")
        if not 0 < self.eps_levels <= 255:
            raise BenchError(f"training ε must be in (0, 255]/255, got {self.eps_levels}/255")
        if self.lr <= 0:
            raise BenchError(f"learning rate must be positive, got {self.lr}")
        objective = OBJECTIVES.get(self.method)
        alternatives = objective.inner_losses
        if self.inner_loss != "default" and self.inner_loss not in alternatives:
            raise BenchError(f"--inner-loss {self.inner_loss} does not apply to {self.method} (its alternatives: "
                             f"{', '.join(alternatives) or 'none'})")
        if self.optimizer not in OPTIMIZERS:
            raise BenchError(f"unknown optimizer {self.optimizer!r} (choose {' or '.join(OPTIMIZERS)})")
        if not 0 <= self.sgd_momentum < 1:
            raise BenchError(f"SGD momentum must be in [0, 1), got {self.sgd_momentum}")
        if self.train_set not in TRAIN_SETS:
            raise BenchError(f"unknown training set {self.train_set!r} (choose {', '.join(TRAIN_SETS)})")
        if self.train_set != "default" and self.suite == "micro":
            raise BenchError(f"the micro suite trains on its own world; training set {self.train_set} applies to the "
                             "paper suites only")
        if self.objective_options != objective.canonical_options(self.objective_options):
            raise BenchError(f"objective options {self.objective_options} are not in canonical form (sorted, "
                             "defaults dropped); build them with with_overrides(objective_options=…)")
