"""Suites: which tasks and datasets exist, default sample counts, and where data and encoders come from.

A suite is data; the code path that evaluates it is the same for all suites.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bench.registry import Registry


@dataclass(frozen=True)
class Suite:
    name: str
    tasks: dict[str, tuple[str, ...]]  # task name -> its datasets, in table order
    default_tasks: tuple[str, ...]
    n_samples: int  # default samples per dataset
    batch_size: int  # default attack batch
    load_classification: Callable = field(repr=False, compare=False)
    load_encoder: Callable = field(repr=False, compare=False)
    train_data: Callable = field(repr=False, compare=False)  # (TrainConfig, imagenet_root) -> training data


def _micro() -> Suite:
    from bench.micro import suite as micro
    from bench.micro.data import ZEROSHOT_DATASETS

    return Suite("micro", {"zeroshot": ZEROSHOT_DATASETS}, ("zeroshot",), n_samples=500, batch_size=250,
                 load_classification=micro.load_classification, load_encoder=micro.load_encoder,
                 train_data=lambda cfg, _root: micro.train_data(cfg))


SUITES: Registry[Callable[[], Suite]] = Registry("suite")
SUITES.register("micro", _micro, "a generated world of shapes, colours and counts with a small CLIP; runs offline on "
                "a CPU in minutes (default)")


def get_suite(name: str) -> Suite:
    return SUITES.get(name)()
