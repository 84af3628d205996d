"""Bases: the CLIP an image-tower checkpoint is put onto (its text tower reads the tower's embeddings, so it must
be the one the tower was fine-tuned against).

Every suite has one (the micro suite its committed micro CLIP, a paper suite its open_clip model); ``--base``
chooses another for the checkpoints named on the command line:

    micro                       the committed micro CLIP (registered by the micro suite, ``bench.micro.encoders``)
    ARCH/TAG                    an open_clip built-in architecture with a pretrained tag (ViT-B-32/openai)
    ARCH/hf-hub:ORG/REPO        an open_clip built-in architecture with the whole-CLIP weights of a hub repository

Each spelling is a base *kind* in the registry ``BASES``: a class with ``kind``, ``order``, ``spelling`` (for
messages), ``description`` and ``parse(text) -> base | None`` (claim a spelling or pass; asked in ``order``). A suite
registers the kind of its own base from above when it is imported (``register_base``). A base loads as a
``ClipEncoder`` named ``clip``; a source then swaps in its tower (``bench.encoders.sources``).
"""

from __future__ import annotations

import copy
import difflib
import os
from dataclasses import dataclass
from typing import Protocol

import open_clip

from bench.core.checkpoints import sha256_file
from bench.core.errors import BenchError
from bench.core.hub import hub_file
from bench.core.registry import Registry
from bench.encoders.base import ClipEncoder, EncoderMeta
from bench.encoders.openclip import (
    WEIGHT_FILES,
    build_clip,
    clip_encoder,
    fit_state,
    hub_model_config,
    whole_clip_state,
)


class Base(Protocol):
    """What a source needs from a base."""

    arch: str  # the architecture's name, e.g. "ViT-L-14" or "micro-vit-4x128-p8-64px"
    quick_gelu: bool  # the activation of the base and of every tower fine-tuned from it

    @property
    def arch_label(self) -> str: ...  # what cards and messages call the architecture

    def architecture(self) -> dict: ...  # the open_clip model config (without the activation)

    def load(self, device: str) -> ClipEncoder: ...  # the base CLIP, named "clip"

    def __str__(self) -> str: ...  # its spelling, which ``parse_base`` reads back (rows record it)


BASES: Registry[type] = Registry("base kind")


def register_base(cls: type) -> type:
    """Class decorator: register a base kind under its ``kind`` name."""
    BASES.register(cls.kind, cls, cls.description)
    return cls


def builtin_architecture(arch: str, model_cfg: dict | None = None) -> dict:
    cfg = copy.deepcopy(model_cfg) if model_cfg is not None else open_clip.get_model_config(arch)
    if cfg is None:
        close = difflib.get_close_matches(arch, open_clip.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else " (see open_clip.list_models())"
        raise BenchError(f"open_clip has no built-in model config {arch!r}{hint}")
    cfg.pop("quick_gelu", None)
    return cfg


@register_base
@dataclass(frozen=True)
class OpenClipBase:
    """An open_clip built-in architecture with the weights its pretrained ``tag`` names on the hub."""

    kind = "open_clip"
    order = 10
    spelling = "ARCH/TAG (e.g. ViT-B-32/openai)"
    description = "ARCH/TAG — an open_clip built-in architecture with a pretrained tag (ViT-B-32/openai)"

    arch: str
    tag: str
    quick_gelu: bool
    model_cfg: dict | None = None  # replaces the built-in architecture (tests use tiny models)

    @property
    def arch_label(self) -> str:
        return f"{self.arch}{'-quickgelu' if self.quick_gelu else ''}"

    def __str__(self) -> str:
        return f"{self.arch}/{self.tag}"

    def architecture(self) -> dict:
        return builtin_architecture(self.arch, self.model_cfg)

    @classmethod
    def parse(cls, text: str) -> OpenClipBase | None:
        arch, sep, tag = text.partition("/")
        if not sep or not arch or not tag or tag.startswith("hf-hub:"):  # hf-hub: is HubClipBase's
            return None
        builtin_architecture(arch)  # an unknown architecture is refused here, with suggestions
        tags = open_clip.list_pretrained_tags_by_model(arch)
        if tag not in tags:
            raise BenchError(f"--base {text!r}: open_clip has no pretrained tag {tag!r} for {arch} "
                             f"(it has: {', '.join(tags) or 'none'})")
        default = open_clip.get_model_config(arch).get("quick_gelu", False)
        return cls(arch, tag, bool(open_clip.get_pretrained_cfg(arch, tag).get("quick_gelu", default)))

    def location(self) -> tuple[str, tuple[str, ...], dict]:
        """(hub repo, candidate weight files, preprocess config) of the weights, from open_clip's registry."""
        pre = open_clip.get_pretrained_cfg(self.arch, self.tag)
        if not pre.get("hf_hub"):
            raise BenchError(f"open_clip lists no hub location for {self.arch} {self.tag!r}")
        repo, filename = os.path.split(pre["hf_hub"])  # "org/name/" or "org/name/file"
        return repo, (filename,) if filename else WEIGHT_FILES, pre

    def load(self, device: str) -> ClipEncoder:
        repo, files, pre = self.location()
        return _load_whole(self, repo, files, pre, f"base model {self.arch} {self.tag}", device)


@register_base
@dataclass(frozen=True)
class HubClipBase:
    """An open_clip built-in architecture with the whole-CLIP weights of a hub repository."""

    kind = "hub"
    order = 20
    spelling = "ARCH/hf-hub:ORG/REPO"
    description = "ARCH/hf-hub:ORG/REPO — an open_clip built-in architecture with a hub repository's whole-CLIP weights"

    arch: str
    repo: str
    quick_gelu: bool

    @classmethod
    def parse(cls, text: str) -> HubClipBase | None:
        arch, sep, where = text.partition("/")
        if not sep or not arch or not where.startswith("hf-hub:"):
            return None
        builtin_architecture(arch)
        repo = where[len("hf-hub:"):].strip("/")
        if len(repo.split("/")) != 2:
            raise BenchError(f"--base {text!r}: expected ARCH/hf-hub:ORG/REPO (a whole open_clip CLIP)")
        return cls(arch, repo, bool(open_clip.get_model_config(arch).get("quick_gelu", False)))

    @property
    def arch_label(self) -> str:
        return f"{self.arch}{'-quickgelu' if self.quick_gelu else ''}"

    def __str__(self) -> str:
        return f"{self.arch}/hf-hub:{self.repo}"

    def architecture(self) -> dict:
        return builtin_architecture(self.arch)

    def load(self, device: str) -> ClipEncoder:
        try:
            pre = hub_model_config(self.repo, f"base hf-hub:{self.repo}")[1]
        except BenchError:  # weights without open_clip_config.json: the default (OpenAI) normalisation
            pre = {}
        return _load_whole(self, self.repo, WEIGHT_FILES, pre, f"base model {self.arch} hf-hub:{self.repo}", device)


def _load_whole(base, repo: str, files: tuple[str, ...], pre: dict, what: str, device: str) -> ClipEncoder:
    path = hub_file(repo, files, what=what)
    cfg = base.architecture()
    model = build_clip(cfg, base.quick_gelu)
    fit_state(model, whole_clip_state(path), f"hf-hub:{repo}/{path.name}", base.arch_label)
    meta = EncoderMeta("clip", base.arch_label, "clip", None, f"hf-hub:{repo}/{path.name}", sha256_file(path))
    return clip_encoder(model, cfg, pre, meta).to(device)


def parse_base(text: str) -> Base:
    """A base from its spelling: the first kind (in ``order``) that claims it; a bad one is a one-line error."""
    raw = text.strip()
    kinds = sorted(BASES, key=lambda e: (getattr(e.value, "order", 50), e.name))
    for entry in kinds:
        base = entry.value.parse(raw)
        if base is not None:
            return base
    raise BenchError(f"--base {text!r}: expected {', '.join(e.value.spelling for e in kinds[:-1])} or "
                     f"{kinds[-1].value.spelling}")
