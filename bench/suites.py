"""Suites: which tasks and datasets exist, default sample counts, and where data and encoders come from.

A suite is data; the code path that evaluates it is the same for all suites.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.core.errors import BenchError
from bench.core.registry import Registry
from bench.core.suite import Suite


def _micro(**options) -> Suite:
    from bench.micro import suite as micro
    from bench.micro.datasets import DATASETS, ZEROSHOT_DATASETS

    given = [k.replace("_", "-") for k, v in options.items() if v]
    if given:
        raise BenchError(f"--{', --'.join(given)} appl{'ies' if len(given) == 1 else 'y'} to the paper suites only; "
                         "the micro suite is generated and committed")

    from tasks.vlm import data as vlm_data

    return Suite("micro", {"zeroshot": ZEROSHOT_DATASETS, **vlm_data.MICRO_DATASETS}, ("zeroshot",), n_samples=100,
                 batch_size=64, load_classification=micro.load_classification, load_encoder=micro.load_encoder,
                 train_data=lambda cfg, _root: micro.train_data(cfg), load_vlm_data=vlm_data.load_micro,
                 task_samples=vlm_data.MICRO_SAMPLES, task_batch_size=vlm_data.MICRO_BATCH,
                 in_distribution=tuple(d for d in ZEROSHOT_DATASETS if DATASETS[d].role == "in-distribution"))


def _paper(family: str) -> Callable[..., Suite]:
    def make(**options) -> Suite:
        from bench.paper.suite import build_named

        return build_named(family, **options)

    return make


# a plugin adds a suite through ``clip_robust_bench.suites`` with a function that takes the registry and registers a
# factory ``(**options) -> Suite`` (a bare factory would be taken for such a function)
SUITES: Registry[Callable[..., Suite]] = Registry("suite", plugin_group="suites")
SUITES.register("micro", _micro, "a generated world of shapes, colours and counts with a small CLIP; runs offline on "
                "a CPU in minutes (default)")
SUITES.register("paper", _paper("paper"), "ViT-L/14 OpenAI CLIP and the published FARE, TeCoA and Sim-CLIP "
                "checkpoints on the FARE zero-shot protocol (13 datasets + ImageNet, 1,000 samples each); GPU work")
SUITES.register("paper-b32", _paper("paper-b32"), "the published ViT-B/32 (LAION-2B) CLIP, FARE⁴ and TeCoA⁴ on "
                "the same protocol")
SUITES.register("paper-b32-openai", _paper("paper-b32-openai"), "the OpenAI ViT-B/32 CLIP and FARE's published "
                "FARE⁴ and TeCoA⁴ towers for it, on the same protocol")
SUITES.register("paper-zsr", _paper("paper-zsr"), "the OpenAI ViT-B/32 CLIP on the TGA-ZSR table's 16 zero-shot "
                "datasets (ε = 1/255: --attack pgd-100-tga, and aa-custom); FARE's published ε = 1/255 towers, "
                "PMG-AFT, TGA-ZSR and AGFT trained with their paper recipes; GPU work")


def get_suite(name: str, **options) -> Suite:
    """The suite ``name``; ``options`` (data_root, encoder_weights) configure where a paper suite finds things."""
    return SUITES.get(name)(**options)
