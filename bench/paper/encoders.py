"""The paper suite's encoders, from their public homes, as data (``suites.toml``): where each checkpoint lives.

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
from pathlib import Path

import torch

from bench.core.datafile import DataFile
from bench.core.errors import BenchError
from bench.encoders import sources
from bench.encoders.base import ClipEncoder
from bench.encoders.bases import OpenClipBase
from bench.encoders.registry import ENCODERS
from bench.encoders.sources.train import Trained
from bench.paper.train_data import train_data
from bench.train.cache import obtain
from bench.train.recipes import recipe


@dataclass(frozen=True)
class Family:
    """One paper suite: its base model, the checkpoints published for it and what it runs (a table of
    ``suites.toml``, whose schema is there)."""

    suite: str
    arch: str  # open_clip built-in config of the base model
    tag: str  # open_clip pretrained tag whose ``hf_hub`` entry holds the base weights
    quick_gelu: bool  # pinned activation of the base and of every checkpoint fine-tuned from it
    sources: dict[str, object] = field(default_factory=dict)  # encoder name → its source (bench.encoders.sources)
    recipe_suite: str | None = None  # training recipe for names without a published checkpoint
    model_cfg: dict | None = None  # replaces the built-in architecture (tests use tiny models)
    description: str = ""  # one line for `bench list suites`
    zeroshot: str = "fare"  # its zero-shot table (``datasets.toml``)
    vlm: bool = False  # whether it runs the vision-language tasks (LLaVA-1.5 reads ViT-L/14 patch tokens)

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


@dataclass(frozen=True)
class FamilyEntry:
    """The schema of one table of ``suites.toml`` (besides its ``checkpoints``)."""

    description: str
    arch: str
    tag: str
    quick_gelu: bool
    zeroshot: str
    vlm: bool = False
    trains: bool = False
    checkpoints_from: str | None = None


CATALOGUE = Path(__file__).resolve().parent / "suites.toml"


def read_families(path: Path = CATALOGUE) -> dict[str, Family]:
    """The paper suites a catalogue file defines, by name."""
    data = DataFile(path, "paper suites")
    out: dict[str, Family] = {}
    for name, raw in data.load().items():
        data.name(name, name)
        entry = FamilyEntry(**data.table(raw, name, FamilyEntry, skip=("checkpoints",)))
        shared = entry.checkpoints_from
        data.check(shared is None or shared in out, f"{name}.checkpoints_from", f"{shared!r} is not a suite defined "
                   "above it")
        checkpoints = dict(out[shared].sources) if shared else {}
        given = raw.get("checkpoints", {})
        data.check(isinstance(given, dict), f"{name}.checkpoints", "expected a table of NAME = SOURCE")
        for encoder, spelling in given.items():
            field_name = f"{name}.checkpoints.{encoder}"
            encoder, text = data.name(encoder, field_name), data.typed(spelling, field_name, "str")
            try:
                checkpoints[encoder] = sources.parse_source(text, field_name)
            except BenchError as exc:  # its message names the field already
                raise data.error("", str(exc)) from exc
        out[name] = Family(name, entry.arch, entry.tag, entry.quick_gelu, checkpoints,
                           recipe_suite=name if entry.trains else None, description=entry.description,
                           zeroshot=entry.zeroshot, vlm=entry.vlm)
    return out


FAMILIES = read_families()
PAPER_L14, PAPER_B32, PAPER_B32_OPENAI = FAMILIES["paper"], FAMILIES["paper-b32"], FAMILIES["paper-b32-openai"]


def parse_weights_option(text: str) -> tuple[str, object]:
    """``NAME=SOURCE`` of ``--encoder-weights``: a registered name and any encoder source (a path, a URL,
    ``hf-hub:org/repo``, ``hf-hub:org/repo/file.pt`` or ``train``)."""
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
