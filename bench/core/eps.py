"""Perturbation budgets: parsing ``4/255`` or ``0.0157``, rejecting ``4`` (a pixel count, not a fraction)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from bench.core.errors import BenchError

_FRACTION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*$")
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?\s*$")


@dataclass(frozen=True, order=True)
class Eps:
    """An ℓ∞ budget in [0,1] pixel units, with a canonical label ("4/255" when it is a whole number of levels)."""

    value: float
    label: str

    @classmethod
    def of(cls, value: float) -> Eps:
        levels = value * 255
        # "4/255" arrives as 4.000000000000001 levels: snap float rounding to the level, nothing coarser (a typed
        # decimal keeps its own value), and never snap a positive ε to 0, which would mean no attack at all
        if value == 0 or (round(levels) > 0 and abs(levels - round(levels)) < 1e-9):
            return cls(float(Fraction(round(levels), 255)), f"{round(levels)}/255" if round(levels) else "0")
        return cls(float(value), repr(float(value)))  # the shortest text that parses back to exactly this value

    def __str__(self) -> str:
        return self.label


def parse_eps(text: str) -> Eps:
    """Parse a user-given ε; raise a one-line ``BenchError`` naming the problem otherwise."""
    raw = str(text).strip()
    m = _FRACTION.match(raw)
    if m:
        num, den = float(m.group(1)), float(m.group(2))
        if den == 0:
            raise BenchError(f"invalid ε {raw!r}: division by zero")
        value = num / den
    elif _NUMBER.match(raw):
        value = float(raw)
    else:
        if raw.startswith("-"):
            raise BenchError(f"invalid ε {raw!r}: it must not be negative")
        raise BenchError(f"invalid ε {raw!r}: expected a fraction like 4/255 or a number in [0, 1] like 0.0157")
    if not math.isfinite(value):
        raise BenchError(f"invalid ε {raw!r}: not a finite number")
    if value > 1:
        hint = f"; did you mean {raw}/255?" if value <= 255 and float(value).is_integer() else ""
        raise BenchError(f"invalid ε {raw!r}: ε is a fraction of the pixel range [0, 1] and must be ≤ 1{hint}")
    return Eps.of(value)
