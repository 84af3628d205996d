"""The micro suite's data and encoders: everything generated or committed, nothing downloaded."""

from __future__ import annotations

import torch

from bench.core.config import config_hash
from bench.core.errors import BenchError
from bench.encoders import sources
from bench.encoders.sources.train import Trained
from bench.micro import language
from bench.micro.data import generate_dataset, select_indices
from bench.micro.datasets import DATASETS, FINETUNING_SET, ZEROSHOT_DATASETS
from bench.micro.encoders import MICRO_BASE, micro_card
from bench.micro.train_data import FineTuningData
from bench.train.cache import obtain
from bench.train.recipes import recipe
from tasks.zeroshot import ClassificationData


def load_classification(dataset: str, n_samples: int, seed: int):
    if dataset not in DATASETS:
        raise BenchError(f"unknown micro zero-shot dataset {dataset!r} (known: {', '.join(ZEROSHOT_DATASETS)})")
    spec = DATASETS[dataset]
    indices = select_indices(n_samples, seed)
    split = generate_dataset(dataset, "test", indices)
    return ClassificationData(dataset, indices, split.ids, split.images, split.labels(dataset), spec.classnames,
                              spec.class_prompts(), ensemble=language.ENSEMBLE, definition=spec.definition())


def load_encoder(spec, device: str, allow_training: bool = True, progress: bool = True, overrides=None):
    """``clip`` is the committed micro CLIP; every robust encoder is fine-tuned from it with the micro recipe,
    on demand, and cached. A spec with a source of its own (``NAME=tower.safetensors``, ``hf-hub:ORG/REPO``, a
    plugin's) loads from it, onto the micro CLIP unless it names another base. ``overrides``: training-recipe
    fields."""
    def train(spec, base, ctx):
        if base != MICRO_BASE:
            raise BenchError(f"{spec.name}: the micro recipe fine-tunes the committed micro CLIP, not {base}")
        cfg = recipe("micro", spec.method, round(spec.train_eps * 255), training_identity())
        if overrides:
            cfg = cfg.with_overrides(**overrides)
        cfg, changed = cfg.with_text_overrides(ctx.train_overrides)
        return obtain(cfg, spec.name, base.load(ctx.device), lambda: train_data(cfg), torch.device(ctx.device),
                      allow_training=ctx.allow_training, progress=ctx.progress, source=Trained(changed))

    source = spec.source if spec.source is not None else (None if spec.method == "clip" else Trained())
    ctx = sources.LoadContext(device, allow_training, progress, train=train, suite="micro")
    return sources.load(spec, source, spec.base or MICRO_BASE, ctx)


def training_identity() -> str:
    """What micro fine-tuning reads, hashed into every micro training cache key: the fine-tuning set's definition
    and the base CLIP it starts from (a new world or a new base never picks up a tower trained on the old one)."""
    return config_hash({"fine_tuning_set": FINETUNING_SET.definition(), "base_sha256": micro_card()["sha256"]},
                       length=12)


def train_data(cfg):
    return FineTuningData(cfg.n_train)
