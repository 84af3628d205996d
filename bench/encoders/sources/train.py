"""``train``: no published checkpoint; fine-tune the suite's base with the name's objective and the suite's recipe,
on demand, and cache it (``bench.train.cache``). Only registered robust names can be trained, and only on the
suite's own base: the training cache is keyed by the suite's recipe, not by a base chosen on the command line.

``train:FIELD=VALUE[:FIELD=VALUE…]`` changes fields of the recipe (``simclip4=train:steps=350:seed=1``): every field
that changes the weights is in the training cache key, so such an encoder is trained and cached apart from the
recipe's, and its checkpoint (hence its result cells) differs. The fields and their types are the training
configuration's (``bench.train.config``); the suite checks them when it trains.

A trained encoder's source, as rows and cards record it, is ``trained on demand: <cache entry>`` or, with recipe
changes, ``trained on demand (train:steps=350): <cache entry>``; ``Trained.from_description`` reads it back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from bench.core.errors import BenchError
from bench.encoders.sources import register_source

FIELD = re.compile(r"^[a-z][a-z0-9_]*$")
DESCRIPTION = re.compile(r"^trained on demand(?: \((train:[^)]*)\))?: (.+)$")


@register_source
@dataclass(frozen=True)
class Trained:
    kind = "train"
    description = "train[:FIELD=VALUE…] — fine-tune the suite's base with the objective's recipe (fields changed), " \
                  "on demand, cached"
    order = 0

    # recipe fields changed, as sorted (field, value text) pairs; the suite converts and checks them
    overrides: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return ":".join(["train", *(f"{k}={v}" for k, v in self.overrides)])

    @classmethod
    def parse(cls, text: str) -> Trained | None:
        if text != "train" and not text.startswith("train:"):
            return None
        pairs = {}
        for part in text.split(":")[1:]:
            field, sep, value = part.partition("=")
            if not sep or not FIELD.match(field.strip()) or not value.strip():
                raise BenchError(f"{text!r}: expected train or train:FIELD=VALUE[:FIELD=VALUE…] (e.g. "
                                 f"train:steps=350:seed=1), got {part!r}")
            if field.strip() in pairs:
                raise BenchError(f"{text!r}: recipe field {field.strip()!r} given twice")
            pairs[field.strip()] = value.strip()
        return cls(tuple(sorted(pairs.items())))

    def merged(self, overrides: tuple[tuple[str, str], ...]) -> Trained:
        """This source with ``overrides`` on top (theirs win)."""
        return replace(self, overrides=tuple(sorted({**dict(self.overrides), **dict(overrides)}.items())))

    def describe(self, cache_entry: str) -> str:
        """The source rows and cards record for the encoder trained into ``cache_entry``."""
        changed = f" ({self})" if self.overrides else ""
        return f"trained on demand{changed}: {cache_entry}"

    @classmethod
    def from_description(cls, text: str) -> Trained | None:
        """The source a recorded description names (``describe``'s inverse), or None if it is not one."""
        match = DESCRIPTION.match(str(text).strip())
        if match is None:
            return None
        return cls.parse(match.group(1)) if match.group(1) else cls()

    def load(self, spec, base, ctx):
        if not spec.robust:
            raise BenchError(f"{spec.name!r} has no training objective; `train` applies to the robust encoders "
                             "(fare4, tecoa2, simclip4, …)")
        if ctx.train is None:
            raise BenchError(f"the {ctx.suite or 'chosen'} suite has no training recipe; give {spec.name} a checkpoint "
                             f"(--encoder {spec.name}=PATH|URL|hf-hub:…)")
        return ctx.train(spec, base, replace(ctx, train_overrides=self.overrides))
