"""Suites: which tasks and datasets exist, default sample counts, and where data and encoders come from.

A suite is data; the code path that evaluates it is the same for all suites. Importing this module imports every
suite and, with them, the layers that register names into the registries below them (the training objectives name
the robust encoders, the micro suite registers its base): the modules that resolve names (the runner, the command
line, the API, the report, the check, the sweep) import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from bench.core.errors import BenchError
from bench.core.registry import Registry
from bench.core.suite import Suite
from bench.micro import suite as micro
from bench.micro import vlm as micro_vlm
from bench.micro.datasets import DATASETS, ZEROSHOT_DATASETS
from bench.paper.encoders import FAMILIES
from bench.paper.suite import build_named
from tasks.registry import TASKS


def _micro(**options) -> Suite:
    given = [k.replace("_", "-") for k, v in options.items() if v]
    if given:
        raise BenchError(f"--{', --'.join(given)} appl{'ies' if len(given) == 1 else 'y'} to the paper suites only; "
                         "the micro suite is generated and committed")
    return Suite("micro", {"zeroshot": ZEROSHOT_DATASETS, **micro_vlm.DATASETS}, ("zeroshot",), n_samples=100,
                 batch_size=64, load_classification=micro.load_classification, load_encoder=micro.load_encoder,
                 train_data=lambda cfg, _root: micro.train_data(cfg), load_vlm_data=micro_vlm.load_vlm_data,
                 task_samples=micro_vlm.SAMPLES, task_batch_size=micro_vlm.BATCH,
                 in_distribution=tuple(d for d in ZEROSHOT_DATASETS if DATASETS[d].role == "in-distribution"),
                 training_identity=micro.training_identity)


def _paper(family: str) -> Callable[..., Suite]:
    def make(**options) -> Suite:
        return build_named(family, **options)

    return make


# a plugin adds a suite through ``clip_robust_bench.suites`` with a function that takes the registry and registers a
# factory ``(**options) -> Suite`` (a bare factory would be taken for such a function)
SUITES: Registry[Callable[..., Suite]] = Registry("suite", plugin_group="suites")
SUITES.register("micro", _micro, "a generated world of shapes, colours and counts with a small CLIP; runs offline on "
                "a CPU in minutes (default)")
for _family in FAMILIES.values():
    SUITES.register(_family.suite, _paper(_family.suite), _family.description)


def get_suite(name: str, **options) -> Suite:
    """The suite ``name``; ``options`` (data_root, encoder_weights) configure where a paper suite finds things."""
    return with_declared_tasks(SUITES.get(name)(**options))


def with_declared_tasks(suite: Suite) -> Suite:
    """The suite with every registered task that declares datasets for it (a task class's
    ``datasets = {suite name: (dataset, …)}``) and that it does not list itself: a new task is its own file."""
    declared = {e.name: tuple(e.value.datasets[suite.name]) for e in TASKS
                if isinstance(getattr(e.value, "datasets", None), dict) and suite.name in e.value.datasets
                and e.name not in suite.tasks}
    return replace(suite, tasks={**suite.tasks, **declared}) if declared else suite
