"""The paper suite's encoders, from their public homes, as data: where each checkpoint lives.

A *family* is one base model plus the robust checkpoints published for it, each named by its encoder source
(``bench.encoders.sources``): whole-CLIP open_clip repositories (``HubModel``) load as they are; image-tower files
(Sim-CLIP's ``simclipN.pt`` on the hub, FARE's OpenAI ViT-B/32 downloads, a user's file) load onto the base model's
image tower, whose text tower stays the original. Names without a published checkpoint (``simclip-siamese2``, the
ε = 1/255 encoders, …) are trained on demand with their objective's paper recipe.

The activation is pinned per family rather than read from each repository's config: the OpenAI ViT-L/14 (and
everything fine-tuned from it) uses QuickGELU, and open_clip >= 2.x builds ``ViT-L-14`` with nn.GELU unless told
otherwise. ``bench.paper.activation`` checks the pin against the real weights on a machine that has them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bench.core.errors import BenchError
from bench.encoders import sources
from bench.encoders.base import ClipEncoder
from bench.encoders.bases import OpenClipBase
from bench.encoders.sources.hub_model import HubModel
from bench.encoders.sources.hub_tower import HubTower
from bench.encoders.sources.train import Trained
from bench.encoders.sources.url import UrlTower


@dataclass(frozen=True)
class Family:
    suite: str
    arch: str  # open_clip built-in config of the base model
    tag: str  # open_clip pretrained tag whose ``hf_hub`` entry holds the base weights
    quick_gelu: bool  # pinned activation of the base and of every checkpoint fine-tuned from it
    sources: dict[str, object] = field(default_factory=dict)  # encoder name → its source (bench.encoders.sources)
    recipe_suite: str | None = None  # training recipe for names without a published checkpoint
    model_cfg: dict | None = None  # replaces the built-in architecture (tests use tiny models)

    @property
    def base(self) -> OpenClipBase:
        return OpenClipBase(self.arch, self.tag, self.quick_gelu, self.model_cfg)

    @property
    def arch_label(self) -> str:
        return self.base.arch_label

    def architecture(self) -> dict:
        return self.base.architecture()

    def base_location(self) -> tuple[str, tuple[str, ...], dict]:
        """(hub repo, candidate weight files, preprocess config) of the base model, from open_clip's registry."""
        return self.base.location()


PAPER_L14 = Family(
    suite="paper", arch="ViT-L-14", tag="openai", quick_gelu=True,
    sources={
        "fare2": HubModel("chs20/fare2-clip"), "fare4": HubModel("chs20/fare4-clip"),
        "tecoa2": HubModel("chs20/tecoa2-clip"), "tecoa4": HubModel("chs20/tecoa4-clip"),
        "simclip2": HubTower("hossainzarif19/SimCLIP/simclip2.pt"),
        "simclip4": HubTower("hossainzarif19/SimCLIP/simclip4.pt"),
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
    sources={"fare1": UrlTower(f"{_NC}/cCgQAS8QW9arj9d/download/vitb32_fare_eps_1.pt"),
             "tecoa1": UrlTower(f"{_NC}/LHgi84RskrtYCiX/download/vitb32_tecoa_eps_1.pt"),
             "fare4": UrlTower(f"{_NC}/3nMxBKEwbWnDymT/download/vitb32_fare_eps_4.pt"),
             "tecoa4": UrlTower(f"{_NC}/RiWGQzBrqYNCaDk/download/vitb32_tecoa_eps_4.pt")},
)

# The zero-shot table of TGA-ZSR (its README, 16 datasets, ε = 1/255) and PMG-AFT: the OpenAI ViT-B/32 these papers
# and AGFT fine-tune, FARE's published ε = 1/255 and 4/255 towers for it, and every other robust encoder (PMG-AFT,
# TGA-ZSR, AGFT, …) trained with its paper recipe (cached under this suite's name: another base model).
PAPER_ZSR = Family(suite="paper-zsr", arch="ViT-B-32", tag="openai", quick_gelu=True,
                   sources=dict(PAPER_B32_OPENAI.sources), recipe_suite="paper-zsr")

FAMILIES = {f.suite: f for f in (PAPER_L14, PAPER_B32, PAPER_B32_OPENAI, PAPER_ZSR)}


def parse_weights_option(text: str) -> tuple[str, object]:
    """``NAME=SOURCE`` of ``--encoder-weights``: a registered name and any encoder source (a path, a URL,
    ``hf-hub:org/repo``, ``hf-hub:org/repo/file.pt`` or ``train``)."""
    from bench.encoders.registry import ENCODERS

    name, sep, where = text.partition("=")
    if not sep or not name.strip() or not where.strip():
        raise BenchError(f"--encoder-weights takes NAME=PATH, NAME=URL, NAME=hf-hub:org/repo or NAME=train, "
                         f"got {text!r}")
    name = ENCODERS.canonical(name)
    return name, sources.parse_source(where.strip(), f"--encoder-weights {name}")


def source_of(spec, family: Family, overrides: dict[str, object]):
    """Where ``spec``'s weights come from in ``family``: its own source (``--encoder NAME=SOURCE``, a plugin's), then
    ``--encoder-weights``, then the published checkpoint, then training with the paper recipe."""
    if spec.source is not None:
        return spec.source
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
    source = source_of(spec, family, overrides or {})

    def train(spec, base, ctx):
        return trained(family, spec, base, ctx, train_overrides)

    ctx = sources.LoadContext(device, allow_training, progress, train=train if family.recipe_suite else None,
                              suite=family.suite)
    return sources.load(spec, source, spec.base or family.base, ctx)


def trained(family: Family, spec, base, ctx, train_overrides: dict | None = None) -> ClipEncoder:
    from bench.train.cache import obtain
    from bench.train.data import train_data
    from bench.train.recipes import recipe

    if base != family.base:
        raise BenchError(f"{spec.name}: the {family.suite} recipe fine-tunes {family.arch_label} {family.tag}, "
                         f"not {base.arch_label}")
    cfg = recipe(family.recipe_suite, spec.method, round(spec.train_eps * 255))
    if train_overrides:
        cfg = cfg.with_overrides(**train_overrides)
    cfg, changed = cfg.with_text_overrides(ctx.train_overrides)
    return obtain(cfg, spec.name, base.load(ctx.device),
                  lambda: train_data(cfg.suite, cfg.n_train, None, cfg.seed, cfg.train_set),
                  torch.device(ctx.device), allow_training=ctx.allow_training, progress=ctx.progress,
                  source=Trained(changed))
