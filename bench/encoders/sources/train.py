"""``train``: no published checkpoint; fine-tune the suite's base with the name's objective and the suite's recipe,
on demand, and cache it (``bench.train.cache``). Only registered robust names can be trained, and only on the
suite's own base: the training cache is keyed by the suite's recipe, not by a base chosen on the command line."""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.errors import BenchError
from bench.encoders.sources import register_source


@register_source
@dataclass(frozen=True)
class Trained:
    kind = "train"
    description = "train — fine-tune the suite's base with the objective's recipe, on demand, cached"
    order = 0

    def __str__(self) -> str:
        return "train"

    @classmethod
    def parse(cls, text: str) -> Trained | None:
        return cls() if text == "train" else None

    def load(self, spec, base, ctx):
        if not spec.robust:
            raise BenchError(f"{spec.name!r} has no training objective; `train` applies to the robust encoders "
                             "(fare4, tecoa2, simclip4, …)")
        if ctx.train is None:
            raise BenchError(f"the {ctx.suite or 'chosen'} suite has no training recipe; give {spec.name} a checkpoint "
                             f"(--encoder {spec.name}=PATH|URL|hf-hub:…)")
        return ctx.train(spec, base, ctx)
