"""Bases: the CLIP an image-tower checkpoint is put onto (its text tower reads the tower's embeddings, so it must
be the one the tower was fine-tuned against).

Every suite has one (the micro suite its committed micro CLIP, a paper suite its open_clip model); ``--base``
chooses another for the checkpoints named on the command line:

    micro                       the committed micro CLIP
    ARCH/TAG                    an open_clip built-in architecture with a pretrained tag (ViT-B-32/openai)
    ARCH/hf-hub:ORG/REPO        an open_clip built-in architecture with the whole-CLIP weights of a hub repository

A base loads as a ``ClipEncoder`` named ``clip``; a source then swaps in its tower (``bench.encoders.sources``).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from typing import Protocol

import open_clip

from bench.core.checkpoints import sha256_file
from bench.core.errors import BenchError
from bench.core.hub import hub_file
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


def builtin_architecture(arch: str, model_cfg: dict | None = None) -> dict:
    import copy

    cfg = copy.deepcopy(model_cfg) if model_cfg is not None else open_clip.get_model_config(arch)
    if cfg is None:
        close = difflib.get_close_matches(arch, open_clip.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else " (see open_clip.list_models())"
        raise BenchError(f"open_clip has no built-in model config {arch!r}{hint}")
    cfg.pop("quick_gelu", None)
    return cfg


@dataclass(frozen=True)
class OpenClipBase:
    """An open_clip built-in architecture with the weights its pretrained ``tag`` names on the hub."""

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


@dataclass(frozen=True)
class HubClipBase:
    """An open_clip built-in architecture with the whole-CLIP weights of a hub repository."""

    arch: str
    repo: str
    quick_gelu: bool

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
    """A base from its spelling (see the module docstring); a bad one is a one-line error."""
    raw = text.strip()
    if raw == "micro":
        from bench.micro.encoders import MICRO_BASE

        return MICRO_BASE
    arch, sep, where = raw.partition("/")
    if not sep or not arch or not where:
        raise BenchError(f"--base {text!r}: expected micro, ARCH/TAG (e.g. ViT-B-32/openai) or ARCH/hf-hub:ORG/REPO")
    cfg = open_clip.get_model_config(arch)
    builtin_architecture(arch)  # an unknown architecture is refused here, with suggestions
    if where.startswith("hf-hub:"):
        repo = where[len("hf-hub:"):].strip("/")
        if len(repo.split("/")) != 2:
            raise BenchError(f"--base {text!r}: expected ARCH/hf-hub:ORG/REPO (a whole open_clip CLIP)")
        return HubClipBase(arch, repo, bool(cfg.get("quick_gelu", False)))
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if where not in tags:
        raise BenchError(f"--base {text!r}: open_clip has no pretrained tag {where!r} for {arch} "
                         f"(it has: {', '.join(tags) or 'none'})")
    quick = open_clip.get_pretrained_cfg(arch, where).get("quick_gelu", cfg.get("quick_gelu", False))
    return OpenClipBase(arch, where, bool(quick))
