"""The micro suite's data and encoders: everything generated or committed, nothing downloaded."""

from __future__ import annotations

import torch

from bench.core.errors import BenchError
from bench.encoders import sources
from bench.encoders.sources.train import Trained
from bench.micro import language
from bench.micro.data import ZEROSHOT_DATASETS, generate_indices, select_indices
from bench.micro.encoders import MICRO_BASE
from bench.micro.train_data import MicroTrainData
from bench.train.cache import obtain
from bench.train.recipes import recipe
from tasks.zeroshot import ClassificationData


def load_classification(dataset: str, n_samples: int, seed: int):
    if dataset not in ZEROSHOT_DATASETS:
        raise BenchError(f"unknown micro zero-shot dataset {dataset!r} (known: {', '.join(ZEROSHOT_DATASETS)})")
    indices = select_indices(n_samples, seed)
    split = generate_indices("test", indices)
    return ClassificationData(dataset, indices, split.ids, split.images, split.labels(dataset),
                              list(language.CLASSNAMES[dataset]), language.class_prompts(dataset),
                              ensemble=language.ENSEMBLE)


def load_encoder(spec, device: str, allow_training: bool = True, progress: bool = True, overrides=None):
    """``clip`` is the committed micro CLIP; every robust encoder is fine-tuned from it with the micro recipe,
    on demand, and cached. A spec with a source of its own (``NAME=tower.safetensors``, ``hf-hub:ORG/REPO``, a
    plugin's) loads from it, onto the micro CLIP unless it names another base. ``overrides``: training-recipe
    fields."""
    def train(spec, base, ctx):
        if base != MICRO_BASE:
            raise BenchError(f"{spec.name}: the micro recipe fine-tunes the committed micro CLIP, not {base}")
        cfg = recipe("micro", spec.method, round(spec.train_eps * 255))
        if overrides:
            cfg = cfg.with_overrides(**overrides)
        cfg, changed = cfg.with_text_overrides(ctx.train_overrides)
        return obtain(cfg, spec.name, base.load(ctx.device), lambda: train_data(cfg), torch.device(ctx.device),
                      allow_training=ctx.allow_training, progress=ctx.progress, source=Trained(changed))

    source = spec.source if spec.source is not None else (None if spec.method == "clip" else Trained())
    ctx = sources.LoadContext(device, allow_training, progress, train=train, suite="micro")
    return sources.load(spec, source, spec.base or MICRO_BASE, ctx)


def train_data(cfg):
    return MicroTrainData(cfg.n_train)
