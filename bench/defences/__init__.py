"""Test-time defences: they leave an encoder's weights alone and change what happens at inference.

A defence is a class registered here, one module of this package each (a plugin adds one through the entry point
group ``clip_robust_bench.defences``). It carries, as data: its name, label and citation; its hyperparameters
(``options``, the released code's values, with one comment line saying which file and lines they come from; where
the paper's text differs, the text's version is an option too, as the training objectives do); whether it is
randomised; the adaptive attack it declares against itself (``adaptive``, a protocol named ``adaptive``); what its
BPDA backward is; and its inference cost in forward and backward passes of the image tower.

``bench.encoders.defended.DefendedEncoder`` wraps any encoder with a defence, so that every task and attack sees a
normal encoder ([0,1] images in, embeddings out) whose forward is the whole defended pipeline. Spelled
``--encoder clip+ttc``, ``fare4+ttc``, ``simclip4+clipure``; options follow the defence's name after colons:
``clip+ttc:tau_from=self:tau=0.3``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import torch

from attacks.protocols import ADAPTIVE, Protocol
from bench.core.options import canonical_options, parse_option
from bench.core.registry import Registry


@dataclass(frozen=True)
class InferenceCost:
    """What one defended inference of one image costs, in passes of the image tower."""

    forwards: int
    backwards: int

    def text(self) -> str:
        return (f"{self.forwards} forward{'s' * (self.forwards != 1)} + {self.backwards} backward"
                f"{'s' * (self.backwards != 1)} of the image tower per image")


UNDEFENDED = InferenceCost(1, 0)


class Defence:
    """Base class of a test-time defence; a subclass sets the class attributes and ``embed``."""

    name: ClassVar[str]  # what follows "+" in an encoder's spelling
    label: ClassVar[str]  # what tables and cards call it
    description: ClassVar[str]  # one line for `bench list defences`
    citation: ClassVar[str]  # paper and released code (repository @ commit)
    definition: ClassVar[str]  # the algorithm in words, part of every defended cell's identity
    options: ClassVar[dict[str, float | str]] = {}  # hyperparameters: the released code's values
    option_choices: ClassVar[dict[str, tuple[str, ...]]] = {}  # allowed values of the text options
    randomised: ClassVar[bool] = False  # draws randomness at every inference (attacks.eot)
    bpda: ClassVar[str]  # what the "bpda" backward is for this defence
    adaptive: ClassVar[Protocol]  # the attack that sees this defence (the `adaptive` preset for its encoders)
    # the original CLIP's image tower takes part when the defended encoder is a fine-tuned one
    reads_original: ClassVar[bool] = False

    def __init__(self, options: Iterable = ()):
        self.settings = canonical_options("defence", self.name, self.options, self.option_choices, options)
        self.opts = {**self.options, **{k: parse_option("defence", self.name, self.options, self.option_choices, k, v)
                                        for k, v in self.settings}}

    @property
    def spelling(self) -> str:
        """``ttc``, or ``ttc:tau=0.3`` with the options that differ from the released code's."""
        return ":".join([self.name, *(f"{k}={v}" for k, v in self.settings)])

    def identity(self) -> dict:
        """What decides a defended cell's numbers, beyond the encoder: the defence, its algorithm, every
        hyperparameter (defaults included, so that a changed default never reuses a cell)."""
        return {"name": self.name, "definition": self.definition, "options": dict(sorted(self.opts.items()))}

    def cost(self, with_original: bool) -> InferenceCost:
        """Passes of the image tower per defended inference (``with_original``: the original CLIP takes part)."""
        raise NotImplementedError

    def prepare(self, encoder) -> None:
        """Compute once, when ``encoder`` (the ``DefendedEncoder``) is built, what every inference reads (into
        ``encoder.constants``), so that no inference — nor the plan's FLOP count of one — pays for it."""

    def embed(self, encoder, x: torch.Tensor) -> torch.Tensor:
        """Embeddings of [0,1] images ``x`` through the defended pipeline; ``encoder`` is the ``DefendedEncoder``
        (its ``base``, ``original``, ``noise`` and ``constants``)."""
        raise NotImplementedError


DEFENCES: Registry[type[Defence]] = Registry("test-time defence", discover=("bench.defences",),
                                             plugin_group="defences")


def register_defence(cls: type[Defence]) -> type[Defence]:
    """Class decorator: register a defence under its ``name``; its declared attack must be the ``adaptive`` preset's
    name, so that a column of adaptive results holds every encoder's own adaptive attack."""
    if cls.adaptive.name != ADAPTIVE:
        raise ValueError(f"defence {cls.name}: its adaptive protocol must be named {ADAPTIVE!r}")
    DEFENCES.register(cls.name, cls, cls.description)
    return cls


def make_defence(spelling: str) -> Defence:
    """``ttc`` or ``ttc:NAME=VALUE:…`` as a configured defence (a one-line error for an unknown name or option)."""
    name, *options = [p.strip() for p in spelling.split(":")]
    return DEFENCES.get(name)(options)


def split_defence(text: str) -> tuple[str, Defence | None]:
    """``clip+ttc`` → ("clip", TTC); text without a defence suffix → (text, None). The suffix is the part after the
    last ``+`` when it names a registered defence, so a path holding a ``+`` stays a path."""
    head, sep, tail = text.rpartition("+")
    if not sep or not head.strip():
        return text, None
    if tail.split(":")[0].strip().lower() not in DEFENCES:
        if ":" in tail or "=" not in text:  # reads as a defence (options, or a bare name): say it is unknown
            DEFENCES.canonical(tail.split(":")[0])
        return text, None
    return head.strip(), make_defence(tail)


def declared_protocol(protocol: Protocol, defence: Defence | None) -> Protocol:
    """The protocol a cell runs: ``adaptive`` becomes the defence's declared attack (unchanged without a defence)."""
    if protocol.name == ADAPTIVE and defence is not None:
        return defence.adaptive
    return protocol

