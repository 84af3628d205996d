"""The encoder names users type, what each one is, and how a suite turns a name into weights.

``clip`` is the undefended original. Every registered training objective (``bench.train.objectives``, plugins
included) gives the robust encoders ``{method}{k}``, fine-tuned at ε = k/255 for k in ``TRAIN_EPS_LEVELS``, with
``{method}`` an alias of ``{method}4``: the objectives register those names here when they are imported (training is
a layer above the encoders), so whoever resolves names imports them first (``bench.suites`` does). Encoder plugins
(entry point group ``clip_robust_bench.encoders``) add names of their own: the entry point names an ``EncoderSpec``
whose ``source`` says where its weights are (see ``bench.encoders.sources``). Names typed on the command line that
the registry does not hold (``hf-hub:ORG/REPO``, ``NAME=SOURCE``) are resolved by ``bench.encoders.resolve``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from bench.core.registry import Registry

TRAIN_EPS_LEVELS = (1, 2, 4)  # training ε in /255: 2 and 4 are FARE's and Sim-CLIP's, 1 the later papers'
DEFAULT_EPS_LEVEL = 4  # what the bare method name means


@dataclass(frozen=True)
class EncoderSpec:
    """An encoder by name: its method, training ε and, unless the suite knows where it lives, its source."""

    name: str
    method: str  # clip, a registered training objective, or "external" (a model the registry does not define)
    train_eps: Fraction | None  # None for the undefended CLIP and for external encoders
    # None: the suite's own weights for this name (the base for clip, published or trained on demand for the rest);
    # else a source (``bench.encoders.sources``) or its spelling ("hf-hub:org/repo", a path, a URL, "train")
    source: object | None = None
    base: object | None = None  # None: the suite's base; else a base (``bench.encoders.bases``) or its spelling
    description: str = ""  # one line for `bench list` (plugins)
    # a test-time defence (``bench.defences.Defence``) the encoder runs under: ``--encoder clip+ttc``; None: none
    defence: object | None = None

    @property
    def full_name(self) -> str:
        """The name its rows carry: ``clip``, or ``clip+ttc`` under a test-time defence."""
        return self.name if self.defence is None else f"{self.name}+{self.defence.spelling}"

    @property
    def train_eps_label(self) -> str:
        return "" if self.train_eps is None else f"{self.train_eps.numerator}/{self.train_eps.denominator}"

    @property
    def robust(self) -> bool:
        return self.train_eps is not None


# names that meant something else before; typing one says where it went instead of guessing
RETIRED = {
    **{f"simclip-ref{k}": f"encoder 'simclip-ref{k}' is now 'simclip{k}': Sim-CLIP means the released code and "
       f"checkpoints (the paper's objective is 'simclip-siamese{k}')" for k in ("", *TRAIN_EPS_LEVELS)},
}


# the robust names are registered from above, by bench.train.objectives when it is imported
ENCODERS: Registry[EncoderSpec] = Registry("encoder", plugin_group="encoders", retired=RETIRED)
ENCODERS.register("clip", EncoderSpec("clip", "clip", None), "the undefended original CLIP image encoder")

