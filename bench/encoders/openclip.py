"""open_clip state dicts and models, read safely: building a CLIP from a config, loading weights strictly (or saying
exactly why they do not fit), unwrapping the layouts robust checkpoints are published in, and putting an image
tower onto a base model. Shared by every encoder source (``bench.encoders.sources``) and base
(``bench.encoders.bases``).
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, replace
from pathlib import Path

import open_clip
import torch
from open_clip.model import CLIPTextCfg, CLIPVisionCfg

from bench.core.checkpoints import load_tensors, sha256_file
from bench.core.errors import BenchError
from bench.core.hub import hub_file
from bench.encoders.base import ClipEncoder, EncoderMeta

WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # open_clip's order of preference


def fit_state(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str, arch: str) -> None:
    """Load ``state`` strictly, or say precisely why it does not fit."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in {arch}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es), e.g. {shapes[0]}")
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]}")
        raise BenchError(f"{what} does not fit {arch}: {'; '.join(parts)}")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def tower_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An image-tower state dict from any of the published layouts: the tower itself, a DataParallel-wrapped one
    (``module.``), or a whole CLIP (its ``visual.`` keys); TeCoA's nesting is unwrapped by ``load_tensors``."""
    state = strip_prefix(state, "module.")
    if any(k.startswith("visual.") for k in state):
        state = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    return state


def build_clip(model_cfg: dict, quick_gelu: bool) -> open_clip.CLIP:
    cfg = {k: v for k, v in model_cfg.items() if k not in ("quick_gelu", "custom_text")}
    if model_cfg.get("custom_text") or "hf_model_name" in model_cfg.get("text_cfg", {}):
        raise BenchError("only open_clip CLIP models with the CLIP text tower are supported")
    return open_clip.CLIP(**cfg, quick_gelu=quick_gelu)


def whole_clip_state(path: Path) -> dict[str, torch.Tensor]:
    state = strip_prefix(load_tensors(path), "module.")
    # open_clip stores logit_scale as a scalar or a 1-element tensor depending on the version
    if "logit_scale" in state and state["logit_scale"].ndim:
        state["logit_scale"] = state["logit_scale"].reshape(())
    return state


def hub_model_config(repo: str, what: str) -> tuple[dict, dict]:
    """(model_cfg, preprocess_cfg) of an open_clip hub repository's ``open_clip_config.json``."""
    path = hub_file(repo, "open_clip_config.json", what=what)
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(f"{what}: hf-hub:{repo} has an unreadable open_clip_config.json ({exc})") from exc
    if not isinstance(config, dict) or "model_cfg" not in config:
        raise BenchError(f"{what}: hf-hub:{repo}/open_clip_config.json has no model_cfg")
    return config["model_cfg"], config.get("preprocess_cfg", {})


def shape_fields(model_cfg: dict, what: str) -> dict:
    """The architecture a config describes, with open_clip's defaults filled in (so that two spellings of the same
    model compare equal); the activation is not part of it."""
    try:
        vision = asdict(CLIPVisionCfg(**model_cfg["vision_cfg"]))
        text = asdict(CLIPTextCfg(**model_cfg["text_cfg"]))
    except (KeyError, TypeError) as exc:
        raise BenchError(f"{what}: unsupported open_clip model config ({exc})") from exc
    out = {"embed_dim": model_cfg.get("embed_dim")}
    out.update({f"vision_cfg.{k}": v for k, v in vision.items()})
    out.update({f"text_cfg.{k}": v for k, v in text.items()})
    return out


def clip_encoder(model: open_clip.CLIP, model_cfg: dict, preprocess: dict, meta: EncoderMeta) -> ClipEncoder:
    """A ``ClipEncoder`` around ``model`` with the repository's normalisation (OpenAI's when it names none)."""
    mean = tuple(preprocess.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = tuple(preprocess.get("std", open_clip.OPENAI_DATASET_STD))
    tokenizer = open_clip.SimpleTokenizer(context_length=model_cfg["text_cfg"].get("context_length", 77))
    return ClipEncoder(model, tokenizer, mean, std, meta)


def with_tower(base, path: Path, label: str, spec, device: str) -> ClipEncoder:
    """A copy of the ``base`` CLIP (``bench.encoders.bases``) whose image tower carries the state dict in ``path``
    (the text tower stays the base's), named after ``spec``; its checkpoint hash is the file's. Its source is
    ``<label> on <base>``, both as spelled on the command line (the source, then ``--base``), so that a result row
    names what rebuilds the encoder (``bench.encoders.provenance``)."""
    state = tower_state(load_tensors(path))
    encoder = copy.deepcopy(base.load(device))
    fit_state(encoder.model.visual, state, f"{spec.name} weights ({label})", f"the {base.arch_label} image tower")
    encoder.requires_grad_(False)
    encoder.meta = replace(encoder.meta, name=spec.name, method=spec.method,
                           train_eps=None if spec.train_eps is None else float(spec.train_eps),
                           source=f"{label} on {base}", checkpoint_sha256=sha256_file(path))
    return encoder
