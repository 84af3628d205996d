"""``hf-hub:ORG/REPO``: a whole open_clip CLIP in a hub repository (``open_clip_config.json`` + weights).

For a registered name (``fare4`` of the paper suite, or ``fare4=hf-hub:…`` given by a user) the model must be the
suite's architecture and takes the base's pinned activation, so that it is that name's checkpoint and nothing else.
An external encoder (``--encoder hf-hub:ORG/REPO``, method ``external``) is measured as the repository describes it:
its own architecture, activation, normalisation and text tower.
"""

from __future__ import annotations

from dataclasses import dataclass

import open_clip

from bench.core.checkpoints import sha256_file
from bench.core.errors import BenchError
from bench.core.hub import hub_file
from bench.encoders.base import EncoderMeta
from bench.encoders.openclip import (
    WEIGHT_FILES,
    build_clip,
    clip_encoder,
    fit_state,
    hub_model_config,
    shape_fields,
    whole_clip_state,
)
from bench.encoders.sources import hub_path, register_source

EXTERNAL = "external"  # the method of an encoder that is not one of the registry's


@register_source
@dataclass(frozen=True)
class HubModel:
    kind = "hub-model"
    description = "hf-hub:ORG/REPO — a whole open_clip CLIP (open_clip_config.json + weights) on the Hugging Face hub"
    order = 10

    repo: str

    def __str__(self) -> str:
        return f"hf-hub:{self.repo}"

    @classmethod
    def parse(cls, text: str) -> HubModel | None:
        parts = hub_path(text)
        if parts is None:
            return None
        if len(parts) < 2 or not all(parts):
            raise BenchError(f"{text!r}: expected hf-hub:ORG/REPO (a whole CLIP) or hf-hub:ORG/REPO/FILE (a tower)")
        return cls("/".join(parts)) if len(parts) == 2 else None  # ORG/REPO/FILE is a tower file

    def load(self, spec, base, ctx):
        what = f"{spec.name} weights"
        model_cfg, pre = hub_model_config(self.repo, what)
        if spec.method == EXTERNAL:
            cfg, quick = {k: v for k, v in model_cfg.items() if k != "quick_gelu"}, bool(model_cfg.get("quick_gelu"))
            arch = builtin_name(cfg)
        else:
            cfg, quick, arch = base.architecture(), base.quick_gelu, base.arch
            found, wanted = shape_fields(model_cfg, what), shape_fields(cfg, arch)
            if found != wanted:
                diff = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
                raise BenchError(f"{what}: {self} is not a {arch} (its open_clip_config.json differs in "
                                 f"{', '.join(diff)}); {spec.name} here is a {arch} encoder; give the checkpoint "
                                 "another name to evaluate it as an external encoder")
        path = hub_file(self.repo, WEIGHT_FILES, what=what)
        arch_label = f"{arch}{'-quickgelu' if quick else ''}"
        model = build_clip(cfg, quick)
        fit_state(model, whole_clip_state(path), f"{what} ({self}/{path.name})", arch_label)
        meta = EncoderMeta(spec.name, arch_label, spec.method, None if spec.train_eps is None else
                           float(spec.train_eps), f"{self}/{path.name}", sha256_file(path))
        return clip_encoder(model, cfg, pre, meta)


def builtin_name(model_cfg: dict) -> str:
    """The open_clip built-in architecture a config describes, for cards and tables; "open_clip CLIP" if none."""
    try:
        wanted = shape_fields(model_cfg, "")
    except BenchError:
        return "open_clip CLIP"
    for name in open_clip.list_models():
        cfg = open_clip.get_model_config(name) or {}
        try:
            if "timm_model_name" not in cfg.get("vision_cfg", {}) and shape_fields(cfg, name) == wanted:
                return name.removesuffix("-quickgelu")
        except BenchError:
            continue
    return "open_clip CLIP"
