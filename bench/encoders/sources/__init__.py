"""Encoder sources: where an encoder's weights come from, spelled as users type them, and how they load onto a base.

Each kind lives in its own module of this package and registers itself (a new kind is one new file); a plugin adds
one through the entry point group ``clip_robust_bench.encoder_sources``. A kind is a class with

- ``parse(text) -> source | None``: claim a spelling (``hf-hub:ORG/REPO``, a URL, a path, ``train``, …) or pass;
  kinds are asked in ``order``, so the most specific spelling wins and a local path is the last resort;
- ``load(spec, base, ctx) -> ClipEncoder`` on an instance: the encoder ``spec`` names, its meta carrying the
  source and the checkpoint's sha256 (which, with the name, is a result cell's identity);
- ``__str__``: the spelling back, for messages and cards.

Anything with such a ``load`` can stand in an ``EncoderSpec.source`` (the Python API's in-memory module does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from bench.core.errors import BenchError
from bench.core.registry import Registry
from bench.encoders.base import ClipEncoder
from bench.encoders.bases import parse_base


@dataclass(frozen=True)
class LoadContext:
    """How to load: the device, whether training on demand is allowed, and the suite's way to train (its recipe
    and data) for the ``train`` source, or None when the suite has no recipe."""

    device: str = "cpu"
    allow_training: bool = True
    progress: bool = True
    train: Callable | None = None  # (spec, base, ctx) -> trained ClipEncoder; refuses a base not the suite's
    suite: str = ""
    # recipe fields the ``train`` source changes, as (field, value text) pairs (``train:steps=350``)
    train_overrides: tuple[tuple[str, str], ...] = ()


SOURCES: Registry[type] = Registry("encoder source", discover=("bench.encoders.sources",),
                                   plugin_group="encoder_sources")


def register_source(cls: type) -> type:
    """Class decorator: register a source kind under its ``kind`` name."""
    SOURCES.register(cls.kind, cls, cls.description)
    return cls


def hub_path(text: str) -> list[str] | None:
    """The ``/``-separated parts after ``hf-hub:`` (None for another spelling): ORG/REPO names a whole CLIP,
    ORG/REPO/FILE a file in it."""
    if not text.startswith("hf-hub:"):
        return None
    return text[len("hf-hub:"):].strip("/").split("/")


SPELLINGS = ("a path, a URL, hf-hub:ORG/REPO (a whole open_clip CLIP), hf-hub:ORG/REPO/FILE (an image tower) or "
             "train[:FIELD=VALUE…]")


def parse_source(text: str, what: str = "encoder source"):
    """The source a spelling names; a bad one is a one-line error."""
    raw = str(text).strip()
    if not raw:
        raise BenchError(f"{what}: empty source; expected {SPELLINGS}")
    for entry in sorted(SOURCES, key=lambda e: (getattr(e.value, "order", 50), e.name)):
        try:
            source = entry.value.parse(raw)
        except BenchError as exc:  # the kind claimed the spelling and found it malformed or missing
            raise BenchError(f"{what}: {exc}") from exc
        if source is not None:
            return source
    raise BenchError(f"{what}: cannot read source {raw!r}; expected {SPELLINGS}")


def load(spec, source, base, ctx: LoadContext) -> ClipEncoder:
    """The encoder ``spec`` from ``source`` (None: the base itself, for the undefended CLIP) on ``base``; either may
    still be its spelling (a plugin's ``EncoderSpec(source="hf-hub:…")``)."""
    if isinstance(source, str):
        source = parse_source(source, f"encoder {spec.name}")
    if isinstance(base, str):
        base = parse_base(base)
    if source is None:
        if spec.method != "clip":
            raise BenchError(f"encoder {spec.name!r} names no checkpoint source")
        encoder = base.load(ctx.device)
        encoder.meta = replace(encoder.meta, name=spec.name)
        return encoder
    return source.load(spec, base, ctx).to(ctx.device)
