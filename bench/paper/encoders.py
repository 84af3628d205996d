"""The paper suite's encoders, from their public homes, as data: where each checkpoint lives and how it loads.

A *family* is one base model plus the robust checkpoints published for it. Whole-CLIP open_clip repositories
(``open_clip_config.json`` + weights) load as they are; image-tower files (Sim-CLIP's ``simclipN.pt``, TeCoA's
``vision_encoder_state_dict`` layout, a user's file or URL) load onto the base model's image tower, whose text
tower stays the original. Names without a published checkpoint (``simclip-siamese2``, the ε = 1/255 encoders, …) are
trained on demand with their objective's paper recipe.

The activation is pinned per family rather than read from each repository's config: the OpenAI ViT-L/14 (and
everything fine-tuned from it) uses QuickGELU, and open_clip >= 2.x builds ``ViT-L-14`` with nn.GELU unless told
otherwise. ``bench.paper.activation`` checks the pin against the real weights on a machine that has them.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import open_clip
import torch

from bench.core.checkpoints import load_tensors, sha256_file
from bench.core.errors import BenchError
from bench.core.hub import hub_file, url_file
from bench.encoders.base import ClipEncoder, EncoderMeta

WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # open_clip's order of preference


@dataclass(frozen=True)
class HubModel:
    """A whole open_clip CLIP in a hub repository (``hf-hub:org/name``)."""

    repo: str

    def __str__(self) -> str:
        return f"hf-hub:{self.repo}"


@dataclass(frozen=True)
class TowerFile:
    """An image-tower state dict: a file in a hub repository, a URL or a local path."""

    location: str  # "org/name/file.pt" (hub), "https://…", "file://…" or a path
    kind: str = "hub"  # hub | url | path

    def __str__(self) -> str:
        return f"hf-hub:{self.location}" if self.kind == "hub" else self.location


@dataclass(frozen=True)
class Trained:
    """No published checkpoint: fine-tune the base with the paper recipe (``bench.train``), cached."""

    def __str__(self) -> str:
        return "trained on demand with the paper recipe"


@dataclass(frozen=True)
class Family:
    suite: str
    arch: str  # open_clip built-in config of the base model
    tag: str  # open_clip pretrained tag whose ``hf_hub`` entry holds the base weights
    quick_gelu: bool  # pinned activation of the base and of every checkpoint fine-tuned from it
    sources: dict[str, object] = field(default_factory=dict)  # encoder name → HubModel | TowerFile | Trained
    recipe_suite: str | None = None  # training recipe for names without a published checkpoint
    model_cfg: dict | None = None  # replaces the built-in architecture (tests use tiny models)

    @property
    def arch_label(self) -> str:
        return f"{self.arch}{'-quickgelu' if self.quick_gelu else ''}"

    def architecture(self) -> dict:
        cfg = copy.deepcopy(self.model_cfg) if self.model_cfg is not None else open_clip.get_model_config(self.arch)
        if cfg is None:
            raise BenchError(f"open_clip has no built-in model config {self.arch!r}")
        cfg.pop("quick_gelu", None)
        return cfg

    def base_location(self) -> tuple[str, tuple[str, ...], dict]:
        """(hub repo, candidate weight files, preprocess config) of the base model, from open_clip's registry."""
        pre = open_clip.get_pretrained_cfg(self.arch, self.tag)
        if not pre.get("hf_hub"):
            raise BenchError(f"open_clip lists no hub location for {self.arch} {self.tag!r}")
        repo, filename = os.path.split(pre["hf_hub"])  # "org/name/" or "org/name/file"
        return repo, (filename,) if filename else WEIGHT_FILES, pre


PAPER_L14 = Family(
    suite="paper", arch="ViT-L-14", tag="openai", quick_gelu=True,
    sources={
        "fare2": HubModel("chs20/fare2-clip"), "fare4": HubModel("chs20/fare4-clip"),
        "tecoa2": HubModel("chs20/tecoa2-clip"), "tecoa4": HubModel("chs20/tecoa4-clip"),
        "simclip2": TowerFile("hossainzarif19/SimCLIP/simclip2.pt"),
        "simclip4": TowerFile("hossainzarif19/SimCLIP/simclip4.pt"),
    },
    recipe_suite="paper",
)

# The base-sized models of FARE's follow-up, fine-tuned from the LAION-2B ViT-B/32 (GELU); only ε = 4/255 is
# published, on the hub.
PAPER_B32 = Family(
    suite="paper-b32", arch="ViT-B-32", tag="laion2b_s34b_b79k", quick_gelu=False,
    sources={"fare4": HubModel("chs20/FARE4-ViT-B-32-laion2B-s34B-b79K"),
             "tecoa4": HubModel("chs20/TeCoA4-ViT-B-32-laion2B-s34B-b79K")},
)

# FARE's OpenAI ViT-B/32 image towers (ε = 1/255 and 4/255 are published) are plain downloads from the authors'
# university cloud, listed in the RobustVLM README (l. 259-262); cached under $BENCH_CACHE/downloads.
_NC = "https://nc.mlcloud.uni-tuebingen.de/index.php/s"
PAPER_B32_OPENAI = Family(
    suite="paper-b32-openai", arch="ViT-B-32", tag="openai", quick_gelu=True,
    sources={"fare1": TowerFile(f"{_NC}/cCgQAS8QW9arj9d/download/vitb32_fare_eps_1.pt", kind="url"),
             "tecoa1": TowerFile(f"{_NC}/LHgi84RskrtYCiX/download/vitb32_tecoa_eps_1.pt", kind="url"),
             "fare4": TowerFile(f"{_NC}/3nMxBKEwbWnDymT/download/vitb32_fare_eps_4.pt", kind="url"),
             "tecoa4": TowerFile(f"{_NC}/RiWGQzBrqYNCaDk/download/vitb32_tecoa_eps_4.pt", kind="url")},
)

# The zero-shot table of TGA-ZSR (its README, 16 datasets, ε = 1/255) and PMG-AFT: the OpenAI ViT-B/32 these papers
# and AGFT fine-tune, FARE's published ε = 1/255 and 4/255 towers for it, and every other robust encoder (PMG-AFT,
# TGA-ZSR, AGFT, …) trained with its paper recipe (cached under this suite's name: another base model).
PAPER_ZSR = Family(suite="paper-zsr", arch="ViT-B-32", tag="openai", quick_gelu=True,
                   sources=dict(PAPER_B32_OPENAI.sources), recipe_suite="paper-zsr")

FAMILIES = {f.suite: f for f in (PAPER_L14, PAPER_B32, PAPER_B32_OPENAI, PAPER_ZSR)}


def parse_weights_option(text: str) -> tuple[str, object]:
    """``NAME=LOCATION`` of ``--encoder-weights``: a path, a URL, ``hf-hub:org/repo`` (a whole open_clip CLIP),
    ``hf-hub:org/repo/file.pt`` (an image-tower file) or ``train`` (the paper recipe)."""
    from bench.encoders.registry import ENCODERS

    name, sep, where = text.partition("=")
    if not sep or not name.strip() or not where.strip():
        raise BenchError(f"--encoder-weights takes NAME=PATH, NAME=URL, NAME=hf-hub:org/repo or NAME=train, "
                         f"got {text!r}")
    name, where = ENCODERS.canonical(name), where.strip()
    if where == "train":
        return name, Trained()
    if where.startswith("hf-hub:"):
        ident = where[len("hf-hub:"):].strip("/")
        parts = ident.split("/")
        if len(parts) < 2:
            raise BenchError(f"--encoder-weights {name}={where}: expected hf-hub:org/repo or hf-hub:org/repo/file")
        return name, HubModel(ident) if len(parts) == 2 else TowerFile(ident)
    if "://" in where:
        return name, TowerFile(where, kind="url")
    if not Path(where).expanduser().is_file():
        raise BenchError(f"--encoder-weights {name}={where}: no such file")
    return name, TowerFile(str(Path(where).expanduser().resolve()), kind="path")


def _fit(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str, arch: str) -> None:
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


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def tower_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An image-tower state dict from any of the published layouts: the tower itself, a DataParallel-wrapped one
    (``module.``), or a whole CLIP (its ``visual.`` keys); TeCoA's nesting is unwrapped by ``load_tensors``."""
    state = _strip(state, "module.")
    if any(k.startswith("visual.") for k in state):
        state = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    return state


def build_clip(model_cfg: dict, quick_gelu: bool) -> open_clip.CLIP:
    cfg = {k: v for k, v in model_cfg.items() if k not in ("quick_gelu", "custom_text")}
    if model_cfg.get("custom_text") or "hf_model_name" in model_cfg.get("text_cfg", {}):
        raise BenchError("only open_clip CLIP models with the CLIP text tower are supported")
    return open_clip.CLIP(**cfg, quick_gelu=quick_gelu)


def whole_clip_state(path: Path) -> dict[str, torch.Tensor]:
    state = _strip(load_tensors(path), "module.")
    # open_clip stores logit_scale as a scalar or a 1-element tensor depending on the version
    if "logit_scale" in state and state["logit_scale"].ndim:
        state["logit_scale"] = state["logit_scale"].reshape(())
    return state


@dataclass
class Loaded:
    model: open_clip.CLIP
    mean: tuple
    std: tuple
    source: str
    sha256: str
    context_length: int


def load_base(family: Family) -> Loaded:
    repo, files, pre = family.base_location()
    path = hub_file(repo, files, what=f"base model {family.arch} {family.tag}")
    cfg = family.architecture()
    model = build_clip(cfg, family.quick_gelu)
    _fit(model, whole_clip_state(path), f"hf-hub:{repo}/{path.name}", family.arch_label)
    return Loaded(model, tuple(pre["mean"]), tuple(pre["std"]), f"hf-hub:{repo}/{path.name}", sha256_file(path),
                  cfg["text_cfg"].get("context_length", 77))


def hub_model_config(repo: str, what: str) -> tuple[dict, dict]:
    path = hub_file(repo, "open_clip_config.json", what=what)
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(f"{what}: hf-hub:{repo} has an unreadable open_clip_config.json ({exc})") from exc
    if "model_cfg" not in config:
        raise BenchError(f"{what}: hf-hub:{repo}/open_clip_config.json has no model_cfg")
    return config["model_cfg"], config.get("preprocess_cfg", {})


def _shape_fields(model_cfg: dict, what: str) -> dict:
    """The architecture a config describes, with open_clip's defaults filled in (so that two spellings of the same
    model compare equal); the activation is not part of it."""
    from dataclasses import asdict

    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    try:
        vision = asdict(CLIPVisionCfg(**model_cfg["vision_cfg"]))
        text = asdict(CLIPTextCfg(**model_cfg["text_cfg"]))
    except (KeyError, TypeError) as exc:
        raise BenchError(f"{what}: unsupported open_clip model config ({exc})") from exc
    out = {"embed_dim": model_cfg.get("embed_dim")}
    out.update({f"vision_cfg.{k}": v for k, v in vision.items()})
    out.update({f"text_cfg.{k}": v for k, v in text.items()})
    return out


def load_hub_model(family: Family, source: HubModel, what: str) -> Loaded:
    model_cfg, pre = hub_model_config(source.repo, what)
    expected = family.architecture()
    found, wanted = _shape_fields(model_cfg, what), _shape_fields(expected, family.arch)
    if found != wanted:
        diff = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
        raise BenchError(f"{what}: {source} is not a {family.arch} (its open_clip_config.json differs in "
                         f"{', '.join(diff)}); the {family.suite} suite compares {family.arch} encoders only")
    path = hub_file(source.repo, WEIGHT_FILES, what=what)
    model = build_clip(expected, family.quick_gelu)
    _fit(model, whole_clip_state(path), f"{what} ({source}/{path.name})", family.arch_label)
    mean = tuple(pre.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = tuple(pre.get("std", open_clip.OPENAI_DATASET_STD))
    return Loaded(model, mean, std, f"{source}/{path.name}", sha256_file(path),
                  expected["text_cfg"].get("context_length", 77))


def tower_path(source: TowerFile, what: str) -> Path:
    if source.kind == "hub":
        org, name, filename = source.location.split("/", 2)
        return hub_file(f"{org}/{name}", filename, what=what)
    if source.kind == "url":
        return url_file(source.location, what=what)
    return Path(source.location)


def with_tower(base: Loaded, source: TowerFile, family: Family, what: str) -> Loaded:
    path = tower_path(source, what)
    model = copy.deepcopy(base.model)
    _fit(model.visual, tower_state(load_tensors(path)), f"{what} ({source})", f"the {family.arch_label} image tower")
    return replace(base, model=model, source=f"{source} on {base.source}", sha256=sha256_file(path))


def encoder(loaded: Loaded, spec, family: Family, device: str) -> ClipEncoder:
    meta = EncoderMeta(spec.name, family.arch_label, spec.method,
                       None if spec.train_eps is None else float(spec.train_eps), loaded.source, loaded.sha256)
    tokenizer = open_clip.SimpleTokenizer(context_length=loaded.context_length)
    return ClipEncoder(loaded.model, tokenizer, loaded.mean, loaded.std, meta).to(device)


def source_of(spec, family: Family, overrides: dict[str, object]):
    if spec.name in overrides:
        return overrides[spec.name]
    if spec.name == "clip":
        return None
    if spec.name in family.sources:
        return family.sources[spec.name]
    if family.recipe_suite:
        return Trained()
    published = ", ".join(["clip", *family.sources])
    raise BenchError(f"no published {family.arch} checkpoint for {spec.name!r} in the {family.suite} suite "
                     f"(published: {published}); give one with --encoder-weights {spec.name}=PATH|URL")


def load_encoder(family: Family, spec, device: str, *, allow_training: bool = True, progress: bool = True,
                 overrides: dict[str, object] | None = None, train_overrides: dict | None = None) -> ClipEncoder:
    """The encoder ``spec`` of ``family`` on ``device``: downloaded (or read from the cache), verified, loaded."""
    overrides = overrides or {}
    source = source_of(spec, family, overrides)
    what = f"{spec.name} weights"
    if isinstance(source, HubModel):
        return encoder(load_hub_model(family, source, what), spec, family, device)
    base = load_base(family)
    if source is None:
        return encoder(base, spec, family, device)
    if isinstance(source, TowerFile):
        return encoder(with_tower(base, source, family, what), spec, family, device)
    return trained(family, spec, encoder(base, _clip_spec(), family, device), device, allow_training=allow_training,
                   progress=progress, train_overrides=train_overrides)


def _clip_spec():
    from bench.encoders.registry import ENCODERS

    return ENCODERS.get("clip")


def trained(family: Family, spec, base: ClipEncoder, device: str, *, allow_training: bool, progress: bool,
            train_overrides: dict | None = None) -> ClipEncoder:
    from bench.train.cache import obtain
    from bench.train.data import train_data
    from bench.train.recipes import recipe

    if not spec.robust:
        raise BenchError("the undefended CLIP is not trained; drop its --encoder-weights clip=train")
    if family.recipe_suite is None:
        raise BenchError(f"the {family.suite} suite has no training recipe; give {spec.name} with --encoder-weights")
    cfg = recipe(family.recipe_suite, spec.method, round(spec.train_eps * 255))
    if train_overrides:
        cfg = cfg.with_overrides(**train_overrides)
    return obtain(cfg, spec.name, base, lambda: train_data(cfg.suite, cfg.n_train, None, cfg.seed, cfg.train_set),
                  torch.device(device), allow_training=allow_training, progress=progress)
