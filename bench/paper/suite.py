"""The paper suites as data: ViT-L/14 (the FARE / Sim-CLIP tables) and the published ViT-B/32 family, evaluated on
the FARE zero-shot protocol's datasets. Run options (--data-root, --encoder-weights) are bound when the suite is
built, so the runner's code path stays the one every suite uses.

Each suite's base, published checkpoints and zero-shot table are data (``suites.toml``, ``datasets.toml``).
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from bench.core.errors import BenchError
from bench.core.suite import Suite
from bench.paper import datasets, encoders, vlm
from bench.paper.train_data import train_data as paper_train_data

DEFAULT_TASKS = ("zeroshot",)
N_SAMPLES = 1000  # per dataset, as in the protocol
BATCH_SIZE = 50  # FARE's attack batch; on a GPU the runner lowers it to what fits in memory


def data_root(option: str | os.PathLike | None) -> Path | None:
    root = option or os.environ.get("BENCH_DATA_ROOT")
    if not root:
        return None
    root = Path(root).expanduser()
    if not root.is_dir():
        raise BenchError(f"--data-root {root} is not a directory")
    return root


def weight_overrides(options: tuple[str, ...] | list[str] | None) -> dict[str, object]:
    out: dict[str, object] = {}
    for text in options or ():
        name, source = encoders.parse_weights_option(text)
        if name in out:
            raise BenchError(f"--encoder-weights gives {name} twice")
        out[name] = source
    return out


def build(family: encoders.Family, *, data_root_option=None, encoder_weights=None):
    root = data_root(data_root_option)
    weights = weight_overrides(encoder_weights)

    def load_encoder(spec, device: str, allow_training: bool = True, progress: bool = True, overrides=None):
        """``overrides``: training-recipe fields, as for the micro suite."""
        return encoders.load_encoder(family, spec, device, allow_training=allow_training, progress=progress,
                                     overrides=weights, train_overrides=overrides)

    def train_data(cfg, imagenet_root):
        return paper_train_data(cfg.suite, cfg.n_train, imagenet_root, cfg.seed, cfg.train_set)

    tasks = {"zeroshot": datasets.TABLES[family.zeroshot]}
    if family.vlm:
        tasks.update(vlm.DATASETS)
    return Suite(family.suite, tasks, DEFAULT_TASKS, n_samples=N_SAMPLES, batch_size=BATCH_SIZE,
                 load_classification=partial(datasets.load_classification, data_root=root),
                 load_encoder=load_encoder, train_data=train_data,
                 load_vlm_data=partial(vlm.load_vlm_data, data_root=root), task_samples=vlm.SAMPLES,
                 task_batch_size=vlm.BATCH)


def build_named(name: str, data_root=None, encoder_weights=None):
    return build(encoders.FAMILIES[name], data_root_option=data_root, encoder_weights=encoder_weights)
