"""The micro suite's data and encoders: everything generated or committed, nothing downloaded."""

from __future__ import annotations

from bench.core.errors import BenchError
from bench.micro import language
from bench.micro.data import ZEROSHOT_DATASETS, generate_indices, select_indices


def load_classification(dataset: str, n_samples: int, seed: int):
    from tasks.zeroshot import ClassificationData

    if dataset not in ZEROSHOT_DATASETS:
        raise BenchError(f"unknown micro zero-shot dataset {dataset!r} (known: {', '.join(ZEROSHOT_DATASETS)})")
    indices = select_indices(n_samples, seed)
    split = generate_indices("test", indices)
    return ClassificationData(dataset, indices, split.ids, split.images, split.labels(dataset),
                              list(language.CLASSNAMES[dataset]), language.class_prompts(dataset),
                              ensemble=language.ENSEMBLE)


def load_encoder(spec, device: str, allow_training: bool = True, progress: bool = True, overrides=None):
    """``clip`` is the committed micro CLIP; every robust encoder is fine-tuned from it with the micro recipe,
    on demand, and cached."""
    import torch

    from bench.micro.encoders import load_micro_clip
    from bench.train.cache import obtain
    from bench.train.recipes import recipe

    base = load_micro_clip(device)
    if spec.method == "clip":
        return base
    cfg = recipe("micro", spec.method, round(spec.train_eps * 255))
    if overrides:
        cfg = cfg.with_overrides(**overrides)
    return obtain(cfg, spec.name, base, lambda: train_data(cfg), torch.device(device),
                  allow_training=allow_training, progress=progress)


def train_data(cfg):
    from bench.train.data import MicroTrainData

    return MicroTrainData(cfg.n_train)
